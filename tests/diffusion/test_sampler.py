"""Properties of the sampler: commitment, schedules, ordering, conditioning, errors."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mdlm_jax import model  # noqa: E402
from mdlm_jax.config_base import base_config  # noqa: E402
from mdlm_jax.diffusion import categorical, parameterization, sampler  # noqa: E402

V, MASK, L_MAX = 40, 39, 64


def tiny_config(**sampler_kw):
    c = base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = "llama", 32, 2, 4, 64
    m.vocab_size, m.max_length = V, L_MAX
    c.diffusion.mask_id = MASK
    c.sampler.gen_length, c.sampler.block_length, c.sampler.steps = 16, 8, 8
    for k, v in sampler_kw.items():
        setattr(c.sampler, k, v)
    return c


def numpy_params(model_cfg, seed=0, std=0.3):
    """Random parameters drawn with numpy (no per-shape compilation, fast on CPU)."""
    apply, shapes, _ = model.abstract(model_cfg)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0.0, std, s.shape).astype(np.float32)), shapes)
    return apply, params


@pytest.fixture(scope="module")
def tiny():
    c = tiny_config()
    apply, params = numpy_params(c.model)
    return c, apply, params


def infill_canvas(batch=2):
    """Prompt [1..4], a 16-long region with fixed tokens at 6 and 13, 3 extra masks."""
    row = [1, 2, 3, 4] + [MASK] * 16 + [MASK] * 3
    row[6], row[13] = 7, 8
    return jnp.tile(jnp.asarray(row, jnp.int32)[None], (batch, 1)), 4


def run(apply, params, s, canvas, gen_start, seed=0, debug=False, **kw):
    fn = sampler.make_sample_fn(apply, s, gen_start=gen_start, debug=debug, **kw)
    return jax.device_get(fn(params, canvas, jax.random.key(seed)))


STRATS = [dict(strategy="ancestral"), dict(strategy="confidence"),
          dict(strategy="threshold", threshold=1e-6)]


@pytest.mark.parametrize("kw", STRATS, ids=lambda k: "-".join(map(str, k.values())))
def test_commitment_conditioning_and_completion(tiny, kw):
    c, apply, params = tiny
    s = sampler.Settings.from_config(c, extra_masks=3, **kw).validate(4)
    canvas, start = infill_canvas()
    out = run(apply, params, s, canvas, start, debug=True)
    traj, init = out["trajectory"], np.asarray(canvas)
    for prev, nxt in zip(traj[:-1], traj[1:]):
        fixed = prev != MASK
        np.testing.assert_array_equal(nxt[fixed], prev[fixed],
                                      err_msg="a committed token changed")
    tokens = out["tokens"]
    assert not np.any(tokens[:, start:start + 16] == MASK), "masks left in the region"
    assert np.all(tokens[:, start + 16:] == MASK), "extra masks must never be decoded"
    np.testing.assert_array_equal(tokens[:, :4], init[:, :4], err_msg="prompt altered")
    assert np.all(tokens[:, 6] == 7) and np.all(tokens[:, 13] == 8), "infill altered"
    # every decoded position got a commit step; fixed ones none
    assert np.all((out["commit_step"] >= 0) == (init == MASK) & (np.arange(23) < 20))
    if kw["strategy"] == "threshold":  # tau ~ 0: a whole block per step, one call each
        assert int(out["model_calls"]) == 2
        np.testing.assert_array_equal(out["commit_step"][:, 4:12] >= 0,
                                      out["commit_step"][:, 4:12] == 0)


def test_confidence_commits_scheduled_counts_inside_the_block(tiny):
    c, apply, params = tiny
    s = sampler.Settings.from_config(c, strategy="confidence", steps=6, extra_masks=3,
                                     remasking="random").validate(4)
    canvas, start = infill_canvas()
    out = run(apply, params, s, canvas, start)
    cs = out["commit_step"]
    # block 0 = positions 4..11 holds 7 masks (6 fixed), block 1 = 12..19 holds 7 masks
    expected = np.asarray(sampler.num_transfer_tokens(jnp.asarray([7]), 3))[0]
    np.testing.assert_array_equal(expected, [3, 2, 2])
    for step in range(6):
        blk = step // 3
        lo, hi = start + 8 * blk, start + 8 * (blk + 1)
        where = np.nonzero(cs[0] == step)[0]
        assert len(where) == expected[step % 3], f"step {step}: {where}"
        assert np.all((where >= lo) & (where < hi)), f"step {step} left its block: {where}"


def test_threshold_commits_at_least_one_per_step(tiny):
    c, apply, params = tiny
    canvas, start = infill_canvas(batch=1)
    strict = sampler.Settings.from_config(c, strategy="threshold", threshold=1.0,
                                          extra_masks=3)
    out = run(apply, params, strict, canvas, start)
    # tau = 1: nothing passes on an untrained model, so exactly one (the best) per step
    assert int(out["model_calls"]) == 14
    np.testing.assert_array_equal(np.sort(out["commit_step"][0][out["commit_step"][0] >= 0]),
                                  np.arange(14))


def causal_confidence_apply(params, tokens, t=None, **_):
    """Logits whose confidence decreases with position: a peak of 10 - 0.2 i at i % 30."""
    del params, t
    b, length = tokens.shape
    pos = jnp.arange(length)
    peak = jax.nn.one_hot(pos % 30, V) * (10.0 - 0.2 * pos)[:, None]
    return jnp.tile(peak[None], (b, 1, 1))


@pytest.mark.parametrize("strategy", ["confidence", "threshold"])
def test_causal_confidence_decodes_left_to_right(strategy):
    c = tiny_config(strategy=strategy, gen_length=16, block_length=16, steps=16,
                    threshold=1.0, temperature=0.0)
    s = sampler.Settings.from_config(c)
    canvas = jnp.full((2, 20), MASK, jnp.int32).at[:, :4].set(5)
    out = run(causal_confidence_apply, {}, s, canvas, 4)
    np.testing.assert_array_equal(out["commit_step"][:, 4:], np.tile(np.arange(16), (2, 1)))
    np.testing.assert_array_equal(out["tokens"][0, 4:], np.arange(4, 20) % 30)


def test_ancestral_cache_saves_calls_without_changing_samples(tiny):
    c, apply, params = tiny
    canvas, start = infill_canvas()
    kw = dict(strategy="ancestral", steps=64, extra_masks=3)
    cached = run(apply, params, sampler.Settings.from_config(c, use_cache=True, **kw),
                 canvas, start)
    plain = run(apply, params, sampler.Settings.from_config(c, use_cache=False, **kw),
                canvas, start)
    np.testing.assert_array_equal(cached["tokens"], plain["tokens"])
    assert int(plain["model_calls"]) == 64 and int(plain["calls_saved"]) == 0
    assert int(cached["calls_saved"]) > 0
    assert int(cached["model_calls"]) + int(cached["calls_saved"]) == 64


@pytest.mark.parametrize("strategy", ["ancestral", "threshold"])
def test_same_seed_same_samples_on_one_and_eight_devices(tiny, strategy):
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    c, apply, params = tiny
    s = sampler.Settings.from_config(c, strategy=strategy, threshold=0.1)
    canvas, start = infill_canvas(batch=8)
    one = run(apply, params, s, canvas[:, :20], start)
    c.mesh.shape = (4, 1, 2)
    mesh = mesh_lib.make_mesh(c.mesh)
    _, shapes, axes = model.abstract(c.model)
    shard = sharding.param_shardings(axes, shapes, c.mesh.rules, mesh)
    sharded = jax.device_put(params, shard)
    many = run(apply, sharded, s, canvas[:, :20], start, mesh=mesh, param_shardings=shard,
               rules=c.mesh.rules)
    np.testing.assert_array_equal(one["tokens"], many["tokens"])
    assert len(set(map(tuple, one["tokens"].tolist()))) > 1, "rows should differ"


def test_gumbel_noise_has_float64_tails():
    lo = jnp.zeros((1, 2), jnp.uint32)
    hi = jnp.full((1, 2), 0xFFFFFFFF, jnp.uint32)
    g_lo, g_hi = (float(categorical.gumbel_from_bits(b)[0]) for b in (lo, hi))
    u_lo = 0.5 / 2**53
    np.testing.assert_allclose(g_lo, -np.log(-np.log(u_lo)), rtol=1e-5)  # -3.62
    np.testing.assert_allclose(g_hi, -np.log(-np.log1p(-0.5 / 2**53)), rtol=1e-5)  # 37.4
    assert g_lo < -3.6 and g_hi > 36  # float32 uniforms stop at [-2.8, 16.6]
    g = np.asarray(categorical.gumbel_noise(jax.random.key(0), (200_000,)))
    assert abs(g.mean() - 0.5772) < 0.01 and abs(g.var() - np.pi**2 / 6) < 0.03


def test_sampling_frequencies_follow_temperature_and_filters():
    s = sampler.Settings(mask_id=3, temperature=0.5)
    logits = jnp.log(jnp.asarray([0.5, 0.3, 0.2, 0.0]))[None, None]
    draws = categorical.sample_x0(jnp.tile(logits, (1, 40_000, 1)), jax.random.key(1), s)
    freq = np.bincount(np.asarray(draws[0]), minlength=4) / 40_000
    p = np.asarray([0.25, 0.09, 0.04, 0.0])
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.01)
    top_k = categorical.filter_logits(logits, sampler.Settings(mask_id=3, top_k=2))
    assert np.all(np.asarray(top_k[0, 0, 2:]) < -1e8)
    top_p = categorical.filter_logits(logits, sampler.Settings(mask_id=3, top_p=0.6))
    np.testing.assert_array_equal(np.asarray(top_p[0, 0]) > -1e8, [True, True, False, False])


@pytest.mark.parametrize("overrides,match", [
    (dict(steps=0), "sampler.steps"),
    (dict(block_length=5), "sampler.block_length"),
    (dict(top_p=1.5), "sampler.top_p"),
    (dict(top_p=0.0), "sampler.top_p"),
    (dict(extra_masks=40), "sampler.extra_masks"),
    (dict(steps=7), "multiple of the number of blocks"),
    (dict(strategy="greedy"), "sampler.strategy"),
    (dict(kv_cache="dual", strategy="ancestral"), "sampler.kv_cache"),
])
def test_bad_settings_give_one_line_errors(overrides, match):
    c = tiny_config(strategy="confidence")
    with pytest.raises(ValueError, match=match) as e:
        sampler.build_canvas([1] * 10, sampler.Settings.from_config(c, **overrides), 1)
    assert "\n" not in str(e.value)


def test_prompt_longer_than_canvas():
    s = sampler.Settings.from_config(tiny_config())
    with pytest.raises(ValueError, match="longer than the canvas"):
        sampler.build_canvas([1] * L_MAX, s, 1)


def test_num_transfer_tokens_matches_llada():
    got = np.asarray(sampler.num_transfer_tokens(jnp.asarray([10, 3, 0]), 4))
    np.testing.assert_array_equal(got, [[3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0]])


def test_threshold_terminates_on_nan_logits():
    def nan_apply(params, tokens, t=None, **_):
        return jnp.full(tokens.shape + (V,), jnp.nan)

    s = sampler.Settings.from_config(tiny_config(strategy="threshold"))
    canvas = jnp.full((1, 16), MASK, jnp.int32)
    out = run(nan_apply, {}, s, canvas, 0)
    assert int(out["model_calls"]) == 16 and not np.any(out["tokens"] == MASK)


def test_any_batch_size_on_one_two_and_eight_devices(tiny, strategy="threshold"):
    """A batch of 3 on 2 and 8 devices is padded to the data-parallel size and the
    padding dropped: the same tokens and model calls as on one device."""
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    c, apply, params = tiny
    s = sampler.Settings.from_config(c, strategy=strategy, threshold=0.1)
    canvas, start = infill_canvas(batch=3)
    one = run(apply, params, s, canvas, start)
    for n in (2, 8):
        mesh = mesh_lib.make_mesh(base_config().mesh, devices=jax.devices()[:n])
        _, shapes, axes = model.abstract(c.model)
        shard = sharding.param_shardings(axes, shapes, c.mesh.rules, mesh)
        many = run(apply, jax.device_put(params, shard), s, canvas, start, mesh=mesh,
                   param_shardings=shard, rules=c.mesh.rules, debug=True)
        assert many["tokens"].shape == (3, canvas.shape[1])
        assert many["trajectory"].shape[1] == 3
        np.testing.assert_array_equal(one["tokens"], many["tokens"])
        assert int(one["model_calls"]) == int(many["model_calls"])


@pytest.mark.parametrize("strategy", ["confidence", "threshold"])
def test_time_conditioned_models_get_the_time_of_the_mask_rate(strategy):
    """The model's prediction is round(9 t): each commit shows the t it was given, which
    must be the linear schedule's time for the region's mask rate before that step."""
    def t_apply(params, tokens, t=None, **_):
        t = jnp.zeros(tokens.shape[:1]) if t is None else t
        ids = jnp.round(9 * t).astype(jnp.int32)
        return jnp.tile(jax.nn.one_hot(ids, V)[:, None] * 10.0, (1, tokens.shape[1], 1))

    c = tiny_config(strategy=strategy, gen_length=8, block_length=8, steps=8,
                    temperature=0.0, threshold=1.0)
    c.model.family, c.model.time_conditioning = "dit", True
    c.diffusion.schedule = "linear"
    s = sampler.Settings.from_config(c)
    out = run(t_apply, {}, s, jnp.full((1, 8), MASK, jnp.int32), 0)
    step = out["commit_step"][0]
    assert sorted(step.tolist()) == list(range(8))  # one commit per step
    want = np.round(9 * (8 - step) / 8)
    np.testing.assert_array_equal(out["tokens"][0], want)


@pytest.mark.parametrize("setting,imported_from,keep", [
    ("auto", "", False), ("auto", "llada", True), ("auto", "dream", True),
    ("auto", "llama", False), ("auto", "mdlm", False), ("keep", "", True),
    ("drop", "llada", False)])
def test_mask_in_softmax_follows_the_model_family(setting, imported_from, keep):
    c = tiny_config(mask_in_softmax=setting, temperature=0.0)
    c.model.imported_from = imported_from
    assert parameterization.resolve_mask_in_softmax(c) is keep
    assert sampler.Settings.from_config(c).mask_in_softmax is keep
    logits = jnp.zeros((1, 1, V)).at[..., MASK].set(5.0)
    s = sampler.Settings.from_config(c)
    picked = int(categorical.sample_x0(categorical.filter_logits(logits, s), None, s)[0, 0])
    assert (picked == MASK) is keep  # greedy: the mask wins only when it is kept
