"""The mask-agnostic loss term (PAPER.md section 5), registered as ``mask_agnostic``.

alpha * L_CE + beta * L_TV over two copies of each example that differ only in how many
masks follow the answer; see docs/ARCHITECTURE.md ("Mask-agnostic fine-tuning").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mdlm_jax.data.tokenizers import eos_id
from mdlm_jax.diffusion import schedules
from mdlm_jax.diffusion.losses import batch_masks, register, token_scores
from mdlm_jax.diffusion.parameterization import clean_log_probs

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
# x_i = prompt + noised answer + [MASK] * l_i, EOS (the data's, ``tokenizers.eos_id``) to the
# batch's static L, so
# room = L - q - a. The model sees the EOS padding (as in LLaDA's SFT and the paper); it
# never enters either term. A row whose count range min(room, max_masks) is < 1 cannot draw
# l1 != l2: it gets l1 = l2 = 0, contributes CE but no TV, and is counted in
# ``no_room_fraction``.
MA_BRANCHES = ("none", "first", "second")


def check_mask_agnostic_config(mcfg) -> None:
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
    if any(int(k) != k or k < 0 for k in mcfg.probe_mask_counts):
        raise ValueError(f"loss.mask_agnostic.probe_mask_counts={tuple(mcfg.probe_mask_counts)}"
                         " must be whole counts >= 0")
    if mcfg.pretrain_answer_len < 1:
        raise ValueError(f"loss.mask_agnostic.pretrain_answer_len={mcfg.pretrain_answer_len} "
                         "must be >= 1")


def check_mask_agnostic(config, tokenizer) -> None:
    """The term's load-time check of its settings (the EOS id is checked with the
    tokenizer, ``checks.check_tokenizer``)."""
    check_mask_agnostic_config(config.loss.mask_agnostic)


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
    eos = eos_id(cfg.data)
    x1 = with_extra_masks(x0, q, a, masked, l1, mask_id, eos)
    x2 = with_extra_masks(x0, q, a, masked, l2, mask_id, eos)

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
