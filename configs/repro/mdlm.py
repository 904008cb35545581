"""The from-scratch MDLM of the miniature reproduction (LLaDA-style, linear schedule).

    python -m mdlm_jax.main train --config configs/repro/mdlm.py:cpu --workdir runs/repro_cpu/mdlm
    python -m mdlm_jax.main train --config configs/repro/mdlm.py:gpu --workdir runs/repro_gpu/mdlm

Args: ``cpu`` (default) | ``gpu`` | ``smoke``. Recipe, sizes and the other arms:
configs/repro/common.py.
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    common = load_config_module(sibling_path(__file__, "common.py"))
    return common.repro_config("mdlm", arg)
