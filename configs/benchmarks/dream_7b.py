"""Dream-7B (v0) Base and Instruct: evaluation settings per task.

Sources:
- Instruct: DreamLM/Dream ``eval_instruct/eval.sh`` (as reproduced in public copies):
  lm-eval with the chat template, ``temperature=0.1, top_p=0.9, alg="entropy"``,
  ``diffusion_steps = max_new_tokens``: gsm8k_cot 0-shot with 256 tokens, minerva_math
  0-shot with 512, mmlu_generative 4-shot with 128. Dream's ``entropy`` ordering (commit
  the lowest-entropy positions first) is not a remasking rule of this project's sampler;
  these recipes use ``low_confidence`` (highest max-probability first), the closest one,
  so their scores may differ from Dream's. Dream's Qwen chat template is not among this
  project's templates ('' | llada), so the Instruct rows send the plain prompt.
- Base GSM8K: the Fast-dLLM Dream scripts (``Dream-org/Dream-v0-Base-7B``, gsm8k 5-shot,
  ``max_new_tokens=256``, block 32, threshold 0.9 with the parallel decoder).
Published scores: Dream-7B Base GSM8K 77.2 and MATH 39.6 as listed in the comparison
table of the iLLaDA-8B-Base model card (GSAI-ML); the Instruct scores of the Dream report
(arXiv:2508.15487) could not be read here and are not quoted.

    python -m mdlm_jax.main benchmark --config configs/benchmarks/dream_7b.py:base_gsm8k,path=DIR
"""

from mdlm_jax.benchmark.recipes import recipe_config

SOURCE = ("DreamLM/Dream eval_instruct/eval.sh (Instruct settings); Fast-dLLM Dream "
          "scripts (Base GSM8K); scores: iLLaDA-8B-Base model card comparison table")


def _instruct(task, shots, length, published):
    return dict(tasks=task, num_fewshot=shots, strategy="confidence", gen_length=length,
                steps=length, block_length=length, temperature=0.1, top_p=0.9,
                remasking="low_confidence", chat_template="", batch_size=8,
                published=published)


NOT_QUOTED = "Dream report arXiv:2508.15487 (not readable here; no number quoted)"
TASKS = {
    "base_gsm8k": dict(tasks="gsm8k", num_fewshot=5, strategy="threshold", gen_length=256,
                       steps=8, block_length=32, threshold=0.9, temperature=0.0,
                       batch_size=8, published="GSM8K 77.2 (Dream-7B Base)"),
    "instruct_gsm8k_cot": _instruct("gsm8k_cot", 0, 256, NOT_QUOTED),
    "instruct_minerva_math": _instruct("minerva_math", 0, 512, NOT_QUOTED),
    "instruct_mmlu_generative": _instruct("mmlu_generative", 4, 128, NOT_QUOTED),
}


def get_config(arg=None):
    return recipe_config(TASKS, arg, name="dream_7b", source=SOURCE)
