"""The mask-agnostic term (PAPER.md section 5): the formulas, the layout and the term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax import config_base, model
from mdlm_jax.diffusion import losses, mask_agnostic

MASK, EOS, V = 39, 38, 40


def tiny_config(**ma):
    c = config_base.base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = "llama", 32, 2, 2, 64
    m.vocab_size, m.cond_dim = V, 16
    c.diffusion.mask_id = MASK
    c.loss.terms = {"mask_agnostic": 1.0}
    c.data.eos_id = EOS  # the tiny vocabulary's (no tokenizer has it)
    c.loss.mask_agnostic.max_masks = 6
    for k, v in ma.items():
        setattr(c.loss.mask_agnostic, k, v)
    return c


def softmax_np(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def hand_logits(seed, b=2, a=5, v=7):
    return np.random.default_rng(seed).normal(size=(b, a, v)).astype(np.float32)


def test_tv_zero_when_branches_agree_and_l1_otherwise():
    l1 = hand_logits(0)
    same = l1.copy() + 3.0  # a shift leaves the softmax unchanged
    answer = np.array([[1, 2, 3, 4, 5], [0, 1, 2, 3, 4]], np.int32) % 7
    masked = np.array([[1, 0, 1, 1, 0], [0, 1, 0, 0, 0]], bool)
    p = np.array([0.3, 0.6], np.float32)
    _, tv = mask_agnostic.mask_agnostic_terms(l1, same, answer, masked, p)
    np.testing.assert_allclose(tv, 0.0, atol=1e-6)
    other = hand_logits(1)
    _, tv = mask_agnostic.mask_agnostic_terms(l1, other, answer, masked, p)
    dist = np.abs(softmax_np(l1) - softmax_np(other)).sum(-1)
    n_m = masked.sum(-1)
    want = p / n_m * (dist * masked).sum(-1)
    assert np.all(np.asarray(tv) > 0)
    np.testing.assert_allclose(tv, want, rtol=1e-5)
    _, tv_half = mask_agnostic.mask_agnostic_terms(l1, other, answer, masked, p, tv_half=True)
    np.testing.assert_allclose(tv_half, 0.5 * want, rtol=1e-5)


def test_ce_matches_formula_with_half_over_p_nm():
    l1, l2 = hand_logits(2), hand_logits(3)
    answer = np.array([[6, 0, 3, 1, 2], [5, 5, 4, 0, 1]], np.int32)
    masked = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 0, 1]], bool)
    p = np.array([0.25, 0.75], np.float32)
    ce, _ = mask_agnostic.mask_agnostic_terms(l1, l2, answer, masked, p)
    want = []
    for b in range(2):
        s = 0.0
        for j in np.flatnonzero(masked[b]):
            s += np.log(softmax_np(l1[b, j])[answer[b, j]])
            s += np.log(softmax_np(l2[b, j])[answer[b, j]])
        want.append(-s / (2 * p[b] * masked[b].sum()))
    np.testing.assert_allclose(ce, want, rtol=1e-5)


def test_subs_suppresses_the_mask_logit():
    l1, l2 = hand_logits(4), hand_logits(5)
    answer = np.zeros((2, 5), np.int32)
    masked = np.ones((2, 5), bool)
    p = np.full((2,), 0.5, np.float32)
    ce_plain, _ = mask_agnostic.mask_agnostic_terms(l1, l2, answer, masked, p)
    big = l1.copy()
    big[..., 6] = 50.0  # all mass on the mask id 6 without SUBS
    ce_big, _ = mask_agnostic.mask_agnostic_terms(big, l2, answer, masked, p, mask_id=6)
    ce_ref, _ = mask_agnostic.mask_agnostic_terms(l1, l2, answer, masked, p, mask_id=6)
    np.testing.assert_allclose(ce_big, ce_ref, rtol=1e-5)
    assert not np.allclose(ce_plain, ce_ref)


def test_padding_never_enters_either_term():
    l1, l2 = hand_logits(6, a=8), hand_logits(7, a=8)
    answer = np.arange(16).reshape(2, 8).astype(np.int32) % 7
    masked = np.zeros((2, 8), bool)
    masked[:, 2:5] = True  # positions 5.. are appended masks / EOS padding
    p = np.array([0.4, 0.5], np.float32)
    ce, tv = mask_agnostic.mask_agnostic_terms(l1, l2, answer, masked, p)
    noisy1, noisy2 = l1.copy(), l2.copy()
    noisy1[:, 5:] += 100 * np.random.default_rng(8).normal(size=noisy1[:, 5:].shape)
    noisy2[:, :2] -= 50.0
    ce2, tv2 = mask_agnostic.mask_agnostic_terms(noisy1, noisy2, answer, masked, p)
    np.testing.assert_allclose(ce2, ce, rtol=1e-6)
    np.testing.assert_allclose(tv2, tv, rtol=1e-6)
    noisy1[:, 3] += 5 * np.random.default_rng(9).normal(size=noisy1[:, 3].shape)
    ce3, _ = mask_agnostic.mask_agnostic_terms(noisy1, noisy2, answer, masked, p)
    assert not np.allclose(ce3, ce)  # a masked answer position does enter


def test_mask_counts_differ_and_stay_in_range():
    room = jnp.array([1, 2, 5, 600, 3, 0] * 50)
    for seed in range(40):
        l1, l2, ok = mask_agnostic.draw_mask_counts(jax.random.key(seed), room, jnp.int32(4))
        l1, l2, ok = map(np.asarray, (l1, l2, ok))
        top = np.minimum(np.asarray(room), 4)
        assert np.all(l1[ok] != l2[ok])
        assert np.all((l1 <= top) & (l2 <= top) & (l1 >= 0) & (l2 >= 0))
        assert np.array_equal(ok, top >= 1)
        assert np.all(l1[~ok] == 0) and np.all(l2[~ok] == 0)
    l1, l2, _ = mask_agnostic.draw_mask_counts(jax.random.key(0), jnp.full((4000,), 3), 3)
    pairs = np.stack([np.asarray(l1), np.asarray(l2)], 1)
    counts = np.unique(pairs, axis=0, return_counts=True)[1]
    assert len(counts) == 12 and counts.min() > 250  # all ordered pairs, roughly uniform


def test_extra_masks_never_overlap_prompt_or_answer():
    length = 24
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.integers(0, 30, size=(6, length)), jnp.int32)
    q = jnp.array([3, 5, 1, 10, 2, 7])
    a = jnp.array([4, 1, 6, 5, 20, 9])
    p = jnp.full((6,), 0.5)
    masked = mask_agnostic.noise_answer(jax.random.key(1), q, a, p, length)
    n_masks = jnp.array([0, 7, 17, 9, 2, 3])
    x = np.asarray(mask_agnostic.with_extra_masks(x0, q, a, masked, n_masks, MASK, EOS))
    x0, masked = np.asarray(x0), np.asarray(masked)
    for i in range(6):
        qi, ai, ni = int(q[i]), int(a[i]), int(n_masks[i])
        np.testing.assert_array_equal(x[i, :qi], x0[i, :qi])
        ans = slice(qi, qi + ai)
        assert masked[i, ans].sum() >= 1 and masked[i].sum() == masked[i, ans].sum()
        np.testing.assert_array_equal(x[i, ans], np.where(masked[i, ans], MASK, x0[i, ans]))
        end = min(qi + ai + ni, length)
        assert np.all(x[i, qi + ai:end] == MASK)
        assert np.all(x[i, end:] == EOS)


def test_curriculum_rises_linearly():
    c = tiny_config(max_masks=600, curriculum_start=8, curriculum_steps=100)
    ma = c.loss.mask_agnostic
    got = [int(mask_agnostic.max_masks_at(s, ma)) for s in (0, 50, 100, 1000)]
    assert got == [8, 8 + 296, 600, 600]
    with pytest.raises(ValueError, match="batch\\['step'\\]"):
        mask_agnostic.max_masks_at(None, ma)


def prompt_answer_batch(length=20):
    tokens = np.full((3, length), EOS, np.int32)
    pm = np.zeros((3, length), bool)
    am = np.zeros((3, length), bool)
    for i, (q, a) in enumerate([(4, 3), (6, 5), (0, 0)]):
        tokens[i, :q + a] = np.arange(q + a) % 30
        pm[i, :q], am[i, q:q + a] = True, True
    valid = np.ones((3, length), bool)
    valid[2] = False  # an eval padding row
    return {"tokens": jnp.asarray(tokens), "prompt_mask": jnp.asarray(pm),
            "answer_mask": jnp.asarray(am), "valid": jnp.asarray(valid),
            "step": jnp.int32(3)}


def test_term_runs_reports_metrics_and_differentiates():
    c = tiny_config(curriculum_steps=10, curriculum_start=2)
    c_first = tiny_config(curriculum_steps=10, curriculum_start=2,
                          stop_gradient_branch="first")
    apply, params = model.create(c.model, jax.random.key(0))
    batch = prompt_answer_batch()

    def loss_fn(prm, cfg):
        return losses.total_loss(apply, prm, batch, jax.random.key(1), cfg)

    @jax.jit
    def both(prm):
        none = jax.value_and_grad(loss_fn, has_aux=True)(prm, c)
        first = jax.value_and_grad(loss_fn, has_aux=True)(prm, c_first)
        return none, first

    ((loss, metrics), grads), ((loss_first, _), grads_first) = both(params)
    assert np.isfinite(float(loss))
    assert float(metrics["mask_agnostic/examples"]) == 2.0  # the padding row is ignored
    assert float(metrics["mask_agnostic/max_masks"]) == 3.0  # 2 + floor(0.3 * 4)
    assert float(metrics["mask_agnostic/n_masked_mean"]) >= 1.0
    assert 0.2 <= float(metrics["mask_agnostic/p_mean"]) <= 1.0  # realised rates
    assert float(metrics["mask_agnostic/tv"]) > 0
    want = 0.1 * metrics["mask_agnostic/ce"] + 1.0 * metrics["mask_agnostic/tv"]
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
    # stop_gradient_branch='first' changes the gradient, not the loss
    np.testing.assert_allclose(loss_first, loss, rtol=1e-5)
    diff = max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(grads),
                                                           jax.tree.leaves(grads_first)))
    assert diff > 0


def test_apply_sees_masks_only_after_the_answer_and_eos_after_them():
    c = tiny_config()
    seen = []

    def spy(params, tokens, t=None, **kw):
        seen.append((tokens, t))
        return jnp.zeros(tokens.shape + (V,), jnp.float32)

    def run(batch):
        mask_agnostic.mask_agnostic(spy, {}, batch, jax.random.key(3), c)
        return seen[-1]

    batch = prompt_answer_batch()
    x, t = map(np.asarray, jax.jit(run)(batch))
    tokens = np.asarray(batch["tokens"])
    for i, (q, a) in enumerate([(4, 3), (6, 5)]):
        x1, x2 = x[i], x[i + 3]
        np.testing.assert_array_equal(x1[:q], tokens[i, :q])
        np.testing.assert_array_equal(x1[q:q + a], x2[q:q + a])  # same noised answer
        n1, n2 = (x1[q + a:] == MASK).sum(), (x2[q + a:] == MASK).sum()
        assert n1 != n2
        assert np.all(x1[q + a + n1:] == EOS) and np.all(x2[q + a + n2:] == EOS)
    np.testing.assert_array_equal(t[:3], t[3:])


def test_pretraining_fallback_cuts_a_window():
    c = tiny_config(pretrain_answer_len=4)
    seen = []

    def spy(params, tokens, t=None, **kw):
        seen.append(tokens)
        return jnp.zeros(tokens.shape + (V,), jnp.float32)

    def run(tokens):
        _, m = mask_agnostic.mask_agnostic(spy, {}, {"tokens": tokens}, jax.random.key(0), c)
        return m, seen[-1]

    tokens = jnp.asarray(np.arange(64).reshape(4, 16) % 30, jnp.int32)
    m, x = jax.jit(run)(tokens)
    assert float(m["examples"]) == 4.0 and float(m["no_room_fraction"]) == 0.0
    x = np.asarray(x)
    for i in range(4):
        row, src = x[i], np.asarray(tokens[i])
        end = int(np.flatnonzero(row != EOS)[-1]) + 1  # end of prompt + answer + masks
        n_masks = 0
        while row[end - 1 - n_masks] == MASK and end - 1 - n_masks > 0:
            n_masks += 1
        assert end <= 16 and np.all(row[end:] == EOS)
        kept = row[:end] != MASK
        np.testing.assert_array_equal(row[:end][kept], src[:end][kept])
        assert kept[0]  # the prompt is never empty and never masked


def test_bad_config_is_a_clear_error():
    """Checked when the config loads (checks.validate_config; more cases in
    tests/test_config_validation.py), not when the loss is traced."""
    for kw, match in [(dict(beta=-1.0), "beta=-1.0 must be >= 0"),
                      (dict(stop_gradient_branch="both"), "stop_gradient_branch")]:
        c = tiny_config(**kw)
        with pytest.raises(ValueError, match=match):
            mask_agnostic.check_mask_agnostic_config(c.loss.mask_agnostic)


def test_invariance_report_tells_invariant_from_distracted_models():
    from mdlm_jax.diffusion import invariance

    c = tiny_config()
    batch = prompt_answer_batch(length=24)
    table = jnp.asarray(np.random.default_rng(0).normal(size=(V, V)), jnp.float32)

    def invariant(params, tokens, t=None, **kw):  # each position sees only its own token
        return table[tokens]

    def distracted(params, tokens, t=None, **kw):  # every position sees the mask count
        n = jnp.sum(tokens == MASK, axis=-1)[:, None, None].astype(jnp.float32)
        return table[tokens] + 0.3 * n * table[0][None, None, :]

    counts = (0, 4, 13)
    r_inv = invariance.invariance_report(invariant, {}, [batch], c, counts)
    r_dis = invariance.invariance_report(distracted, {}, [batch], c, counts)
    # rows: (q, a) = (4, 3) and (6, 5) in 24 positions -> room 17 and 13; one padding row
    assert r_inv["examples"] == 2 and r_dis["examples"] == 2
    assert r_inv["tv@0"] == 0.0 and r_dis["tv@0"] == 0.0
    assert r_inv["tv_mean"] < 1e-6 and r_inv["ce_spread"] < 1e-5
    assert r_dis["tv@4"] > 0.01 and r_dis["tv@13"] > r_dis["tv@4"]
    assert r_dis["ce_spread"] > 1e-3
    text = invariance.format_comparison(r_dis, r_inv)
    assert "tv_mean" in text and len(text.splitlines()) == 5
    with pytest.raises(ValueError, match="no example has room for 18 extra masks"):
        invariance.invariance_report(invariant, {}, [batch], c, (0, 18))


def _load_config(name, arg=None):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.mark.parametrize("name,arg,beta,lr", [
    ("llada_8b_base_ma", "ce_tv,path=/m/base,data=/d/*.jsonl", 1.0, 1e-5),
    ("llada_8b_base_ma", "ce", 0.0, 1e-6),
    ("llada_8b_instruct_ma", "ce_tv", 10.0, 1e-6),
    ("llada_8b_instruct_ma", "ce,path=/m/inst", 0.0, 1e-5),
])
def test_table2_configs(name, arg, beta, lr):
    from mdlm_jax.model import lora

    c = _load_config(name, arg)
    assert c.loss.mask_agnostic.beta == beta and c.optimizer.learning_rate == lr
    assert c.loss.mask_agnostic.alpha == 0.1 and dict(c.loss.terms) == {"mask_agnostic": 1.0}
    assert (c.lora.rank, c.lora.alpha) == (64, 128.0)
    assert (c.data.global_batch_size, c.optimizer.grad_accum_steps) == (3, 43)
    assert c.data.seq_len == 1024 and c.model.dtype == "bfloat16"
    assert c.model.init_from == c.data.tokenizer_path
    if "path=" in arg:
        assert c.model.init_from == arg.split("path=")[1].split(",")[0]
    _, shapes, axes = model.abstract(c.model, transform=lora.transform(c.lora))
    assert shapes["blocks"]["attn"]["q"]["lora_a"].shape == (32, 4096, 64)
    assert shapes["embed"].shape == (126464, 4096)
    with pytest.raises(ValueError, match="unknown config args"):
        _load_config(name, "ce_tv,rank=8")


def test_quickstart_ma_config_builds():
    from mdlm_jax.model import lora

    c = _load_config("quickstart_ma", "restore=/tmp/qs")
    assert c.checkpoint.restore_from == "/tmp/qs" and c.loss.mask_agnostic.beta == 1.0
    assert c.data.name == "prompt_answer" and c.data.files == "embedded"
    assert c.model.family == "llama" and c.diffusion.mask_id == 2048
    from mdlm_jax.data.tokenizers import eos_id

    assert eos_id(c.data) == 0  # kjv_bpe's <|endoftext|>, read from the tokenizer
    _, shapes, _ = model.abstract(c.model, transform=lora.transform(c.lora))
    assert "lora_a" in shapes["blocks"]["up"]
    assert _load_config("quickstart_ma", "ce,full").lora.rank == 0


def test_weights_and_time_follow_the_realised_mask_rate():
    """One-token answers are always masked (at least one mask per answer), so the real
    mask rate is 1 whatever p was drawn: CE / TV weights and the time fed to the model
    use it (linear schedule: t = rate), not the drawn p = 0.3."""
    c = tiny_config(p_low=0.3, p_high=0.3)
    c.diffusion.schedule = "linear"
    seen = []

    def zero_apply(params, tokens, t=None, **_):
        seen.append(np.asarray(t))
        return jnp.zeros(tokens.shape + (V,), jnp.float32)

    tokens = np.full((2, 12), EOS, np.int32)
    tokens[:, :5] = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    pm, am = np.zeros((2, 12), bool), np.zeros((2, 12), bool)
    pm[:, :4], am[:, 4] = True, True
    batch = {"tokens": jnp.asarray(tokens), "prompt_mask": jnp.asarray(pm),
             "answer_mask": jnp.asarray(am), "step": jnp.int32(0)}
    _, m = mask_agnostic.mask_agnostic(zero_apply, {}, batch, jax.random.key(0), c)
    np.testing.assert_allclose(seen[0], 1.0)
    assert float(m["p_mean"]) == pytest.approx(1.0)
    # zero logits: -log p(a) = log(V - 1) (the mask excluded); ce = that / rate
    assert float(m["ce"]) == pytest.approx(np.log(V - 1), rel=1e-5)
