"""Loss terms: SUBS, which positions count, padding, prompts, the AR NLL, the NELBO scale."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax.config_base import base_config
from mdlm_jax.diffusion import losses, parameterization, schedules

V, MASK = 20, 19


def diffusion_config(schedule="linear", **diffusion):
    c = base_config()
    c.model.vocab_size = V
    c.diffusion.mask_id = MASK
    c.diffusion.schedule = schedule
    for k, v in diffusion.items():
        c.diffusion[k] = v
    return c


masked_nelbo = jax.jit(losses.masked_nelbo, static_argnums=(4, 5))


def random_logits(key, b, length, v=V):
    return jax.random.normal(key, (b, length, v), jnp.float32) * 2.0


def masked_example(b=3, length=12, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x0 = jax.random.randint(k1, (b, length), 0, V - 1)
    masked = jax.random.bernoulli(k2, 0.5, (b, length)).at[:, 0].set(True).at[:, 1].set(False)
    xt = jnp.where(masked, MASK, x0)
    t = jax.random.uniform(k3, (b,), minval=0.1, maxval=1.0)
    return x0, xt, masked, t


# ------------------------------------------------------------------------ SUBS
def test_only_masked_positions_contribute_to_masked_nelbo():
    x0, xt, masked, t = masked_example()
    sched = schedules.get("linear")
    logits = random_logits(jax.random.key(5), *x0.shape)
    base = masked_nelbo(logits, x0, xt, t, sched, MASK)
    noise = random_logits(jax.random.key(6), *x0.shape) * 3.0
    at_unmasked = jnp.where(masked[..., None], logits, logits + noise)
    np.testing.assert_array_equal(
        np.asarray(masked_nelbo(at_unmasked, x0, xt, t, sched, MASK)), np.asarray(base),
        err_msg="logits at unmasked positions changed the NELBO")
    at_masked = logits.at[:, 0].add(noise[:, 0])  # position 0 is masked in every row
    changed = np.asarray(masked_nelbo(at_masked, x0, xt, t, sched, MASK))
    assert np.all(np.abs(changed - np.asarray(base)) > 1e-4)
    # and the gradient with respect to the logits is exactly zero off the masked positions
    g = jax.jit(jax.grad(lambda lg: jnp.sum(masked_nelbo(lg, x0, xt, t, sched, MASK))))(logits)
    assert np.all(np.asarray(g)[~np.asarray(masked)] == 0.0)
    assert np.all(np.abs(np.asarray(g)[np.asarray(masked)]).sum(-1) > 0)


def test_masked_nelbo_matches_a_manual_computation():
    x0, xt, masked, t = masked_example(seed=3)
    logits = random_logits(jax.random.key(7), *x0.shape)
    sched = schedules.get("cosine")
    lg = np.asarray(logits, np.float64)
    lg[..., MASK] = -np.inf
    logp = lg - np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - lg.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, np.asarray(x0)[..., None], -1)[..., 0]
    tt = np.asarray(t, np.float64)
    w = 0.5 * np.pi * np.tan(0.5 * np.pi * (1 - tt))
    want = w * np.where(np.asarray(masked), nll, 0.0).sum(-1)
    np.testing.assert_allclose(
        np.asarray(masked_nelbo(logits, x0, xt, t, sched, MASK)), want, rtol=1e-5)


def test_mask_token_never_gets_probability():
    logits = random_logits(jax.random.key(0), 2, 5).at[..., MASK].set(1e4)
    p = np.exp(np.asarray(parameterization.clean_log_probs(logits, MASK), np.float64))
    assert np.all(p[..., MASK] == 0.0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    # SUBS: a point mass on the observed token where xt is not the mask
    xt = jnp.array([[1, MASK, 3, MASK, 5], [MASK, 2, 2, 0, MASK]])
    sp = np.exp(np.asarray(parameterization.subs_log_probs(logits, xt, MASK), np.float64))
    assert np.all(sp[..., MASK] == 0.0)
    for b in range(2):
        for i in range(5):
            tok = int(xt[b, i])
            if tok == MASK:
                np.testing.assert_allclose(sp[b, i].sum(), 1.0, rtol=1e-5)
            else:
                assert sp[b, i, tok] == pytest.approx(1.0) and sp[b, i].sum() == pytest.approx(1)


def test_nelbo_never_rewards_predicting_the_mask():
    """A huge mask logit leaves the loss unchanged: SUBS removes it before the softmax."""
    x0, xt, _, t = masked_example(seed=1)
    sched = schedules.get("linear")
    logits = random_logits(jax.random.key(2), *x0.shape)
    a = masked_nelbo(logits, x0, xt, t, sched, MASK)
    b = masked_nelbo(logits.at[..., MASK].set(50.0), x0, xt, t, sched, MASK)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


# ------------------------------------------------------------------ the nelbo term
def recording_apply(seen, logits_fn=None):
    """A position-wise fake model: logits depend only on each position's own input."""
    table = jax.random.normal(jax.random.key(11), (V, V))

    def apply(params, tokens, t=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
        seen.append(tokens)
        lg = params["scale"] * table[tokens]
        return lg if logits_fn is None else logits_fn(lg)

    return apply


def padded_batch(seed=0, b=4, length=16, n_valid=10, tail=None):
    tokens = jax.random.randint(jax.random.key(seed), (b, length), 0, V - 1)
    if tail is not None:
        tokens = tokens.at[:, n_valid:].set(tail)
    valid = jnp.arange(length)[None, :] < n_valid
    return {"tokens": tokens, "valid": jnp.broadcast_to(valid, (b, length))}


def nelbo_with_inputs(cfg):
    """The nelbo term under jit, also returning what the (fake) model was fed."""

    @jax.jit
    def run(params, batch, rng):
        seen = []
        loss, metrics = losses.nelbo(recording_apply(seen), params, batch, rng, cfg)
        return loss, metrics, seen[0]

    return run


def test_padding_is_never_masked_or_scored_positionwise():
    cfg = diffusion_config()
    run = nelbo_with_inputs(cfg)
    grad = jax.jit(jax.grad(lambda p, b, r: run(p, b, r)[0]))
    params = {"scale": jnp.float32(1.0)}
    a, b = padded_batch(tail=3), padded_batch(tail=7)
    for seed in range(4):
        rng = jax.random.key(seed)
        (la, m, xa), (lb, _, _) = run(params, a, rng), run(params, b, rng)
        assert float(la) == float(lb)
        assert float(grad(params, a, rng)["scale"]) == float(grad(params, b, rng)["scale"])
        assert not np.any(np.asarray(xa)[:, 10:] == MASK), "a padded position was masked"
        assert np.any(np.asarray(xa)[:, :10] == MASK)
        assert float(m["tokens"]) == 4 * 10


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_padding_changes_neither_loss_nor_gradients_with_a_real_model(family, tiny_model):
    """Tokens at ``valid=False`` positions must not matter at all: not scored and not seen
    (a bidirectional model would otherwise attend to the padding). Padded rows come from
    ``data.packing='pad'``; 'wrap' packing has no padding inside a row."""
    cfg = diffusion_config()
    cfg.data.packing = "pad"
    _, apply, params = tiny_model(family, vocab_size=V)
    rng = jax.random.key(3)

    @jax.jit
    def loss_and_grad(p, batch):
        return jax.value_and_grad(lambda p: losses.nelbo(apply, p, batch, rng, cfg)[0])(p)

    la, ga = loss_and_grad(params, padded_batch(tail=3))
    lb, gb = loss_and_grad(params, padded_batch(tail=7))
    np.testing.assert_allclose(float(la), float(lb), rtol=1e-6,
                               err_msg="padding tokens changed the loss")
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7,
                                   err_msg="padding tokens changed the gradients")


