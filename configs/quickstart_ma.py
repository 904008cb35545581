"""Mask-agnostic fine-tuning of the quickstart model on CPU in a few minutes.

Restores the quickstart MDLM (``configs/quickstart.py``: llama family, kjv_bpe tokenizer,
vocab 2049, mask id 2048) from its workdir and trains LoRA adapters (rank 8 on q, k, v, o,
gate, up, down) with the mask-agnostic term (CE + TV, PAPER.md section 5) on the generated
three-option multiple-choice set (``data.files='embedded'``: word tasks and smallest /
largest number distractors, answers 'A' / 'B' / 'C'), 256 tokens of context, up to 64
appended masks (curriculum from 4 over 100 steps)::

    python -m mdlm_jax.main train --config configs/quickstart.py --workdir runs/quickstart
    python -m mdlm_jax.main train --config configs/quickstart_ma.py \\
        --workdir runs/quickstart_ma

Args (comma separated): ``ce_tv`` (default) | ``ce`` (beta 0); ``full`` (train every
weight, no LoRA); ``restore=DIR`` (the quickstart workdir, default ``runs/quickstart``);
``smoke`` (a few steps, for tests).
"""


from mdlm_jax.config_base import lock, sibling_config
from mdlm_jax.config_base import parse_arg as parse_config_arg

FLAGS = ("ce_tv", "ce", "full", "smoke")


def parse_arg(arg):
    flags, values = parse_config_arg(arg, config_name="quickstart_ma", flags=FLAGS,
                                     keys=("restore",))
    if {"ce", "ce_tv"} <= flags:
        raise ValueError("quickstart_ma: choose one variant, ce_tv or ce")
    return flags, values


def get_config(arg=None):
    flags, values = parse_arg(arg)
    c = sibling_config(__file__, "quickstart.py", "smoke" if "smoke" in flags else None)
    c.checkpoint.restore_from = values.get("restore", "runs/quickstart")

    c.loss.terms = {"mask_agnostic": 1.0}
    ma = c.loss.mask_agnostic
    ma.alpha = 0.1
    ma.beta = 0.0 if "ce" in flags else 1.0
    ma.p_low, ma.p_high = 0.2, 0.8
    ma.max_masks = 64
    ma.curriculum_start = 4
    ma.curriculum_steps = 100
    ma.probe_mask_counts = (0, 8, 32, 64)  # every embedded prompt leaves room for 64

    lo = c.lora
    lo.full_finetune = "full" in flags  # the choice is explicit: LoRA or every weight
    if "full" not in flags:
        lo.rank, lo.alpha = 8, 16.0
        lo.targets = ("q", "k", "v", "o", "gate", "up", "down")

    da = c.data
    da.name = "prompt_answer"
    da.files = "embedded"
    da.tokenizer = "kjv_bpe"
    da.chat_template = ""
    da.seq_len = 256
    da.global_batch_size = 16

    o = c.optimizer
    o.learning_rate = 1e-3 if "full" not in flags else 1e-4
    o.warmup_steps = 10
    o.decay = "constant"
    o.weight_decay = 0.0
    o.grad_clip = 1.0
    o.ema_decay = 0.0

    c.train.num_steps = 200
    c.train.log_every = 20
    c.train.sample_at_end = False
    c.checkpoint.every_steps = 100
    c.eval.batch_size = 16
    c.eval.num_batches = 4
    if "smoke" in flags:
        c.train.num_steps = 4
        c.checkpoint.every_steps = 2
        ma.curriculum_steps = 2
        c.eval.num_batches = 1
    return lock(c)
