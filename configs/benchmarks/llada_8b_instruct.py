"""LLaDA-8B-Instruct on GSM8K through lm-eval with the chat template.

Source: the LLaDA authors evaluate the Instruct model with OpenCompass, not lm-eval
(ML-GSAI/LLaDA ``EVAL.md``: "LLaDA-8B-Instruct & LLaDA-1.5: ppl tasks None, gen tasks
OpenCompass"), so there is no published lm-eval recipe for it. This config is the lm-eval
setting the LLaDA repository's Fast-dLLM-style scripts use for LLaDA-Instruct GSM8K
(5-shot, generation length 256, block length 32, one token per step, low-confidence
remasking, chat template), i.e. the ``baseline`` row of
``configs/benchmarks/fast_dllm_llada_instruct.py`` with the chat template on. The
published score of the paper (Table 2, OpenCompass) uses other settings; it is not quoted
here because it could not be read from the sources available when this was written.

    python -m mdlm_jax.main benchmark \\
        --config configs/benchmarks/llada_8b_instruct.py:gsm8k,path=/models/LLaDA-8B-Instruct

Set ``--config.benchmark.chat_template=''`` for the plain few-shot prompt the Fast-dLLM
scripts use (they do not pass ``--apply_chat_template``).
"""

from mdlm_jax.benchmark.recipes import recipe_config

SOURCE = ("ML-GSAI/LLaDA EVAL.md (Instruct is evaluated with OpenCompass); settings from "
          "the LLaDA-Instruct GSM8K lm-eval scripts (length 256, block 32, 5-shot)")

TASKS = {
    "gsm8k": dict(tasks="gsm8k", num_fewshot=5, strategy="confidence", gen_length=256,
                  steps=256, block_length=32, temperature=0.0, remasking="low_confidence",
                  chat_template="llada", fewshot_as_multiturn=True, batch_size=8,
                  published="no lm-eval score published (OpenCompass only); not quoted"),
}


def get_config(arg=None):
    return recipe_config(TASKS, arg, name="llada_8b_instruct", source=SOURCE)
