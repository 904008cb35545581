"""Shared settings of the context-comprehension experiments (PAPER.md section 4).

Each ``configs/context/<experiment>.py`` is this config with ``context.experiment`` set.
Arguments (``configs/context/<experiment>.py:ARGS``, comma separated):

    model=NAME   quickstart (default) | llada_base | llada_instruct | dream_base |
                 dream_instruct | llama3 | qwen25 (presets: label, batch size, dtype) |
                 repro_cpu | repro_gpu | repro_smoke (the arms of configs/repro)
    path=DIR     the model: a workdir of this project or a HuggingFace directory
                 (quickstart: runs/quickstart; repro_SIZE: runs/repro_SIZE/mdlm)
    points=N     test points per task pair (paper: 1000; quickstart preset: 10)

The paper's models, e.g. LLaDA-8B-Base on one GPU (bf16 weights)::

    python -m mdlm_jax.main context \\
        --config configs/context/extra_masks.py:model=llada_base,path=/models/LLaDA-8B-Base \\
        --workdir runs/context_llada_base

The quickstart preset sizes every experiment for the quickstart model (``kjv_bpe``
tokenizer, ``model.max_length=256``): 1 relevant + 2 distractor examples, at most 20 extra
masks (the " ." filler of dot_filler takes two tokens each; the answer letter is one)::

    python -m mdlm_jax.main train --config configs/quickstart.py --workdir runs/quickstart
    python -m mdlm_jax.main context --config configs/context/extra_masks.py \\
        --workdir runs/quickstart

The ``repro_*`` presets size the experiments for the arms of ``configs/repro`` (trained
on the generated task corpus) at their context length (cpu and smoke: 256 characters;
gpu: 1024): 1 relevant example among 2 (cpu) or 14 (gpu) distractors, at most 16 / 64
extra tokens, and the evaluation words held out of their training (``context.words=
'heldout'``)::

    python -m mdlm_jax.main context \\
        --config configs/context/locality.py:model=repro_cpu,path=runs/repro_cpu/mdlm \\
        --workdir runs/repro_cpu/mdlm
"""

from mdlm_jax.config_base import base_config, lock, parse_arg

# name -> (label, context overrides). AR baselines (llama3, qwen25) run the experiments
# without mask tokens: locality, mask_location, attribution, dot_filler.
MODELS = {
    "quickstart": ("quickstart", {}),
    "llada_base": ("LLaDA-8B-Base", {}),
    "llada_instruct": ("LLaDA-8B-Instruct", {}),
    "dream_base": ("Dream-v0-Base-7B", {}),
    "dream_instruct": ("Dream-v0-Instruct-7B", {}),
    "llama3": ("Meta-Llama-3-8B", {}),
    "qwen25": ("Qwen2.5-7B", {}),
}

QUICK = dict(
    points=10, n_relevant=1, n_distractors=2, positions=(0, 1, 2),
    mask_counts=(0, 2, 4, 8, 16, 20), locality_mask_counts=(2, 8, 16),
    distractor_counts=(0, 1, 2), order_seeds=3, attribution_points=4, attribution_masks=16,
    decode_steps=8, sensitivity_counts=(0, 4, 8, 16), sensitivity_points=4,
    dtype="float32", batch_size=32, length_multiple=32,
)


REPRO = {  # the arms of configs/repro (common.py SIZES), on their held-out words
    "cpu": dict(
        words="heldout", points=20, n_relevant=1, n_distractors=2, positions=(0, 1, 2),
        mask_counts=(0, 1, 2, 4, 8, 16), locality_mask_counts=(2, 8, 16),
        distractor_counts=(0, 1, 2), order_seeds=3, attribution_points=4,
        attribution_masks=8, decode_steps=8, sensitivity_counts=(0, 4, 8, 16),
        sensitivity_points=10, dtype="float32", batch_size=32, length_multiple=32),
    "gpu": dict(
        words="heldout", points=100, n_relevant=1, n_distractors=14,
        positions=(0, 2, 4, 6, 8, 10, 12, 14), mask_counts=(0, 1, 2, 4, 8, 16, 32, 64),
        locality_mask_counts=(2, 16, 64), distractor_counts=(0, 2, 4, 6, 8, 10, 12, 14),
        order_seeds=5, attribution_points=10, attribution_masks=32, decode_steps=16,
        sensitivity_counts=(0, 8, 32, 64), sensitivity_points=20, dtype="bfloat16",
        batch_size=64, length_multiple=64),
    "smoke": dict(
        words="heldout", points=2, n_relevant=1, n_distractors=1, positions=(0, 1),
        mask_counts=(0, 2), locality_mask_counts=(2,), distractor_counts=(0, 1),
        order_seeds=1, attribution_points=1, attribution_masks=2, decode_steps=2,
        sensitivity_counts=(0, 2), sensitivity_points=2, dtype="float32", batch_size=8,
        length_multiple=32),
}
for _size, _overrides in REPRO.items():
    MODELS[f"repro_{_size}"] = ("", _overrides)  # label: the arm's workdir name


def suite_config(experiment: str, arg=None):
    c = base_config()
    _, values = parse_arg(arg, config_name=f"context/{experiment}",
                          keys=("model", "path", "points"))
    name = values.get("model", "quickstart")
    if name not in MODELS:
        raise ValueError(f"context/{experiment}: unknown model={name!r}; valid: "
                         f"{', '.join(MODELS)}")
    label, overrides = MODELS[name]
    cx = c.context
    cx.experiment = experiment
    cx.model_name = label
    if name == "quickstart":
        cx.update(QUICK)
        cx.model_path = "runs/quickstart"
    elif name.startswith("repro_"):
        cx.model_path = f"runs/{name}/mdlm"
    else:
        cx.batch_size = 16
        cx.dtype = "bfloat16"
    cx.update(overrides)
    if "path" in values:
        cx.model_path = values["path"]
    if "points" in values:
        cx.points = int(values["points"])
    return lock(c)


def get_config(arg=None):
    return suite_config("extra_masks", arg)
