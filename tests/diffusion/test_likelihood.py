"""The likelihood estimators: LLaDA's Monte Carlo ELBO is unbiased, AR is exact, CFG."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax.diffusion import guidance, likelihood
from mdlm_jax.diffusion.parameterization import clean_log_probs

MASK = 19
PROMPT = [3, 7, 1]
ANSWER = [5, 2, 9, 4]


def exact_elbo(apply, params, prompt, answer, mask_id):
    """E_{m ~ U{1..A}} E_{|S| = m} [(A / m) sum_{j in S} log p(a_j | x_S)] by enumeration."""
    q, a = len(prompt), len(answer)
    x0 = np.asarray(prompt + answer, np.int32)
    patterns = [s for m in range(1, a + 1) for s in itertools.combinations(range(a), m)]
    rows = np.tile(x0, (len(patterns), 1))
    for r, s in enumerate(patterns):
        rows[r, [q + j for j in s]] = mask_id
    logp = np.asarray(clean_log_probs(apply(params, jnp.asarray(rows)), mask_id))
    total = 0.0
    for r, s in enumerate(patterns):
        m = len(s)
        term = sum(logp[r, q + j, answer[j]] for j in s) * a / m
        total += term / (a * math.comb(a, m))
    return total


def test_stratified_counts_cover_every_count_evenly():
    for a, n in [(4, 8), (5, 5), (7, 3), (3, 64)]:
        for seed in range(5):
            c = np.asarray(likelihood.stratified_mask_counts(jax.random.key(seed), n, a))
            assert c.min() >= 1 and c.max() <= a
            hist = np.bincount(c, minlength=a + 1)[1:]
            assert hist.max() - hist.min() <= 1, (a, n, hist)


def test_mc_estimator_is_unbiased(tiny_model):
    _, apply, params = tiny_model("llama")
    exact = exact_elbo(apply, params, PROMPT, ANSWER, MASK)
    fn = likelihood.make_mc_fn(apply, mask_id=MASK, num_samples=512, batch_size=128)
    est, terms = likelihood.mdlm_loglikelihood(fn, params, PROMPT, ANSWER, jax.random.key(0),
                                               max_length=32)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(est - exact) < 4 * se, (est, exact, se)
    assert se < 0.05 * abs(exact)  # the check above has teeth
    # a single-token answer has one masking pattern: every sample is the exact value
    one = exact_elbo(apply, params, PROMPT, ANSWER[:1], MASK)
    _, t1 = likelihood.mdlm_loglikelihood(fn, params, PROMPT, ANSWER[:1], jax.random.key(1),
                                          max_length=32)
    np.testing.assert_allclose(t1, one, rtol=1e-5)


def test_mc_estimator_never_masks_the_prompt_and_ignores_padding(tiny_model):
    _, apply, params = tiny_model("llama")
    seen = []

    def spy(params, tokens, t=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
        jax.debug.callback(lambda x, s: seen.append((np.asarray(x), np.asarray(s))), tokens,
                           segment_ids_BxL)
        return apply(params, tokens, t, segment_ids_BxL=segment_ids_BxL)

    fn = likelihood.make_mc_fn(spy, mask_id=MASK, num_samples=8, batch_size=8)
    likelihood.mdlm_loglikelihood(fn, params, PROMPT, ANSWER, jax.random.key(0), max_length=32)
    x, seg = seen[0]
    q, a = len(PROMPT), len(ANSWER)
    assert x.shape == (8, 32)
    assert (x[:, :q] == PROMPT).all()
    assert sorted((x[:, q:q + a] == MASK).sum(-1).tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert (seg[:, q + a:] == 1).all() and (seg[:, :q + a] == 0).all()


def test_guidance_formula_and_prompt_masking(tiny_model):
    _, apply, params = tiny_model("llama")
    x = jnp.asarray([PROMPT + ANSWER + [MASK] * 3] * 2, jnp.int32)
    q = len(PROMPT)
    assert guidance.guided(apply, scale=0.0, mask_id=MASK, prompt_end=q) is apply
    got = guidance.guided(apply, scale=1.5, mask_id=MASK, prompt_end=q)(params, x)
    cond = apply(params, x)
    uncond = apply(params, x.at[:, :q].set(MASK))
    np.testing.assert_allclose(got, uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, cond, atol=1e-3)
    with pytest.raises(ValueError, match="must be >= 0"):
        guidance.guided(apply, scale=-1.0, mask_id=MASK, prompt_end=q)


def test_ar_log_probs_match_next_token_log_probs(tiny_model):
    _, apply, params = tiny_model("llama", causal=True)
    rows = [([4, 8, 1], [6, 2]), ([9], [3, 3, 7, 5])]
    tokens = np.zeros((2, 12), np.int32)
    for i, (p, a) in enumerate(rows):
        tokens[i, :len(p) + len(a)] = p + a
    q = jnp.asarray([len(p) for p, _ in rows])
    a = jnp.asarray([len(a) for _, a in rows])
    logp, greedy = likelihood.ar_log_probs(apply, params, jnp.asarray(tokens), q, a)
    for i, (p, ans) in enumerate(rows):  # one row per prefix, its last position only
        prefixes = np.zeros((len(ans), 12), np.int32)  # right padding: invisible (causal)
        for j in range(len(ans)):
            prefixes[j, :len(p) + j] = p + ans[:j]
        lps = np.asarray(jax.nn.log_softmax(apply(params, jnp.asarray(prefixes)), axis=-1))
        want, top = 0.0, True
        for j, tok in enumerate(ans):
            lp = lps[j, len(p) + j - 1]
            want += lp[tok]
            top &= int(np.argmax(lp)) == tok
        np.testing.assert_allclose(float(logp[i]), want, rtol=1e-5)
        assert bool(greedy[i]) == top


def test_rolling_windows_score_every_token_once():
    ids = list(range(1, 18))
    tok, valid = likelihood.rolling_windows(ids, 8, causal=True, prefix_id=0)
    scored = [t for r, v in zip(tok, valid) for t in r[1:][v[1:]]]
    assert scored == ids and tok[0, 0] == 0
    tok, valid = likelihood.rolling_windows(ids, 8, causal=False, prefix_id=0)
    assert tok[valid].tolist() == ids


def test_rolling_loglikelihood_ar_exact_and_mdlm_bound(tiny_config, tiny_model):
    cfg = tiny_config()
    _, apply, params = tiny_model("llama", causal=True)
    with cfg.unlocked():
        cfg.loss.terms = {"ar_nll": 1.0}
    fn = likelihood.make_rolling_fn(apply, cfg)
    doc = [5, 2, 9, 4, 11, 3]
    ll, n = likelihood.rolling_loglikelihood(fn, params, doc, jax.random.key(0), window=16,
                                             causal=True, prefix_id=0, batch_size=2)
    want, _ = likelihood.ar_log_probs(apply, params, jnp.asarray([[0] + doc]),
                                      jnp.asarray([1]), jnp.asarray([len(doc)]))
    assert n == len(doc)
    np.testing.assert_allclose(ll, float(want[0]), rtol=1e-5)

    _, apply, params = tiny_model("llama")
    cfg = tiny_config()
    with cfg.unlocked():
        cfg.diffusion.mask_id, cfg.eval.mc_samples = MASK, 1024
    fn = likelihood.make_rolling_fn(apply, cfg)
    ll, n = likelihood.rolling_loglikelihood(fn, params, doc, jax.random.key(0), window=16,
                                             causal=False, prefix_id=0, batch_size=1)
    exact = exact_elbo(apply, params, [], doc, MASK)  # the same ELBO, discrete-time form
    assert n == len(doc)
    np.testing.assert_allclose(ll, exact, rtol=0.1)
    long_doc = doc * 5  # three windows: each token scored once
    _, n = likelihood.rolling_loglikelihood(fn, params, long_doc, jax.random.key(0),
                                            window=16, causal=False, prefix_id=0, batch_size=2)
    assert n == len(long_doc)


def test_batched_requests_equal_one_at_a_time(tiny_model):
    _, apply, params = tiny_model("llama")
    kw = dict(mask_id=MASK, num_samples=4, batch_size=2)
    single = likelihood.make_mc_fn(apply, **kw)
    batched = likelihood.make_mc_batch_fn(apply, **kw)
    pairs = [(PROMPT, ANSWER), ([4, 4], [8, 1, 6]), ([1], [2])]
    keys = [jax.random.key(i) for i in range(3)]
    got = likelihood.mdlm_loglikelihoods(batched, params, pairs, keys, max_length=32,
                                         requests_per_call=2)
    for (q, a), k, (est, terms) in zip(pairs, keys, got):
        want, want_terms = likelihood.mdlm_loglikelihood(single, params, q, a, k,
                                                         max_length=32)
        np.testing.assert_allclose(terms, want_terms, rtol=1e-5)
        assert est == pytest.approx(want, rel=1e-5)
