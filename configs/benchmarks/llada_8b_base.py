"""LLaDA-8B-Base, the published lm-eval settings per task.

Source: ML-GSAI/LLaDA ``eval_llada_lm_eval.sh`` (settings: lm-eval 0.4.8, ``mc_num`` and
``cfg`` per likelihood task, ``gen_length = steps = block_length = 1024`` for generation,
few-shot counts: the script's ``--num_fewshot`` for likelihood tasks, the lm-eval task
default for generation tasks) and ``EVAL.md`` of the same repository (the scores of its
lm-eval reproduction, printed beside each task as ``published``). Likelihood tasks with
``cfg_scale > 0`` use guidance as the script does; EVAL.md lists the score with and
without it (paper Table 1 reports the scores without guidance).

    python -m mdlm_jax.main benchmark \\
        --config configs/benchmarks/llada_8b_base.py:gsm8k,path=/models/LLaDA-8B-Base

Tasks: arc_challenge hellaswag truthfulqa_mc2 winogrande piqa gpqa mmlu cmmlu ceval
bbh gsm8k minerva_math humaneval mbpp. Code tasks (humaneval, mbpp) need lm-eval's
``HF_ALLOW_CODE_EVAL=1``.
"""

from mdlm_jax.benchmark.recipes import recipe_config

SOURCE = "ML-GSAI/LLaDA eval_llada_lm_eval.sh (settings) and EVAL.md (lm-eval scores)"


def _ll(task, shots, cfg, mc, published):
    return dict(tasks=task, num_fewshot=shots, cfg_scale=cfg, mc_samples=mc,
                mc_batch_size=min(mc, 32), published=published)


def _gen(task, published):
    return dict(tasks=task, num_fewshot=-1, strategy="confidence", gen_length=1024,
                steps=1024, block_length=1024, temperature=0.0, remasking="low_confidence",
                batch_size=8, published=published)


TASKS = {
    "arc_challenge": _ll("arc_challenge", 0, 0.5, 128, "ARC-C 47.9 with cfg 0.5 (45.9 w/o)"),
    "hellaswag": _ll("hellaswag", 0, 0.5, 128, "Hellaswag 72.5 with cfg 0.5 (70.5 w/o)"),
    "truthfulqa_mc2": _ll("truthfulqa_mc2", 0, 2.0, 128,
                          "TruthfulQA 46.4 with cfg 2.0 (46.1 w/o)"),
    "winogrande": _ll("winogrande", 5, 0.0, 128, "WinoGrande 74.8"),
    "piqa": _ll("piqa", 0, 0.5, 128, "PIQA 74.4 with cfg 0.5 (73.6 w/o)"),
    "gpqa": _ll("gpqa_main_n_shot", 5, 0.5, 128, "GPQA 26.1 with cfg 0.5 (25.2 w/o)"),
    # single-token answers: one Monte Carlo sample is the exact ELBO (one masking pattern)
    "mmlu": _ll("mmlu", 5, 0.0, 1, "MMLU 65.9"),
    "cmmlu": _ll("cmmlu", 5, 0.0, 1, "CMMLU 69.9"),
    "ceval": _ll("ceval-valid", 5, 0.0, 1, "C-Eval 70.5"),
    "bbh": _gen("bbh", "BBH 49.7"),
    "gsm8k": _gen("gsm8k", "GSM8K 70.3"),
    "minerva_math": _gen("minerva_math", "Math 31.4"),
    "humaneval": _gen("humaneval", "HumanEval 35.4"),
    "mbpp": _gen("mbpp", "MBPP 40.0"),
}


def get_config(arg=None):
    return recipe_config(TASKS, arg, name="llada_8b_base", source=SOURCE)