def test_prompt_positions_are_never_masked():
    cfg = diffusion_config()
    run = nelbo_with_inputs(cfg)
    b, length = 8, 24
    tokens = jax.random.randint(jax.random.key(0), (b, length), 0, V - 1)
    prompt = jnp.arange(length)[None, :] < jnp.arange(2, 2 + 2 * b, 2)[:, None]
    batch = {"tokens": tokens, "prompt_mask": prompt}
    total_masked = 0
    for seed in range(8):
        _, m, xt = run({"scale": 1.0}, batch, jax.random.key(seed))
        xt = np.asarray(xt)
        assert not np.any((xt == MASK) & np.asarray(prompt)), "a prompt token was masked"
        total_masked += int((xt == MASK).sum())
        assert float(m["tokens"]) == float(np.sum(~np.asarray(prompt)))
    assert total_masked > 0


def test_ar_nll_matches_a_manual_computation():
    cfg = diffusion_config()
    cfg.loss.terms = {"ar_nll": 1.0}
    logits_tab = np.asarray(random_logits(jax.random.key(4), 3, 9), np.float64)

    def apply(params, tokens, t=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
        assert t is None
        return jnp.asarray(logits_tab, jnp.float32)

    tokens = np.asarray(jax.random.randint(jax.random.key(5), (3, 9), 0, V))
    valid = np.ones((3, 9), bool)
    valid[2, 6:] = False
    seg = np.zeros((3, 9), np.int32)
    seg[1, 4:] = 1  # position 4 of row 1 starts a new document: not predicted from 3
    batch = {"tokens": jnp.asarray(tokens), "valid": jnp.asarray(valid),
             "segment_ids": jnp.asarray(seg)}
    loss, m = jax.jit(lambda b: losses.ar_nll(apply, {}, b, None, cfg))(batch)
    total, count = 0.0, 0
    for b in range(3):
        for i in range(8):
            if not valid[b, i + 1] or seg[b, i + 1] != seg[b, i]:
                continue
            lg = logits_tab[b, i]
            logz = lg.max() + math.log(np.exp(lg - lg.max()).sum())
            total += logz - lg[tokens[b, i + 1]]
            count += 1
    assert count == 3 * 8 - 3 - 1
    assert float(m["tokens"]) == count
    assert float(loss) == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "loglinear", "cosine", "polynomial"])
