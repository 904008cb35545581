"""Functional loss terms.

    term(apply, params, batch, rng, cfg) -> (loss_scalar, metrics_dict)

``batch`` holds ``tokens`` int32[B, L] and optionally ``valid`` bool[B, L] (padding is
False), ``prompt_mask`` bool[B, L] (SFT: prompt tokens, never masked), ``segment_ids``
int32[B, L] (packed documents) and ``step`` (int32 scalar, the optimizer step, for
curricula). ``config.loss.terms`` maps registered names to weights; :func:`total_loss`
sums them. Everything computes in float32 whatever the model's compute dtype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mdlm_jax.diffusion import forward, schedules
from mdlm_jax.diffusion.parameterization import clean_log_probs


@dataclasses.dataclass(frozen=True)
class Term:
    """A registered loss term and what the rest of the library needs to know about it.

    ``fn(apply, params, batch, rng, cfg) -> (loss, metrics)``; ``check(config, tokenizer)``
    raises a one-line ``ValueError`` for settings the term cannot honour (run once, when a
    config loads); ``diffusion``: the term masks tokens, so it needs ``diffusion.mask_id``
    and a bidirectional model; ``forward_passes``: model passes per example (for the FLOP
    count); ``evaluations``: names of the train hooks it wants run around training
    (``train_hooks.EVALUATIONS``).
    """

    name: str
    fn: Callable
    check: Callable | None = None
    diffusion: bool = False
    forward_passes: int = 1
    evaluations: tuple[str, ...] = ()


TERMS: dict[str, Term] = {}


def register(name: str, *, check: Callable | None = None, diffusion: bool = False,
             forward_passes: int = 1, evaluations: tuple[str, ...] = ()):
    """Decorator: register ``fn`` as the loss term ``name`` (see :class:`Term`)."""
    def deco(fn):
        if name in TERMS:
            raise ValueError(f"loss term {name!r} registered twice")
        TERMS[name] = Term(name, fn, check, diffusion, forward_passes, tuple(evaluations))
        return fn

    return deco


def get(name: str) -> Term:
    if name not in TERMS:
        raise ValueError(f"unknown loss term {name!r}; registered terms: {sorted(TERMS)}")
    return TERMS[name]


def configured_terms(cfg) -> list[tuple[Term, float]]:
    """``(term, weight)`` for every term of ``cfg.loss.terms`` with a non-zero weight."""
    return [(get(name), weight) for name, weight in sorted(cfg.loss.terms.items())
            if weight != 0]


def is_diffusion(cfg) -> bool:
    """Whether a configured term masks tokens (needs a mask id, a bidirectional model)."""
    return any(term.diffusion for term, _ in configured_terms(cfg))


def forward_passes(cfg) -> int:
    """Model passes per training example, summed over the configured terms."""
    return sum(term.forward_passes for term, _ in configured_terms(cfg))


def evaluations(cfg) -> tuple[str, ...]:
    """The evaluations the configured terms want around training, each named once."""
    return tuple(dict.fromkeys(e for term, _ in configured_terms(cfg)
                               for e in term.evaluations))


def total_loss(apply, params, batch, rng, cfg):
    """Weighted sum of ``cfg.loss.terms``; metrics are prefixed by the term name."""
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for i, (name, weight) in enumerate(sorted(cfg.loss.terms.items())):
        if weight == 0:
            continue
        loss, m = get(name).fn(apply, params, batch, jax.random.fold_in(rng, i), cfg)
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
    return nelbo_sums(nll_per_position(logits_BxLxV, x0_BxL, mask_id), xt_BxL, t_B,
                      schedule, mask_id, x0_BxL=x0_BxL)


def nelbo_sums(nll_BxL, xt_BxL, t_B, schedule, mask_id: int, *, x0_BxL=None):
    """The one NELBO reduction (training, ``eval``, likelihoods): per sequence,
    ``w(t) * sum`` of the per-position NLL over the positions masked in ``xt``. With
    ``x0_BxL``, mask tokens given as input data (``valid=False`` positions of the
    ``context_tasks`` corpus) are not scored: they were not masked by the forward process."""
    scored = xt_BxL == mask_id
    if x0_BxL is not None:
        scored = scored & (x0_BxL != mask_id)
    per_seq = jnp.sum(jnp.where(scored, nll_BxL, 0.0), axis=-1)
    return schedule.weight(t_B) * per_seq


def next_token_sums(nll_BxLm1, valid_BxL, segment_ids_BxL=None):
    """The one AR NLL reduction (training, ``eval``, sample perplexity): ``(nll_sum_B,
    count_B)`` over the pairs (i, i + 1) whose tokens are both valid and, for packed data
    (``segment_ids``), belong to one document."""
    valid = jnp.asarray(valid_BxL, jnp.bool_)
    scored = valid[:, 1:] & valid[:, :-1]
    if segment_ids_BxL is not None:
        scored = scored & (segment_ids_BxL[:, 1:] == segment_ids_BxL[:, :-1])
    return jnp.sum(jnp.where(scored, nll_BxLm1, 0.0), axis=-1), jnp.sum(scored, axis=-1)


def token_scores(apply, params, tokens_BxL, t_B, score, extras, *, segment_ids_BxL=None,
                 chunk: int = 0):
    """``score(logits_BxCxV, *extras_BxC)`` over all positions, [B, L] (or a tuple of them).

    With ``chunk`` > 0 the output head runs on ``chunk`` positions at a time from the
    model's final hidden states (``apply.hidden``), each chunk rematerialised in the
    backward pass: float32 logits over the vocabulary exist for one chunk, never for the
    whole sequence. ``chunk`` 0 (or an ``apply`` without ``hidden``) is the plain path.
    """
    hidden_fn = getattr(apply, "hidden", None)
    if chunk <= 0 or hidden_fn is None or chunk >= tokens_BxL.shape[1]:
        logits = apply(params, tokens_BxL, t_B, segment_ids_BxL=segment_ids_BxL)
        return score(logits, *extras)
    b, length = tokens_BxL.shape
    if length % chunk:
        raise ValueError(f"loss.logits_chunk={chunk} does not divide the sequence length "
                         f"{length}; use a divisor of it (or 0: no chunking)")
    hidden_BxLxD, head = hidden_fn(params, tokens_BxL, t_B, segment_ids_BxL=segment_ids_BxL)

    def chunks(x):  # [B, L, ...] -> [L / chunk, B, chunk, ...]
        return jnp.moveaxis(x.reshape(b, length // chunk, chunk, *x.shape[2:]), 1, 0)

    @jax.checkpoint
    def one(args):
        h, ex = args
        return score(head(h), *ex)

    out = jax.lax.map(one, (chunks(hidden_BxLxD), tuple(chunks(e) for e in extras)))
    return jax.tree.map(lambda y: jnp.moveaxis(y, 0, 1).reshape(b, length, *y.shape[3:]), out)


def nll_per_position(logits_BxLxV, targets_BxL, mask_id: int | None = None):
    """-log p(target) at every position, float32; SUBS (mask logit suppressed) with
    ``mask_id``."""
    logits = logits_BxLxV.astype(jnp.float32)
    logp = (jax.nn.log_softmax(logits, axis=-1) if mask_id is None
            else clean_log_probs(logits, mask_id))
    return -jnp.take_along_axis(logp, targets_BxL[..., None], axis=-1)[..., 0]


def ar_nll_per_token(logits_BxLxV, tokens_BxL):
    """-log p(x_{i+1} | x_{<=i}) for i < L - 1, shape [B, L - 1]."""
    return nll_per_position(logits_BxLxV[:, :-1], tokens_BxL[:, 1:])


def crop_to_length(valid_BxL, segment_ids_BxL, n):
    """Keep positions ``< n``: the tail becomes invalid and a separate attention segment,
    so the kept part neither attends to it nor is scored on it (static shapes)."""
    b, length = valid_BxL.shape
    keep = jnp.arange(length)[None, :] < n
    seg = jnp.zeros((b, length), jnp.int32) if segment_ids_BxL is None else segment_ids_BxL
    return valid_BxL & keep, jnp.where(keep, seg, -1)


def batch_masks(batch):
    """``(valid, maskable)``: real tokens, and those the forward process may mask."""
    xp = np if isinstance(batch["tokens"], np.ndarray) else jnp
    tokens = batch["tokens"]
    valid = batch.get("valid")
    valid = xp.ones(tokens.shape, bool) if valid is None else valid.astype(bool)
    maskable = valid
    if batch.get("prompt_mask") is not None:
        maskable = maskable & ~batch["prompt_mask"].astype(bool)
    return valid, maskable


def padding_segments(valid_BxL, cfg):
    """Padded data (``data.packing='pad'``): padding becomes its own attention segment, so
    it changes nothing for the real tokens. None for packed data (nothing to hide)."""
    if cfg.data.packing != "pad":
        return None
    return jnp.where(valid_BxL, 0, 1).astype(jnp.int32)


NORMALIZATIONS = ("auto", "tokens", "sequence")


def normalization(cfg) -> str:
    """``loss.normalize``: ``tokens`` divides the batch's loss by its scored tokens;
    ``sequence`` divides each sequence by its own scored tokens (for prompt/answer data:
    its answer length, LLaDA's SFT objective) and averages; ``auto`` is ``sequence`` for
    prompt/answer data (``data.name='prompt_answer'``) and ``tokens`` otherwise."""
    how = cfg.loss.normalize
    if how not in NORMALIZATIONS:
        raise ValueError(f"loss.normalize={how!r} is unknown; use one of {NORMALIZATIONS}")
    if how == "auto":
        return "sequence" if cfg.data.name == "prompt_answer" else "tokens"
    return how


def _normalize(per_seq_B, count_B, how: str):
    if how == "tokens":
        return jnp.sum(per_seq_B) / jnp.maximum(jnp.sum(count_B), 1)
    if how == "sequence":
        return jnp.mean(per_seq_B / jnp.maximum(count_B, 1))
    raise ValueError(f"loss.normalize={how!r} is unknown; use 'tokens' or 'sequence'")


# --------------------------------------------------------------------------- terms
@register("nelbo", diffusion=True, evaluations=("samples",))
def nelbo(apply, params, batch, rng, cfg):
    """MDLM / MD4 / LLaDA continuous-time NELBO, normalized per token (or sequence).

    With ``diffusion.random_crop_prob`` (LLaDA) a share of batches is cropped to a random
    length ~ U{1..L}; ``lax.cond`` keeps the uncropped path free of attention masks.
    """
    dcfg = cfg.diffusion
    x0 = batch["tokens"]
    b, length = x0.shape
    k_t, k_m, k_c = jax.random.split(rng, 3)
    valid, maskable = batch_masks(batch)
    segment_ids = batch.get("segment_ids")
    if segment_ids is None:
        segment_ids = padding_segments(valid, cfg)
    schedule = schedules.from_config(dcfg)
    t = forward.sample_times(k_t, b, eps=dcfg.time_eps, antithetic=dcfg.antithetic)

    def scored(valid, maskable, segment_ids):
        xt, masked = forward.mask_tokens(k_m, x0, schedule.mask_prob(t), dcfg.mask_id,
                                         maskable & valid)
        nll = token_scores(apply, params, xt, t,
                           lambda lg, x: nll_per_position(lg, x, dcfg.mask_id), (x0,),
                           segment_ids_BxL=segment_ids, chunk=cfg.loss.logits_chunk)
        per_seq = nelbo_sums(nll, xt, t, schedule, dcfg.mask_id, x0_BxL=x0)
        count = jnp.sum(maskable & valid, axis=-1).astype(jnp.float32)
        loss = _normalize(per_seq, count, normalization(cfg))
        return loss, {
            "nats_per_token": jnp.sum(per_seq) / jnp.maximum(jnp.sum(count), 1),
            "masked_fraction": jnp.sum(masked) / jnp.maximum(jnp.sum(count), 1),
            "tokens": jnp.sum(count),
        }

    if dcfg.random_crop_prob <= 0:
        return scored(valid, maskable, segment_ids)
    k_p, k_n = jax.random.split(k_c)
    n = jax.random.randint(k_n, (), 1, length + 1)

    def cropped():
        v, seg = crop_to_length(valid, segment_ids, n)
        return scored(v, maskable, seg)

    def uncropped():
        return scored(valid, maskable, segment_ids)

    return jax.lax.cond(jax.random.uniform(k_p, ()) < dcfg.random_crop_prob,
                        cropped, uncropped)


@register("ar_nll")
def ar_nll(apply, params, batch, rng, cfg):
    """Next-token negative log-likelihood of a causal model (the AR baselines)."""
    del rng
    x0 = batch["tokens"]
    valid, _ = batch_masks(batch)
    segment_ids = batch.get("segment_ids")
    if segment_ids is None:
        segment_ids = padding_segments(valid, cfg)
    targets = jnp.concatenate([x0[:, 1:], x0[:, :1]], axis=1)  # the last one is unscored
    nll = token_scores(apply, params, x0, None, nll_per_position, (targets,),
                       segment_ids_BxL=segment_ids, chunk=cfg.loss.logits_chunk)[:, :-1]
    per_seq, count = next_token_sums(nll, valid, batch.get("segment_ids"))
    count = count.astype(jnp.float32)
    loss = _normalize(per_seq, count, normalization(cfg))
    return loss, {"nats_per_token": jnp.sum(per_seq) / jnp.maximum(jnp.sum(count), 1),
                  "tokens": jnp.sum(count)}


# The mask-agnostic term (PAPER.md section 5) lives in its own module; importing it
# registers it.
from mdlm_jax.diffusion import mask_agnostic as _mask_agnostic  # noqa: E402,F401
