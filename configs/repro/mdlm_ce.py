"""The CE-only variant of ``repro/mdlm_ma`` (beta 0 and a 10x lower learning rate, as in
PAPER.md Table 2).

    python -m mdlm_jax.main train --config configs/repro/mdlm_ce.py:cpu \\
        --workdir runs/repro_cpu/mdlm_ce
    python -m mdlm_jax.main train --config configs/repro/mdlm_ce.py:gpu,from=runs/repro_gpu/mdlm \\
        --workdir runs/repro_gpu/mdlm_ce

Args: ``cpu`` (default) | ``gpu`` | ``smoke``; ``from=DIR`` the MDLM workdir (default
``runs/repro_SIZE/mdlm``). Recipe: configs/repro/common.py.
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    common = load_config_module(sibling_path(__file__, "common.py"))
    return common.repro_config("mdlm_ce", arg)
