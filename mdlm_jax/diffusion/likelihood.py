"""Log-likelihoods of answers given prompts, for benchmarks (pure functions over ``apply``).

Masked diffusion models: LLaDA's Monte Carlo estimator of the ELBO (Nie et al. 2025,
eq. (6)). For a prompt p and an answer a of A tokens (the prompt is never masked),

    log p(a | p) >= E_{m ~ U{1..A}} E_{S: |S| = m} [ (A / m) sum_{j in S} log p(a_j | x_S) ]

where S is a uniformly random set of m answer positions and x_S is p followed by a with
the positions in S masked. Each Monte Carlo sample draws one (m, S) and is an unbiased
estimate of the right-hand side; the counts are stratified over the samples:
``m_i = ((k + floor(i A / N)) mod A) + 1`` with one ``k ~ U{0..A-1}`` for all N samples,
so each m_i is marginally uniform and the N counts spread evenly over 1..A (LLaDA rounds
``k + i A / N``; the floor keeps the marginals exactly uniform). Log-probabilities use the
SUBS parameterization of the training loss (mask logit suppressed). Time-conditioned
models (the DiT) get t = m / A.

Causal models: the exact next-token log-likelihood and whether the answer is the greedy
continuation. Rolling log-likelihood (perplexity): exact for causal models; for MDLMs the
negative NELBO of ``evaluate`` (the same reduction as the ``eval`` command), a lower bound.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mdlm_jax.diffusion import guidance
from mdlm_jax.diffusion.parameterization import clean_log_probs


def stratified_mask_counts(rng, num_samples: int, answer_len):
    """int32 [N] mask counts in ``1..answer_len``, each marginally uniform, evenly spread."""
    a = jnp.asarray(answer_len, jnp.int32)
    k = jax.random.randint(rng, (), 0, jnp.maximum(a, 1))
    offsets = (jnp.arange(num_samples, dtype=jnp.int32) * a) // num_samples
    return (k + offsets) % jnp.maximum(a, 1) + 1


def random_answer_masks(rng, counts_N, prompt_len, answer_len, length: int):
    """bool [N, L]: ``counts_N[i]`` uniformly random positions of ``[q, q + a)`` per row."""
    pos = jnp.arange(length)[None, :]
    answer = (pos >= prompt_len) & (pos < prompt_len + answer_len)
    u = jax.random.uniform(rng, (counts_N.shape[0], length))
    score = jnp.where(answer, u, -1.0)
    ranks = jnp.argsort(jnp.argsort(-score, axis=-1), axis=-1)  # 0 = highest score
    return answer & (ranks < counts_N[:, None])


def answer_log_probs(logits_BxLxV, tokens_L, mask_id: int):
    """log p(x0_j | x_t) at every position, [B, L] (SUBS: mask logit suppressed)."""
    logp = clean_log_probs(logits_BxLxV, mask_id)
    idx = jnp.broadcast_to(tokens_L[None, :, None], logp.shape[:2] + (1,))
    return jnp.take_along_axis(logp, idx, axis=-1)[..., 0]


def mc_terms(apply, params, tokens_L, prompt_len, answer_len, rng, *, mask_id: int,
             num_samples: int, batch_size: int, cfg_scale: float = 0.0,
             time_conditioning: bool = False):
    """float32 [N]: one unbiased estimate of the ELBO of ``log p(answer | prompt)`` per sample.

    ``tokens_L`` holds prompt then answer from position 0; positions from ``q + a`` on are
    padding (a separate attention segment, never scored). ``num_samples`` must be a
    multiple of ``batch_size`` (the rows of one model call).
    """
    length = tokens_L.shape[0]
    if num_samples % batch_size:
        raise ValueError(f"mc_samples={num_samples} is not a multiple of the likelihood "
                         f"batch size {batch_size}; use a multiple")
    k_count, k_pos = jax.random.split(rng)
    counts = stratified_mask_counts(k_count, num_samples, answer_len)
    masked = random_answer_masks(k_pos, counts, prompt_len, answer_len, length)
    x = jnp.where(masked, mask_id, tokens_L[None, :]).astype(jnp.int32)
    frac = counts.astype(jnp.float32) / jnp.maximum(answer_len, 1).astype(jnp.float32)
    segments = jnp.where(jnp.arange(length) < prompt_len + answer_len, 0, 1).astype(jnp.int32)
    model = guidance.guided(apply, scale=cfg_scale, mask_id=mask_id, prompt_end=prompt_len)

    def chunk(args):
        x_BxL, frac_B, masked_BxL = args
        seg = jnp.broadcast_to(segments[None], x_BxL.shape)
        logits = model(params, x_BxL, frac_B if time_conditioning else None,
                       segment_ids_BxL=seg)
        ll = answer_log_probs(logits, tokens_L, mask_id)
        return jnp.sum(jnp.where(masked_BxL, ll, 0.0), axis=-1) / frac_B

    n_chunks = num_samples // batch_size
    split = lambda v: v.reshape((n_chunks, batch_size) + v.shape[1:])
    terms = jax.lax.map(chunk, (split(x), split(frac), split(masked)))
    return terms.reshape(num_samples)


def make_mc_fn(apply, *, mask_id: int, num_samples: int, batch_size: int,
               cfg_scale: float = 0.0, time_conditioning: bool = False):
    """Jitted ``fn(params, tokens_L, prompt_len, answer_len, rng) -> terms_N``."""
    return jax.jit(functools.partial(
        mc_terms, apply, mask_id=mask_id, num_samples=num_samples, batch_size=batch_size,
        cfg_scale=cfg_scale, time_conditioning=time_conditioning))


def make_mc_batch_fn(apply, *, mask_id: int, num_samples: int, batch_size: int,
                     cfg_scale: float = 0.0, time_conditioning: bool = False):
    """Jitted ``fn(params, tokens_RxL, prompt_len_R, answer_len_R, rngs_R) -> terms_RxN``:
    :func:`mc_terms` for R requests at once (R x ``batch_size`` rows per model call), for
    tasks with few samples per request (LLaDA uses one for single-token answers)."""
    one = functools.partial(mc_terms, apply, mask_id=mask_id, num_samples=num_samples,
                            batch_size=batch_size, cfg_scale=cfg_scale,
                            time_conditioning=time_conditioning)
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0)))


def mdlm_loglikelihoods(mc_batch_fn, params, pairs, rngs, *, max_length: int,
                        requests_per_call: int):
    """``[(estimate, terms_N)]`` for ``pairs`` of (prompt_ids, answer_ids), ``rngs[i]``
    for pair i; ``requests_per_call`` pairs per call (short calls repeat their last pair)."""
    for q_ids, a_ids in pairs:
        if not a_ids:
            raise ValueError("the answer is empty: there is nothing to score")
        if len(q_ids) + len(a_ids) > max_length:
            raise ValueError(f"prompt ({len(q_ids)}) + answer ({len(a_ids)}) tokens exceed "
                             f"model.max_length={max_length}; shorten the few-shot context "
                             "(num_fewshot)")
    out, r = [], requests_per_call
    for i in range(0, len(pairs), r):
        chunk = pairs[i:i + r]
        idx = [min(j, len(chunk) - 1) for j in range(r)]
        length = bucket_length(max(len(q) + len(a) for q, a in chunk), max_length)
        tokens = np.zeros((r, length), np.int32)
        q_len, a_len = np.zeros((r,), np.int32), np.zeros((r,), np.int32)
        for row, j in enumerate(idx):
            q, a = chunk[j]
            tokens[row, :len(q) + len(a)] = list(q) + list(a)
            q_len[row], a_len[row] = len(q), len(a)
        keys = jax.numpy.stack([rngs[i + j] for j in idx])
        terms = np.asarray(jax.device_get(mc_batch_fn(params, tokens, q_len, a_len, keys)),
                           np.float64)
        out += [(float(terms[j].mean()), terms[j]) for j in range(len(chunk))]
    return out


def bucket_length(n: int, max_length: int, multiple: int = 32) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (fewer recompilations), capped."""
    return min(max_length, -(-n // multiple) * multiple)


def mdlm_loglikelihood(mc_fn, params, prompt_ids, answer_ids, rng, *, max_length: int):
    """``(estimate, terms_N)``: LLaDA's estimate of log p(answer | prompt) (nats)."""
    q, a = len(prompt_ids), len(answer_ids)
    if a == 0:
        raise ValueError("the answer is empty: there is nothing to score")
    if q + a > max_length:
        raise ValueError(f"prompt ({q}) + answer ({a}) tokens exceed model.max_length="
                         f"{max_length}; shorten the few-shot context (num_fewshot)")
    length = bucket_length(q + a, max_length)
    tokens = np.zeros((length,), np.int32)
    tokens[:q + a] = list(prompt_ids) + list(answer_ids)
    terms = np.asarray(jax.device_get(mc_fn(params, tokens, q, a, rng)), np.float64)
    return float(terms.mean()), terms


def ar_log_probs(apply, params, tokens_BxL, prompt_len_B, answer_len_B):
    """``(logp_B, greedy_B)`` of a causal model: log p(answer | prompt), exact.

    Rows hold prompt then answer from position 0 (right padding is invisible to a causal
    model); the prompt must hold at least one token (use BOS / EOS for an empty one).
    """
    logits = apply(params, tokens_BxL, None)
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    target = tokens_BxL[:, 1:]
    ll = jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    is_top = jnp.argmax(logp, axis=-1) == target
    pos = jnp.arange(target.shape[1])[None, :]  # predicts token pos + 1
    q, a = prompt_len_B[:, None], answer_len_B[:, None]
    scored = (pos >= q - 1) & (pos < q - 1 + a)
    return (jnp.sum(jnp.where(scored, ll, 0.0), -1),
            jnp.all(jnp.where(scored, is_top, True), -1))


def rolling_windows(ids, window: int, *, causal: bool, prefix_id: int):
    """``(tokens_WxL, valid_WxL)`` int32 / bool numpy windows covering ``ids`` once.

    Causal: ``[prefix_id] + ids`` cut into windows of ``window`` tokens overlapping by one
    (each window's first token is context only), so every token of ``ids`` is scored once,
    as lm-eval's rolling windows with a one-token context. MDLM: disjoint windows.
    """
    ids = [int(i) for i in ids]
    if causal:
        seq, stride = [int(prefix_id)] + ids, window - 1
        starts = range(0, max(len(seq) - 1, 1), stride)
    else:
        seq, stride = ids, window
        starts = range(0, max(len(seq), 1), stride)
    rows = [seq[s:s + window] for s in starts]
    tokens = np.zeros((len(rows), window), np.int32)
    valid = np.zeros((len(rows), window), bool)
    for i, r in enumerate(rows):
        tokens[i, :len(r)], valid[i, :len(r)] = r, True
    return tokens, valid


def make_rolling_fn(apply, config):
    """Jitted ``fn(params, tokens_WxL, valid_WxL, rng) -> (nats_W, scored_W)`` per window.

    The reductions of the ``eval`` command: exact next-token NLL for causal models, the
    NELBO with ``config.eval.mc_samples`` time samples for diffusion models. Padding is
    hidden as its own attention segment.
    """
    from mdlm_jax import evaluate
    from mdlm_jax.checks import is_diffusion

    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.data.packing = "pad"  # windows are right-padded, not packed
    reduce = evaluate._nelbo_sums if is_diffusion(config) else evaluate._ar_sums

    def fn(params, tokens, valid, rng):
        return reduce(apply, params, tokens, valid, valid, rng, config=config)

    return jax.jit(fn)


def rolling_loglikelihood(rolling_fn, params, ids, rng, *, window: int, causal: bool,
                          prefix_id: int, batch_size: int):
    """``(log_likelihood, tokens_scored)`` of a whole document in nats (MDLM: -NELBO)."""
    tokens, valid = rolling_windows(ids, window, causal=causal, prefix_id=prefix_id)
    pad = -len(tokens) % batch_size
    tokens = np.concatenate([tokens, np.zeros((pad, window), np.int32)])
    valid = np.concatenate([valid, np.zeros((pad, window), bool)])
    total, scored = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        nats, count = jax.device_get(rolling_fn(params, tokens[i:i + batch_size],
                                                valid[i:i + batch_size],
                                                jax.random.fold_in(rng, i)))
        total += float(np.sum(nats, dtype=np.float64))
        scored += int(np.sum(count))
    return -total, scored
