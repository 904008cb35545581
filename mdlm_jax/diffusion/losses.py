"""Functional loss terms.

    term(apply, params, batch, rng, cfg) -> (loss_scalar, metrics_dict)

``batch`` holds ``tokens`` int32[B, L] and optionally ``valid`` bool[B, L] (padding is
False), ``prompt_mask`` bool[B, L] (SFT: prompt tokens, never masked), ``segment_ids``
int32[B, L] (packed documents) and ``step`` (int32 scalar, the optimizer step, for
curricula). ``config.loss.terms`` maps registered names to weights; :func:`total_loss`
sums them. Everything computes in float32 whatever the model's compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from mdlm_jax.diffusion import forward, schedules
from mdlm_jax.diffusion.parameterization import clean_log_probs

TERMS: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        if name in TERMS:
            raise ValueError(f"loss term {name!r} registered twice")
        TERMS[name] = fn
        return fn

    return deco


def get(name: str) -> Callable:
    if name not in TERMS:
        raise ValueError(f"unknown loss term {name!r}; registered terms: {sorted(TERMS)}")
    return TERMS[name]


def total_loss(apply, params, batch, rng, cfg):
    """Weighted sum of ``cfg.loss.terms``; metrics are prefixed by the term name."""
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for i, (name, weight) in enumerate(sorted(cfg.loss.terms.items())):
        if weight == 0:
            continue
        loss, m = get(name)(apply, params, batch, jax.random.fold_in(rng, i), cfg)
        total = total + weight * loss
        metrics[f"{name}/loss"] = loss
        for k, v in m.items():
            metrics[f"{name}/{k}"] = v
    metrics["loss"] = total
    return total, metrics


# --------------------------------------------------------------------------- maths
def masked_nelbo(logits_BxLxV, x0_BxL, xt_BxL, t_B, schedule, mask_id: int):
    """Continuous-time NELBO per sequence (nats, summed over positions).

    ``w(t) * sum_{i: xt_i = mask} -log p_theta(x0_i | xt)`` with SUBS: only masked
    positions contribute and the mask token gets no probability.
    """
    logp = clean_log_probs(logits_BxLxV, mask_id)
    nll = -jnp.take_along_axis(logp, x0_BxL[..., None], axis=-1)[..., 0]
    masked = xt_BxL == mask_id
    per_seq = jnp.sum(jnp.where(masked, nll, 0.0), axis=-1)
    return schedule.weight(t_B) * per_seq


def ar_nll_per_token(logits_BxLxV, tokens_BxL):
    """-log p(x_{i+1} | x_{<=i}) for i < L - 1, shape [B, L - 1]."""
    logp = jax.nn.log_softmax(logits_BxLxV[:, :-1].astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, tokens_BxL[:, 1:, None], axis=-1)[..., 0]


def random_crop(rng, valid_BxL, segment_ids_BxL, prob: float):
    """LLaDA's random-length crop of a share ``prob`` of batches, with static shapes.

    A cropped batch keeps positions ``< n`` (n ~ U{1..L}); the rest become invalid and a
    separate segment, so the kept part neither attends to them nor is scored on them.
    """
    b, length = valid_BxL.shape
    k1, k2 = jax.random.split(rng)
    crop = jax.random.uniform(k1, ()) < prob
    n = jax.random.randint(k2, (), 1, length + 1)
    keep = jnp.logical_or(~crop, jnp.arange(length)[None, :] < n)
    seg = jnp.zeros((b, length), jnp.int32) if segment_ids_BxL is None else segment_ids_BxL
    seg = jnp.where(keep, seg, -1)
    return valid_BxL & keep, seg


def batch_masks(batch):
    tokens = batch["tokens"]
    valid = batch.get("valid")
    valid = jnp.ones(tokens.shape, jnp.bool_) if valid is None else valid.astype(jnp.bool_)
    maskable = valid
    if batch.get("prompt_mask") is not None:
        maskable = maskable & ~batch["prompt_mask"].astype(jnp.bool_)
    return valid, maskable


def _normalize(per_seq_B, count_B, how: str):
    if how == "tokens":
        return jnp.sum(per_seq_B) / jnp.maximum(jnp.sum(count_B), 1)
    if how == "sequence":
        return jnp.mean(per_seq_B / jnp.maximum(count_B, 1))
    raise ValueError(f"loss.normalize={how!r} is unknown; use 'tokens' or 'sequence'")


# --------------------------------------------------------------------------- terms
@register("nelbo")
def nelbo(apply, params, batch, rng, cfg):
    """MDLM / MD4 / LLaDA continuous-time NELBO, normalized per token (or sequence)."""
    dcfg = cfg.diffusion
    x0 = batch["tokens"]
    b = x0.shape[0]
    k_t, k_m, k_c = jax.random.split(rng, 3)
    valid, maskable = batch_masks(batch)
    segment_ids = batch.get("segment_ids")
    if dcfg.random_crop_prob > 0:
        valid, segment_ids = random_crop(k_c, valid, segment_ids, dcfg.random_crop_prob)
        maskable = maskable & valid
    schedule = schedules.from_config(dcfg)
    t = forward.sample_times(k_t, b, eps=dcfg.time_eps, antithetic=dcfg.antithetic)
    xt, masked = forward.mask_tokens(k_m, x0, schedule.mask_prob(t), dcfg.mask_id, maskable)
    logits = apply(params, xt, t, segment_ids_BxL=segment_ids)
    per_seq = masked_nelbo(logits, x0, xt, t, schedule, dcfg.mask_id)
    count = jnp.sum(maskable, axis=-1).astype(jnp.float32)
    loss = _normalize(per_seq, count, cfg.loss.normalize)
    metrics = {
        "nats_per_token": jnp.sum(per_seq) / jnp.maximum(jnp.sum(count), 1),
        "masked_fraction": jnp.sum(masked) / jnp.maximum(jnp.sum(count), 1),
        "tokens": jnp.sum(count),
    }
    return loss, metrics


@register("ar_nll")
def ar_nll(apply, params, batch, rng, cfg):
    """Next-token negative log-likelihood of a causal model (the AR baselines)."""
    del rng
    x0 = batch["tokens"]
    valid, _ = batch_masks(batch)
    logits = apply(params, x0, None, segment_ids_BxL=batch.get("segment_ids"))
    nll = ar_nll_per_token(logits, x0)
    scored = valid[:, 1:]
    if batch.get("segment_ids") is not None:
        seg = batch["segment_ids"]
        scored = scored & (seg[:, 1:] == seg[:, :-1])
    per_seq = jnp.sum(jnp.where(scored, nll, 0.0), axis=-1)
    count = jnp.sum(scored, axis=-1).astype(jnp.float32)
    loss = _normalize(per_seq, count, cfg.loss.normalize)
    return loss, {"nats_per_token": jnp.sum(per_seq) / jnp.maximum(jnp.sum(count), 1),
                  "tokens": jnp.sum(count)}
