"""Fast-dLLM on LLaDA-8B-Instruct: the GSM8K setting of its evaluation scripts.

Source: NVlabs/Fast-dLLM ``llada/eval_gsm8k.sh`` (as reproduced in its forks: task
gsm8k, 5-shot, generation length 256, block length 32, ``steps = length`` for the
baseline and ``steps = length / block_length`` with threshold 0.9 for the parallel and
cache runs; prefix cache ``use_cache=True``, dual cache ``dual_cache=True``). The
published accuracies are in the Fast-dLLM paper (arXiv:2505.22618, Table 1); they could
not be read from the sources available when this recipe was written, so ``published``
says so instead of quoting a number.

    python -m mdlm_jax.main benchmark \\
        --config configs/benchmarks/fast_dllm_llada_instruct.py:parallel_dual,path=DIR

Rows: baseline (confidence, one token per step), parallel (threshold 0.9), prefix
(prefix cache, one token per step), parallel_prefix and parallel_dual (threshold 0.9 with
the prefix / dual cache). The block KV caches of this project cover the llama family.
"""

from mdlm_jax.benchmark.recipes import recipe_config

SOURCE = "NVlabs/Fast-dLLM llada/eval_gsm8k.sh; scores: arXiv:2505.22618 Table 1"
NOT_FOUND = "see arXiv:2505.22618 Table 1 (not readable here; no number quoted)"
COMMON = dict(tasks="gsm8k", num_fewshot=5, gen_length=256, block_length=32,
              temperature=0.0, batch_size=8, published=NOT_FOUND)

TASKS = {
    "baseline": dict(COMMON, strategy="confidence", steps=256, kv_cache="none"),
    "parallel": dict(COMMON, strategy="threshold", steps=8, threshold=0.9, kv_cache="none"),
    "prefix": dict(COMMON, strategy="confidence", steps=256, kv_cache="prefix"),
    "parallel_prefix": dict(COMMON, strategy="threshold", steps=8, threshold=0.9,
                            kv_cache="prefix"),
    "parallel_dual": dict(COMMON, strategy="threshold", steps=8, threshold=0.9,
                          kv_cache="dual"),
}


def get_config(arg=None):
    return recipe_config(TASKS, arg, name="fast_dllm_llada_instruct", source=SOURCE)