def test_uniform_model_nelbo_is_log_v_minus_one_per_token(schedule):
    """Zero logits give -log p = log(V - 1) at each masked token (the mask is excluded), and
    E_t[w(t) (1 - alpha(t))] = E_t[-alpha'(t)] = (alpha(eps) - alpha(1)) / (1 - eps)."""
    cfg = diffusion_config(schedule)
    cfg.diffusion.time_eps = 1e-3
    zero = lambda p, x, t=None, **kw: jnp.zeros(x.shape + (V,), jnp.float32)  # noqa: E731
    batch = {"tokens": jax.random.randint(jax.random.key(0), (64, 64), 0, V - 1)}
    fn = jax.jit(jax.vmap(lambda k: losses.nelbo(zero, {}, batch, k, cfg)[0]))
    est = float(jnp.mean(fn(jax.random.split(jax.random.key(1), 400))))
    s = schedules.from_config(cfg.diffusion)
    eps = cfg.diffusion.time_eps
    scale = float(s.alpha(jnp.float32(eps)) - s.alpha(jnp.float32(1.0))) / (1 - eps)
    want = math.log(V - 1) * scale
    assert est == pytest.approx(want, rel=0.02), (
        f"{schedule}: uniform-model NELBO {est:.4f} nats/token, expected {want:.4f}")


def test_total_loss_weights_and_prefixes_terms():
    cfg = diffusion_config()
    zero = lambda p, x, t=None, **kw: p["w"] * jnp.ones(x.shape + (V,))  # noqa: E731
    ones = lambda p, x, t=None, **kw: jnp.cumsum(zero(p, x), -1)  # noqa: E731
    batch = {"tokens": jax.random.randint(jax.random.key(0), (2, 8), 0, V - 1)}
    params = {"w": jnp.float32(0.3)}
    one, m1 = jax.jit(lambda: losses.total_loss(ones, params, batch, jax.random.key(0), cfg))()
    cfg.loss.terms = {"nelbo": 2.5}
    two, m2 = jax.jit(lambda: losses.total_loss(ones, params, batch, jax.random.key(0), cfg))()
    assert float(two) == pytest.approx(2.5 * float(one), rel=1e-6)
    assert float(m2["nelbo/loss"]) == pytest.approx(float(m1["nelbo/loss"]), rel=1e-6)
    assert {"loss", "nelbo/loss", "nelbo/nats_per_token"} <= set(m2)


def test_next_token_sums_score_pairs_inside_one_valid_document():
    nll = jnp.arange(1.0, 6.0)[None]  # the pairs (0, 1) ... (4, 5) of a length-6 row
    valid = jnp.array([[True] * 5 + [False]])
    seg = jnp.array([[1, 1, 1, 2, 2, 2]])
    total, count = losses.next_token_sums(nll, valid, seg)
    # (2, 3) crosses documents, (4, 5) ends on padding: 1 + 2 + 4 over 3 pairs
    assert float(total[0]) == 7.0 and int(count[0]) == 3
    total, count = losses.next_token_sums(nll, valid)
    assert float(total[0]) == 10.0 and int(count[0]) == 4


def test_unknown_loss_term_names_the_registered_ones():
    with pytest.raises(ValueError, match="nelbo"):
        losses.get("nelb")


@pytest.mark.parametrize("family,term,overrides", [
    ("dit", "nelbo", {"time_conditioning": True}),
    ("llama", "ar_nll", {"causal": True, "logit_shift": True}),
    ("llama", "mask_agnostic", {}),
])
def test_chunked_output_head_equals_the_plain_loss_and_gradients(family, term, overrides):
    """loss.logits_chunk projects a few positions at a time from the final hidden states:
    same loss and gradients as the whole-sequence logits, and no float32 [B, L, V] array
    in the program (there is one on the plain path)."""
    from conftest import tiny_model_config

    from mdlm_jax import model

    mcfg = tiny_model_config(family, **overrides)
    apply, params = model.create(mcfg, jax.random.key(1))
    b, length = 4, 32
    tokens = jax.random.randint(jax.random.key(2), (b, length), 0, MASK)
    batch = {"tokens": tokens, "valid": jnp.ones((b, length), bool)}
    results, programs = [], []
    for chunk in (0, 8):
        c = diffusion_config()
        c.model = mcfg
        c.loss.terms = {term: 1.0}
        c.loss.logits_chunk = chunk
        c.data.eos_id, c.loss.mask_agnostic.max_masks = 18, 6
        c.loss.mask_agnostic.pretrain_answer_len = 8

        def loss(p, c=c):
            return losses.total_loss(apply, p, batch, jax.random.key(3), c)[0]

        programs.append(str(jax.make_jaxpr(jax.value_and_grad(loss))(params)))
        results.append(jax.jit(jax.value_and_grad(loss))(params))
    (l0, g0), (l1, g1) = results
    assert float(l0) > 0
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-5)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(np.asarray(c), np.asarray(a),
                                                         rtol=2e-4, atol=1e-6), g0, g1)
    rows = 2 * b if term == "mask_agnostic" else b
    full = f"f32[{rows},{length},{V}]"
    assert full in programs[0] and full not in programs[1]


