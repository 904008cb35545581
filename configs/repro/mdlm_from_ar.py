"""The AR-initialised MDLM: the weights of ``repro/ar`` continue as a bidirectional MDLM
with the one-position logit shift (the Dream recipe, which ``convert --as_diffusion``
applies to a HF causal model), every weight trained on the diffusion loss. The AR workdir
is read directly (``checkpoint.restore_from``): its vocabulary already has the mask row.

    python -m mdlm_jax.main train --config configs/repro/mdlm_from_ar.py:cpu \\
        --workdir runs/repro_cpu/mdlm_from_ar
    python -m mdlm_jax.main train \\
        --config configs/repro/mdlm_from_ar.py:gpu,from=runs/repro_gpu/ar \\
        --workdir runs/repro_gpu/mdlm_from_ar

Args: ``cpu`` (default) | ``gpu`` | ``smoke``; ``from=DIR`` the AR workdir (default
``runs/repro_SIZE/ar``). Recipe: configs/repro/common.py.
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    common = load_config_module(sibling_path(__file__, "common.py"))
    return common.repro_config("mdlm_from_ar", arg)
