"""Mask-agnostic LoRA fine-tuning of LLaDA-8B-Instruct (PAPER.md section 5, Table 2).

Variants (first arg): ``ce_tv`` (beta 10.0, lr 1e-6) and ``ce`` (CE only: beta 0, lr 1e-5).
Everything else as ``configs/llada_8b_base_ma.py`` (LoRA 64 / 128 / 0, micro-batch 3 x 43
accumulation steps, 930 steps, bf16, clip 1.0, weight decay 0, context 1024), with the
LLaDA chat template on the OpenOrca prompts (``data.chat_template='llada'``).

Target: one host of 8 x H200 (or H100), tensor parallelism over the 8 GPUs, as the base
recipe; the same shapes, so the same verdict of ``python -m mdlm_jax.main compile --config
configs/llada_8b_instruct_ma.py:ce_tv`` (figures in docs/BENCHMARKS.md). One GPU host::

    M=/models/LLaDA-8B-Instruct; D='/data/openorca/*.jsonl'
    PLATFORM=gpu bash launch/local.sh train --workdir runs/llada_8b_instruct_ma_ce_tv \\
        --config "configs/llada_8b_instruct_ma.py:ce_tv,path=$M,data=$D"

Args: as for ``llada_8b_base_ma`` (``ce_tv`` | ``ce``, ``path=DIR``, ``data=GLOB``, ``smoke``).
"""

from mdlm_jax.config_base import load_config_module, sibling_path


def get_config(arg=None):
    base = load_config_module(sibling_path(__file__, "llada_8b_base_ma.py"))
    return base.llada_ma_config("instruct", arg)
