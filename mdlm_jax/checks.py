"""Validation of a config and of data against it, with errors that name the fix."""

from __future__ import annotations

import math

import numpy as np


def is_diffusion(config) -> bool:
    """Whether a configured loss term masks tokens (``losses.Term.diffusion``)."""
    from mdlm_jax.diffusion import losses

    return losses.is_diffusion(config)


# Ranges of numeric settings, checked when a config loads: (key, lowest, lowest allowed,
# highest, highest allowed). Intervals (train.log_every, checkpoint.every_steps) are > 0;
# train.eval_every = 0 means "never during training".
RANGES = (
    ("data.seq_len", 2, True, None, None),
    ("data.global_batch_size", 1, True, None, None),
    ("data.num_workers", 0, True, None, None),
    ("diffusion.schedule_eps", 0, True, 1, False),
    ("diffusion.schedule_power", 0, False, None, None),
    ("diffusion.time_eps", 0, True, 1, False),
    ("diffusion.random_crop_prob", 0, True, 1, True),
    ("optimizer.learning_rate", 0, False, None, None),
    ("optimizer.warmup_steps", 0, True, None, None),
    ("optimizer.min_lr_ratio", 0, True, 1, True),
    ("optimizer.b1", 0, True, 1, False),
    ("optimizer.b2", 0, True, 1, False),
    ("optimizer.eps", 0, False, None, None),
    ("optimizer.weight_decay", 0, True, None, None),
    ("optimizer.grad_clip", 0, True, None, None),  # 0: no clipping
    ("optimizer.ema_decay", 0, True, 1, False),  # 0: no EMA
    ("optimizer.grad_accum_steps", 1, True, None, None),
    ("train.num_steps", 1, True, None, None),
    ("train.log_every", 1, True, None, None),
    ("train.eval_every", 0, True, None, None),
    ("train.peak_flops_per_device", 0, True, None, None),
    ("checkpoint.every_steps", 1, True, None, None),
    ("lora.rank", 0, True, None, None),
    ("sampler.batch_size", 1, True, None, None),
    ("sampler.eos_id", -1, True, None, None),
    ("data.eos_id", -1, True, None, None),
    ("eval.mc_samples", 1, True, None, None),
    ("eval.num_batches", 0, True, None, None),
    ("eval.batch_size", 1, True, None, None),
)


def _check_range(config, key, lo, lo_ok, hi, hi_ok) -> None:
    group, name = key.split(".")
    v = config[group][name]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v >= lo if lo_ok else v > lo)
    if ok and hi is not None:
        ok = v <= hi if hi_ok else v < hi
    if not ok:
        want = f"{'>=' if lo_ok else '>'} {lo}"
        if hi is not None:
            want = f"in {'[' if lo_ok else '('}{lo}, {hi}{']' if hi_ok else ')'}"
        raise ValueError(f"{key}={v!r} must be a finite number {want}; set --config.{key}")


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is unknown; use one of {', '.join(map(repr, choices))}")


def validate_config(config, *, sampling: bool | None = None) -> None:
    """The one validation pass of a config, run when a command loads it: every numeric
    setting in range, every name one the code implements, the settings consistent.

    ``sampling``: whether the command samples (default: ``train.sample_at_end``); the
    sampler's canvas must then fit the model, else only its names and ranges are checked.
    """
    from mdlm_jax import train_state
    from mdlm_jax.checkpoint import integrity
    from mdlm_jax.data import packing, prompt_answer, registry, tokenizers
    from mdlm_jax.diffusion import losses, parameterization, sampler, schedules
    from mdlm_jax.model.transformer import validate_model_config

    m, d = config.model, config.data
    validate_model_config(m)
    for rng in RANGES:
        _check_range(config, *rng)
    _check_choice("data.name", d.name, tuple(registry.DATASETS))
    _check_choice("data.tokenizer", d.tokenizer, tokenizers.TOKENIZERS)
    _check_choice("data.packing", d.packing, packing.PACKINGS)
    _check_choice("data.chat_template", d.chat_template, prompt_answer.TEMPLATES)
    _check_choice("optimizer.decay", config.optimizer.decay, train_state.DECAYS)
    _check_choice("loss.normalize", config.loss.normalize, losses.NORMALIZATIONS)
    _check_choice("sampler.mask_in_softmax", config.sampler.mask_in_softmax,
                  parameterization.MASK_IN_SOFTMAX)
    for name, weight in config.loss.terms.items():
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss.terms[{name!r}]={weight!r} must be a finite weight >= 0")
    sampling = config.train.sample_at_end if sampling is None else sampling
    sampler.Settings.from_config(config).validate(layout=sampling)
    if config.sampler.kv_cache != "none" and (m.family != "llama" or m.causal):
        raise ValueError(
            f"sampler.kv_cache={config.sampler.kv_cache!r} supports the bidirectional llama "
            f"family only (model.family={m.family!r}, causal={m.causal}); set "
            "--config.sampler.kv_cache=none")
    _check_finetune(config)
    integrity.check_config(config.checkpoint)
    if d.seq_len > m.max_length:
        raise ValueError(f"data.seq_len={d.seq_len} exceeds model.max_length={m.max_length}; "
                         f"lower data.seq_len or raise model.max_length")
    if not config.loss.terms:
        raise ValueError("loss.terms is empty; e.g. --config.loss.terms='{\"nelbo\": 1.0}'")
    for name in config.loss.terms:
        losses.get(name)
    schedules.from_config(config.diffusion)
    if is_diffusion(config):
        if not 0 <= config.diffusion.mask_id < m.vocab_size:
            raise ValueError(f"diffusion.mask_id={config.diffusion.mask_id} is outside the "
                             f"model vocabulary [0, {m.vocab_size}); set it to a spare id "
                             f"(often model.vocab_size - 1)")
        if m.causal:
            raise ValueError("model.causal=True with a diffusion loss: masked diffusion "
                             "needs a bidirectional model; set model.causal=False or use "
                             "the ar_nll term")
    if config.lora.rank != 0:
        from mdlm_jax.model import lora

        lora.check_config(config.lora)
    tok = check_tokenizer(config)
    if config.context.eval_at_end:
        from mdlm_jax.context import harness

        harness.check_eval_at_end(config, tok)
    for term, _ in losses.configured_terms(config):
        if term.check is not None:
            term.check(config, tok)


