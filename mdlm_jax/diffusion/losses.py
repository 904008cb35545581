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
                      schedule, mask_id)


def nelbo_sums(nll_BxL, xt_BxL, t_B, schedule, mask_id: int):
    """The one NELBO reduction (training, ``eval``, likelihoods): per sequence,
    ``w(t) * sum`` of the per-position NLL over the positions masked in ``xt``."""
    per_seq = jnp.sum(jnp.where(xt_BxL == mask_id, nll_BxL, 0.0), axis=-1)
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
        per_seq = nelbo_sums(nll, xt, t, schedule, dcfg.mask_id)
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


# ------------------------------------------------------------ mask-agnostic loss
# PAPER.md section 5. Batch layout (``data.prompt_answer`` produces it):
#   tokens      int32[B, L]  prompt + answer + EOS padding, left-aligned
#   prompt_mask bool[B, L]   prompt positions: [0, q)
#   answer_mask bool[B, L]   answer positions: [q, q + a) (EOS padding excluded)
#   valid       bool[B, L]   False on whole padding rows (their a is 0: they are ignored)
# Prompt and answer must be contiguous from position 0: only q = sum(prompt_mask) and
# a = sum(answer_mask) are read. Batches without ``answer_mask`` (pretraining) fall back to
# a random cut: with n = sum(valid) (valid taken as a prefix), the answer is a window of
# a = min(pretrain_answer_len, n - 1) tokens starting at c ~ U{1 .. min(n - a, L - a - 1)}
# and tokens [0, c) are the prompt; everything after the window is dropped (``segment_ids``
# are not used: the prompt may span packed documents).
# x_i = prompt + noised answer + [MASK] * l_i, EOS (``eos_id``) to the batch's static L, so
# room = L - q - a. The model sees the EOS padding (as in LLaDA's SFT and the paper); it
# never enters either term. A row whose count range min(room, max_masks) is < 1 cannot draw
# l1 != l2: it gets l1 = l2 = 0, contributes CE but no TV, and is counted in
# ``no_room_fraction``.
MA_BRANCHES = ("none", "first", "second")


def check_mask_agnostic_config(mcfg, mask_id: int) -> None:
    """Clear errors for settings the mask-agnostic term cannot honour."""
    if mcfg.beta < 0:
        raise ValueError(f"loss.mask_agnostic.beta={mcfg.beta} must be >= 0")
    if mcfg.alpha < 0:
        raise ValueError(f"loss.mask_agnostic.alpha={mcfg.alpha} must be >= 0")
    if not 0.0 < mcfg.p_low <= mcfg.p_high <= 1.0:
        raise ValueError(f"loss.mask_agnostic needs 0 < p_low <= p_high <= 1, got "
                         f"p_low={mcfg.p_low}, p_high={mcfg.p_high}")
    if mcfg.max_masks < 1:
        raise ValueError(f"loss.mask_agnostic.max_masks={mcfg.max_masks} must be >= 1")
    if mcfg.curriculum_steps < 0:
        raise ValueError(f"loss.mask_agnostic.curriculum_steps={mcfg.curriculum_steps} < 0")
    if mcfg.curriculum_steps > 0 and not 0 <= mcfg.curriculum_start <= mcfg.max_masks:
        raise ValueError(f"loss.mask_agnostic.curriculum_start={mcfg.curriculum_start} must "
                         f"lie in [0, max_masks={mcfg.max_masks}]")
    if mcfg.stop_gradient_branch not in MA_BRANCHES:
        raise ValueError(f"loss.mask_agnostic.stop_gradient_branch="
                         f"{mcfg.stop_gradient_branch!r}; use one of {MA_BRANCHES}")
    if mcfg.eos_id < 0 or mcfg.eos_id == mask_id:
        raise ValueError(f"loss.mask_agnostic.eos_id={mcfg.eos_id} must be the tokenizer's EOS "
                         f"id (>= 0 and not the mask id {mask_id})")
    if any(int(k) != k or k < 0 for k in mcfg.probe_mask_counts):
        raise ValueError(f"loss.mask_agnostic.probe_mask_counts={tuple(mcfg.probe_mask_counts)}"
                         " must be whole counts >= 0")
    if mcfg.pretrain_answer_len < 1:
        raise ValueError(f"loss.mask_agnostic.pretrain_answer_len={mcfg.pretrain_answer_len} "
                         "must be >= 1")


def check_mask_agnostic(config, tokenizer) -> None:
    """The term's load-time check: its settings, and its EOS id against the tokenizer's."""
    mcfg = config.loss.mask_agnostic
    check_mask_agnostic_config(mcfg, config.diffusion.mask_id)
    if mcfg.eos_id != tokenizer.eos_id:
        raise ValueError(f"loss.mask_agnostic.eos_id={mcfg.eos_id} differs from the tokenizer's "
                         f"EOS id {tokenizer.eos_id}; set --config.loss.mask_agnostic.eos_id="
                         f"{tokenizer.eos_id}")


