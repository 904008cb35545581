"""The autoregressive partner of ``repro/mdlm``: the same network, causal, on next-token
NLL, with the same data, steps and batches.

    python -m mdlm_jax.main train --config configs/repro/ar.py:cpu --workdir runs/repro_cpu/ar
    python -m mdlm_jax.main train --config configs/repro/ar.py:gpu --workdir runs/repro_gpu/ar

Args: ``cpu`` (default) | ``gpu`` | ``smoke``. Recipe and sizes: configs/repro/common.py.
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    common = load_config_module(sibling_path(__file__, "common.py"))
    return common.repro_config("ar", arg)
