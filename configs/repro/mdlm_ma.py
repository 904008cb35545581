"""Mask-agnostic fine-tune (CE + TV, PAPER.md Table 2 scaled down) of ``repro/mdlm``.

LoRA (rank 8) on every projection of the trained MDLM, on the task prompts of the same
generator as prompt / answer pairs (``data.files='context_tasks'``: the prompt ends
``Answer:[``, the answer is the letter)::

    python -m mdlm_jax.main train --config configs/repro/mdlm_ma.py:cpu \\
        --workdir runs/repro_cpu/mdlm_ma
    python -m mdlm_jax.main train --config configs/repro/mdlm_ma.py:gpu,from=runs/repro_gpu/mdlm \\
        --workdir runs/repro_gpu/mdlm_ma

Args: ``cpu`` (default) | ``gpu`` | ``smoke``; ``from=DIR`` the MDLM workdir (default
``runs/repro_SIZE/mdlm``). Recipe: configs/repro/common.py.
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    common = load_config_module(sibling_path(__file__, "common.py"))
    return common.repro_config("mdlm_ma", arg)