def mask_agnostic_terms(logits1_BxAxV, logits2_BxAxV, answer_BxA, masked_BxA, p_B, *,
                        mask_id: int | None = None, tv_half: bool = False):
    """Per-example ``(ce_B, tv_B)`` of PAPER.md section 5 over answer positions.

    ce = -1 / (2 p n_m) * sum_{i=1,2} sum_{j masked} log p(a_j | x_i)
    tv = p / n_m * sum_{j masked} || softmax_1(j) - softmax_2(j) ||_1   (x 1/2 if tv_half)
    n_m is the number of masked positions (rows with none give 0). ``mask_id``: SUBS
    (that logit suppressed) when given. float32 throughout.
    """
    ll, l1 = mask_agnostic_positions(logits1_BxAxV, logits2_BxAxV, answer_BxA, mask_id)
    return mask_agnostic_reduce(ll, l1, masked_BxA, p_B, tv_half)


def mask_agnostic_reduce(ll_BxA, l1_BxA, masked_BxA, p_B, tv_half: bool):
    """``(ce_B, tv_B)`` from the per-position terms of ``mask_agnostic_positions``."""
    masked = masked_BxA.astype(jnp.bool_)
    p = jnp.asarray(p_B, jnp.float32)
    n_m = jnp.maximum(jnp.sum(masked, axis=-1).astype(jnp.float32), 1.0)
    ce = -jnp.sum(jnp.where(masked, ll_BxA, 0.0), axis=-1) / (2.0 * p * n_m)
    tv = p / n_m * jnp.sum(jnp.where(masked, l1_BxA, 0.0), axis=-1)
    return ce, (0.5 * tv if tv_half else tv)


def mask_agnostic_positions(logits1_BxAxV, logits2_BxAxV, answer_BxA, mask_id=None):
    """Per position: ``(log p_1(a) + log p_2(a), || softmax_1 - softmax_2 ||_1)``."""
    idx = jnp.asarray(answer_BxA, jnp.int32)[..., None]
    logp = []
    for lg in (logits1_BxAxV, logits2_BxAxV):
        lg = jnp.asarray(lg, jnp.float32)
        logp.append(jax.nn.log_softmax(lg, axis=-1) if mask_id is None
                    else clean_log_probs(lg, mask_id))
    ll = sum(jnp.take_along_axis(lp, idx, axis=-1)[..., 0] for lp in logp)
    return ll, jnp.sum(jnp.abs(jnp.exp(logp[0]) - jnp.exp(logp[1])), axis=-1)


def max_masks_at(step, mcfg):
    """The curriculum's current max_masks: linear from curriculum_start to max_masks."""
    if mcfg.curriculum_steps <= 0:
        return jnp.asarray(mcfg.max_masks, jnp.int32)
    if step is None:
        raise ValueError("loss.mask_agnostic.curriculum_steps > 0 needs batch['step'] "
                         "(the optimizer step)")
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / mcfg.curriculum_steps, 0.0, 1.0)
    span = mcfg.max_masks - mcfg.curriculum_start
    return (mcfg.curriculum_start + jnp.floor(frac * span)).astype(jnp.int32)


def prompt_answer_lengths(batch, rng, mcfg):
    """``(q_B, a_B)``: prompt and answer lengths (see the layout above)."""
    tokens = batch["tokens"]
    length = tokens.shape[1]
    if batch.get("answer_mask") is not None:
        a = jnp.sum(batch["answer_mask"].astype(jnp.int32), axis=-1)
        pm = batch.get("prompt_mask")
        q = (jnp.zeros_like(a) if pm is None else jnp.sum(pm.astype(jnp.int32), axis=-1))
        return q, a
    valid, _ = batch_masks(batch)
    n = jnp.sum(valid.astype(jnp.int32), axis=-1)
    a = jnp.clip(jnp.minimum(mcfg.pretrain_answer_len, n - 1), 0, None)
    hi = jnp.maximum(jnp.minimum(n - a, length - a - 1), 1)
    c = jax.random.randint(rng, n.shape, 1, hi + 1)
    return c, a


def noise_answer(rng, q_B, a_B, p_B, length: int):
    """masked_BxL: answer positions masked with probability p, at least one per answer.

    Forcing one mask raises the real mask rate above p for short answers (a one-token
    answer is always masked), so callers weight and condition on the realised rate
    ``sum(masked) / a`` (:func:`realised_rate`), not on the drawn p."""
    pos = jnp.arange(length)[None, :]
    answer = (pos >= q_B[:, None]) & (pos < (q_B + a_B)[:, None])
    u = jax.random.uniform(rng, answer.shape)
    masked = answer & (u < p_B[:, None])
    forced = pos == jnp.argmin(jnp.where(answer, u, 2.0), axis=-1)[:, None]
    none = ~jnp.any(masked, axis=-1, keepdims=True)
    return masked | (answer & forced & none)


