"""(8) Locality under 2 / 50 / 100 / 200 extra masks.

    python -m mdlm_jax.main context --config configs/context/locality_masks.py \\
        --workdir runs/quickstart
    python -m mdlm_jax.main context \\
        --config configs/context/locality_masks.py:model=llada_base,path=/models/LLaDA-8B-Base \\
        --workdir runs/context_llada_base

Arguments and presets: configs/context/suite.py.
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    suite = load_config_module(sibling_path(__file__, "suite.py"))
    return suite.suite_config("locality_masks", arg)
