"""Validation of a config and of data against it, with errors that name the fix."""

from __future__ import annotations

import numpy as np

DIFFUSION_TERMS = ("nelbo", "mask_agnostic")


def is_diffusion(config) -> bool:
    return any(config.loss.terms.get(t, 0) for t in DIFFUSION_TERMS)


def validate_config(config) -> None:
    from mdlm_jax.diffusion import losses, schedules
    from mdlm_jax.model.transformer import validate_model_config

    m, d = config.model, config.data
    validate_model_config(m)
    if d.seq_len > m.max_length:
        raise ValueError(f"data.seq_len={d.seq_len} exceeds model.max_length={m.max_length}; "
                         f"lower data.seq_len or raise model.max_length")
    if not config.loss.terms:
        raise ValueError("loss.terms is empty; e.g. --config.loss.terms='{\"nelbo\": 1.0}'")
    for name in config.loss.terms:
        losses.get(name)
    if config.optimizer.grad_accum_steps < 1:
        raise ValueError("optimizer.grad_accum_steps must be >= 1")
    if config.train.num_steps < 1:
        raise ValueError("train.num_steps must be >= 1")
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
    if config.loss.terms.get("mask_agnostic", 0):
        losses.check_mask_agnostic_config(config.loss.mask_agnostic, config.diffusion.mask_id)
    if config.lora.rank != 0:
        from mdlm_jax.model import lora

        lora.check_config(config.lora)
    tok = check_tokenizer(config)
    if config.context.eval_at_end:
        from mdlm_jax.context import harness

        harness.check_eval_at_end(config, tok)
    ma = config.loss.mask_agnostic
    if config.loss.terms.get("mask_agnostic", 0) and ma.eos_id != tok.eos_id:
        raise ValueError(f"loss.mask_agnostic.eos_id={ma.eos_id} differs from the tokenizer's "
                         f"EOS id {tok.eos_id}; set --config.loss.mask_agnostic.eos_id="
                         f"{tok.eos_id}")


def check_tokenizer(config):
    from mdlm_jax.data.tokenizers import get_tokenizer

    tok = get_tokenizer(config.data)
    if tok.vocab_size > config.model.vocab_size:
        raise ValueError(f"the {config.data.tokenizer!r} tokenizer emits {tok.vocab_size} ids "
                         f"but model.vocab_size={config.model.vocab_size}; raise "
                         "model.vocab_size")
    if is_diffusion(config) and tok.vocab_size > config.diffusion.mask_id:
        raise ValueError(f"diffusion.mask_id={config.diffusion.mask_id} collides with the "
                         f"tokenizer's ids (0..{tok.vocab_size - 1}); use an id >= "
                         f"{tok.vocab_size}")
    return tok


def check_batch_tokens(tokens, config) -> None:
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
    if is_diffusion(config) and np.any(tokens == config.diffusion.mask_id):
        raise ValueError(f"a batch holds the mask id {config.diffusion.mask_id} as data; the "
                         "dataset's tokenizer overlaps the mask id: change diffusion.mask_id")