def realised_rate(masked_BxL, a_B, p_B):
    """The share of each answer that is masked (``p_B`` where the answer is empty)."""
    n = jnp.sum(masked_BxL, axis=-1).astype(jnp.float32)
    return jnp.where(a_B > 0, n / jnp.maximum(a_B, 1).astype(jnp.float32), p_B)


def draw_mask_counts(rng, room_B, cap):
    """``(l1_B, l2_B, ok_B)``: l1 != l2 uniform over ordered pairs in [0, min(room, cap)].

    ``ok`` is False where that range holds a single value (then l1 = l2 = 0)."""
    top = jnp.minimum(jnp.maximum(room_B, 0), cap)
    ok = top >= 1
    k1, k2 = jax.random.split(rng)
    l1 = jax.random.randint(k1, top.shape, 0, top + 1)
    r = jax.random.randint(k2, top.shape, 0, jnp.maximum(top, 1))
    l2 = r + (r >= l1).astype(r.dtype)
    return jnp.where(ok, l1, 0), jnp.where(ok, l2, 0), ok


def with_extra_masks(x0_BxL, q_B, a_B, masked_BxL, n_masks_B, mask_id: int, eos_id: int):
    """prompt + noised answer + [MASK] * n_masks, then EOS to the static length."""
    pos = jnp.arange(x0_BxL.shape[1])[None, :]
    end = (q_B + a_B)[:, None]
    tail = jnp.where(pos < end + n_masks_B[:, None], mask_id, eos_id)
    body = jnp.where(masked_BxL, mask_id, x0_BxL)
    return jnp.where(pos < end, body, tail).astype(x0_BxL.dtype)


@register("mask_agnostic", check=check_mask_agnostic, diffusion=True, forward_passes=2,
          evaluations=("invariance",))
def mask_agnostic(apply, params, batch, rng, cfg):
    """alpha * L_CE + beta * L_TV (PAPER.md section 5), averaged over examples with an answer.

    p ~ U(p_low, p_high) is drawn per example and the answer noised with it; the CE and TV
    weights use the realised mask rate r = masked / answer length (at least one token is
    masked, so r > p for short answers), and time-conditioned models get the schedule's
    time for r. One ``apply`` call on the [2B, L] stack of x_1 and x_2. Metrics: ce, tv,
    p_mean (the realised rate), n_masked_mean, l1_mean, l2_mean, max_masks,
    no_room_fraction, examples. The settings are checked when the config loads
    (``checks.validate_config``), not here.
    """
    mcfg, mask_id = cfg.loss.mask_agnostic, cfg.diffusion.mask_id
    x0 = batch["tokens"]
    b, length = x0.shape
    k_cut, k_p, k_m, k_l = jax.random.split(rng, 4)
    q, a = prompt_answer_lengths(batch, k_cut, mcfg)
    cap = max_masks_at(batch.get("step"), mcfg)
    p = jax.random.uniform(k_p, (b,), jnp.float32, mcfg.p_low, mcfg.p_high)
    masked = noise_answer(k_m, q, a, p, length)
    p = realised_rate(masked, a, p)
    t = schedules.from_config(cfg.diffusion).time_at(p)
    l1, l2, ok = draw_mask_counts(k_l, length - q - a, cap)
    x1 = with_extra_masks(x0, q, a, masked, l1, mask_id, mcfg.eos_id)
    x2 = with_extra_masks(x0, q, a, masked, l2, mask_id, mcfg.eos_id)

    def positions(logits_2BxCxV, answer_2BxC):
        lg1, lg2 = logits_2BxCxV[:b], logits_2BxCxV[b:]
        if mcfg.stop_gradient_branch == "first":
            lg1 = jax.lax.stop_gradient(lg1)
        elif mcfg.stop_gradient_branch == "second":
            lg2 = jax.lax.stop_gradient(lg2)
        ll, l1 = mask_agnostic_positions(lg1, lg2, answer_2BxC[:b], mask_id)
        return jnp.concatenate([ll, l1])  # [2B, C]: the batch axis the chunks keep

    both = token_scores(apply, params, jnp.concatenate([x1, x2]), jnp.concatenate([t, t]),
                        positions, (jnp.concatenate([x0, x0]),),
                        chunk=cfg.loss.logits_chunk)
    ce_b, tv_b = mask_agnostic_reduce(both[:b], both[b:], masked, p, mcfg.tv_half)
    has = (a > 0).astype(jnp.float32)
    n = jnp.maximum(jnp.sum(has), 1.0)
    ce, tv = jnp.sum(has * ce_b) / n, jnp.sum(has * tv_b) / n
    loss = mcfg.alpha * ce + mcfg.beta * tv

    def mean(v):
        return jnp.sum(has * v.astype(jnp.float32)) / n

    metrics = {
        "ce": ce, "tv": tv, "p_mean": mean(p), "n_masked_mean": mean(jnp.sum(masked, -1)),
        "l1_mean": mean(l1), "l2_mean": mean(l2), "max_masks": cap.astype(jnp.float32),
        "no_room_fraction": mean(~ok), "examples": jnp.sum(has),
    }
    return loss, metrics