def _check_finetune(config) -> None:
    """Fine-tuning every weight is a choice: a run that starts from another model with
    ``lora.rank=0`` must say ``lora.full_finetune=True``."""
    lo = config.lora
    source = config.model.init_from or config.checkpoint.restore_from
    if lo.full_finetune and lo.rank:
        raise ValueError(f"lora.full_finetune=True with lora.rank={lo.rank}: choose one, "
                         "LoRA adapters (rank > 0) or every weight (rank 0)")
    if lo.full_finetune and not source:
        raise ValueError("lora.full_finetune=True but nothing to fine-tune: set "
                         "model.init_from or checkpoint.restore_from, or drop the flag")
    if source and not lo.rank and not lo.full_finetune:
        raise ValueError(f"this run starts from {source} with lora.rank=0, which trains every "
                         "weight: set --config.lora.rank=8 (LoRA) or "
                         "--config.lora.full_finetune=True (full fine-tuning)")


def check_tokenizer(config):
    from mdlm_jax.data.tokenizers import get_tokenizer

    tok = get_tokenizer(config.data)
    if tok.vocab_size > config.model.vocab_size:
        raise ValueError(f"the {config.data.tokenizer!r} tokenizer emits {tok.vocab_size} ids "
                         f"but model.vocab_size={config.model.vocab_size}; raise "
                         "model.vocab_size")
    if config.data.eos_id >= 0 and config.data.eos_id != tok.eos_id:
        raise ValueError(f"data.eos_id={config.data.eos_id} differs from the tokenizer's EOS "
                         f"id {tok.eos_id}; drop the setting (-1 reads it from the tokenizer)")
    own_mask = config.diffusion.mask_id == tok.mask_id  # the tokenizer's mask token
    if is_diffusion(config) and tok.vocab_size > config.diffusion.mask_id and not own_mask:
        raise ValueError(f"diffusion.mask_id={config.diffusion.mask_id} collides with the "
                         f"tokenizer's ids (0..{tok.vocab_size - 1}); use an id >= "
                         f"{tok.vocab_size}")
    return tok


def check_batch_tokens(tokens, config, valid=None) -> None:
    """Ids inside the vocabulary; for diffusion, the mask id only where ``valid`` is False
    (masks given as input, as the ``context_tasks`` corpus does)."""
    tokens = np.asarray(tokens)
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= config.model.vocab_size:
        raise ValueError(f"a batch holds token id {hi if hi >= config.model.vocab_size else lo}"
                         f" outside the model vocabulary [0, {config.model.vocab_size}); the "
                         "dataset was prepared with another tokenizer: re-prepare it or fix "
                         "model.vocab_size")
    if tokens.shape[-1] > config.model.max_length:
        raise ValueError(f"batch length {tokens.shape[-1]} exceeds model.max_length="
                         f"{config.model.max_length}")
    given = tokens == config.diffusion.mask_id
    if valid is not None:
        given = given & np.asarray(valid, bool)
    if is_diffusion(config) and np.any(given):
        raise ValueError(f"a batch holds the mask id {config.diffusion.mask_id} as data; the "
                         "dataset's tokenizer overlaps the mask id: change diffusion.mask_id")