def test_logits_chunk_must_divide_the_length():
    from conftest import tiny_model_config

    from mdlm_jax import model

    apply, params = model.create(tiny_model_config("llama"), jax.random.key(1))
    c = diffusion_config()
    c.loss.logits_chunk = 5
    batch = {"tokens": jnp.zeros((2, 32), jnp.int32)}
    with pytest.raises(ValueError, match="logits_chunk=5 does not divide"):
        losses.total_loss(apply, params, batch, jax.random.key(0), c)
def test_prompt_answer_data_is_normalised_per_sequence_by_its_answer_length():
    """LLaDA's SFT objective: each sequence's NELBO over its own answer length, averaged
    (``loss.normalize='auto'`` for prompt/answer data); other data: per batch token."""
    c = diffusion_config()
    assert c.loss.normalize == "auto" and losses.normalization(c) == "tokens"
    c.data.name = "prompt_answer"
    assert losses.normalization(c) == "sequence"
    tokens = jnp.asarray(np.arange(2 * 12).reshape(2, 12) % (V - 1), jnp.int32)
    prompt = np.zeros((2, 12), bool)
    prompt[0, :10], prompt[1, :2] = True, True  # answers of 2 and 10 tokens
    batch = {"tokens": tokens, "prompt_mask": jnp.asarray(prompt)}

    def apply(params, xt, t=None, **_):  # logits that favour token 0 everywhere
        return jnp.zeros(xt.shape + (V,)).at[..., 0].set(2.0)

    loss, m = losses.nelbo(apply, {}, batch, jax.random.key(0), c)
    # per sequence: weight(t) * masked NLL; recompute with the same draws
    k_t, k_m, _ = jax.random.split(jax.random.key(0), 3)
    t = jax.random.uniform(k_t, ()) + jnp.arange(2) / 2
    t = (1 - c.diffusion.time_eps) * jnp.mod(t, 1.0) + c.diffusion.time_eps
    xt, _ = losses.forward.mask_tokens(k_m, tokens, t, MASK, ~jnp.asarray(prompt))
    per_seq = losses.masked_nelbo(apply({}, xt), tokens, xt, t, schedules.Linear(), MASK)
    want = float(jnp.mean(per_seq / jnp.asarray([2.0, 10.0])))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(loss) != pytest.approx(float(jnp.sum(per_seq) / 12.0), rel=1e-3)



def test_masks_given_as_input_are_seen_but_never_scored():
    """The context_tasks corpus stores extra masks as data at valid=False positions: the
    model sees them, the forward process leaves them, and the NELBO does not score them
    (under SUBS a mask target would cost infinitely many nats)."""
    cfg = diffusion_config()
    seen = {}

    def model(p, x, t=None, **kw):
        seen["x"] = x
        return jnp.zeros(x.shape + (V,), jnp.float32)

    x0 = jax.random.randint(jax.random.key(0), (4, 16), 0, V - 1).at[:, 12:].set(MASK)
    valid = jnp.ones((4, 16), bool).at[:, 12:].set(False)
    loss, m = losses.nelbo(model, {}, {"tokens": x0, "valid": valid}, jax.random.key(1), cfg)
    assert np.all(np.asarray(seen["x"])[:, 12:] == MASK)
    assert float(m["tokens"]) == 4 * 12 and np.isfinite(float(loss))
    sched = schedules.get("linear")
    x0 = jnp.array([[1, 2, MASK, MASK]])
    xt = jnp.array([[MASK, 2, MASK, MASK]])
    nll = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    t = jnp.array([0.5])
    w = float(sched.weight(t)[0])
    given = losses.nelbo_sums(nll, xt, t, sched, MASK, x0_BxL=x0)
    assert float(given[0]) == pytest.approx(w * 1.0)
    assert float(losses.nelbo_sums(nll, xt, t, sched, MASK)[0]) == pytest.approx(w * 8.0)
