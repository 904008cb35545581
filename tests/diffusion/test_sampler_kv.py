"""The block-wise KV cache (Fast-dLLM prefix / dual) of the confidence samplers."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from mdlm_jax import model  # noqa: E402
from mdlm_jax.config_base import base_config  # noqa: E402
from mdlm_jax.diffusion import losses, sampler  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog. "
ALPHABET = sorted(set(TEXT))
V = len(ALPHABET) + 1  # + mask
MASK = V - 1
L = 40
LR = 1e-2
STEPS = 300


def config():
    c = base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = "llama", 32, 2, 4, 64
    m.vocab_size, m.max_length = V, 64
    c.diffusion.mask_id = MASK
    c.diffusion.schedule = "linear"
    c.loss.terms = {"nelbo": 1.0}
    c.sampler.gen_length, c.sampler.block_length, c.sampler.steps = 32, 8, 32
    c.sampler.temperature = 0.0
    return c


def encode(text):
    return [ALPHABET.index(ch) for ch in text]


@pytest.fixture(scope="module")
def trained():
    """A tiny llama-family MDLM trained 300 steps on one repeated sentence."""
    c = config()
    apply, shapes, _ = model.abstract(c.model)
    rng = np.random.default_rng(0)
    def init(path, s):  # norm scales start at one, weights small
        if jax.tree_util.keystr(path).endswith("['scale']"):
            return jnp.ones(s.shape, jnp.float32)
        return jnp.asarray(rng.normal(0, 0.02, s.shape).astype(np.float32))

    params = jax.tree_util.tree_map_with_path(init, shapes)
    ids = np.asarray(encode(TEXT * 4))
    starts = rng.integers(0, len(TEXT), size=(STEPS, 16))
    batches = ids[starts[..., None] + np.arange(L)]
    opt = optax.adam(LR)

    @jax.jit
    def train(params, batches, key):
        def step(carry, xs):
            params, state = carry
            batch, i = xs
            grads = jax.grad(lambda p: losses.total_loss(
                apply, p, {"tokens": batch}, jax.random.fold_in(key, i), c)[0])(params)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)),
                                      (batches, jnp.arange(len(batches))))
        return params

    return c, apply, train(params, jnp.asarray(batches), jax.random.key(0))


def test_cached_forward_is_the_model(trained):
    """The sampler's windows (dual: the block; prefix: block and suffix) through the
    model's cached forward give the uncached logits on a fresh cache."""
    c, apply, params = trained
    tokens = jnp.asarray([encode(TEXT[:L]), encode(TEXT[5:5 + L])])
    tokens = tokens.at[:, 20:].set(MASK)
    ref = apply(params, tokens)
    start = 16

    @jax.jit
    def both(params, tokens):
        full, cache = apply.cached.prefill(params, tokens)
        window = apply.cached.window
        return (full, window(params, tokens[:, start:start + 8], cache, start),
                window(params, tokens[:, start:], cache, start))

    full, got_dual, got_prefix = both(params, tokens)
    np.testing.assert_allclose(full, ref, atol=2e-5)
    for got, stop in ((got_dual, start + 8), (got_prefix, L)):
        assert got.shape == (2, stop - start, V)
        np.testing.assert_allclose(got, ref[:, start:stop], atol=2e-5)


_SAMPLES = {}


def sample(c, apply, params, strategy, mode):
    if (strategy, mode) not in _SAMPLES:
        s = sampler.Settings.from_config(c, strategy=strategy, kv_cache=mode, threshold=0.7)
        canvas, start = sampler.build_canvas(encode(TEXT[:8]), s, 4)
        canvas = canvas.at[1:, :8].set(jnp.asarray(
            [encode(TEXT[i:i + 8]) for i in (3, 11, 20)]))
        fn = sampler.make_sample_fn(apply, s, gen_start=start, cached=apply.cached)
        _SAMPLES[strategy, mode] = jax.device_get(fn(params, canvas, jax.random.key(0)))
    return _SAMPLES[strategy, mode]


@pytest.mark.parametrize("strategy,mode", [("confidence", "prefix"), ("confidence", "dual"),
                                           ("threshold", "dual")])
def test_kv_cache_stays_close_to_the_uncached_sampler(trained, strategy, mode):
    c, apply, params = trained
    ref = sample(c, apply, params, strategy, "none")
    got = sample(c, apply, params, strategy, mode)
    assert not np.any(got["tokens"][:, 8:] == MASK)
    agreement = float(np.mean(got["tokens"][:, 8:] == ref["tokens"][:, 8:]))
    # Measured on this model (CPU, 2026-11-30): confidence/prefix 0.92, confidence/dual
    # 0.81, threshold/dual 0.91 (stale prefix/suffix K/V within a block is Fast-dLLM's
    # approximation). The same code measured confidence/dual 0.727 (93 of 128 tokens) on
    # another x86 CPU (2026-12-01): float rounding decides near-tied confidences, and one
    # early difference changes the rest of a row. Lower the bound only with a measured
    # reason.
    assert agreement >= 0.70, (strategy, mode, agreement)


def test_kv_cache_needs_the_models_cached_forward(trained):
    c, apply, params = trained
    s = sampler.Settings.from_config(c, strategy="confidence", kv_cache="dual")
    canvas, start = sampler.build_canvas(encode(TEXT[:8]), s, 2)
    with pytest.raises(ValueError, match=r"sampler.kv_cache='dual' needs the model's cached "
                                         r"forward: pass cached=apply.cached"):
        sampler.generate(apply, params, canvas, jax.random.key(0), s, gen_start=start)


def test_published_call_count_adds_one_per_block_decoded_by_its_first_call(trained):
    """tau tiny: every block is decoded by its first (full) call. This sampler stops
    there (one call per block); Fast-dLLM's cached loop calls once more per block."""
    c, apply, params = trained
    s = sampler.Settings.from_config(c, strategy="threshold", kv_cache="dual", threshold=1e-9)
    canvas, start = sampler.build_canvas(encode(TEXT[:8]), s, 2)
    fn = sampler.make_sample_fn(apply, s, gen_start=start, cached=apply.cached)
    out = jax.device_get(fn(params, canvas, jax.random.key(0)))
    assert int(out["model_calls"]) == s.num_blocks == int(out["first_call_blocks"])
    assert sampler.reference_model_calls(out, s) == 2 * s.num_blocks


def test_kv_cache_samples_alike_on_one_and_eight_devices(trained):
    """The cached sampler on a (4, 1, 2) mesh (batch over data, heads over tensor, the
    cache sharded as the activations) decodes the tokens of one device."""
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    c, apply, params = trained
    one = sample(c, apply, params, "confidence", "dual")
    c = c.copy_and_resolve_references()
    c.mesh.shape = (4, 1, 2)
    mesh = mesh_lib.make_mesh(c.mesh)
    _, shapes, axes = model.abstract(c.model)
    shard = sharding.param_shardings(axes, shapes, c.mesh.rules, mesh)
    s = sampler.Settings.from_config(c, strategy="confidence", kv_cache="dual", threshold=0.7)
    canvas, start = sampler.build_canvas(encode(TEXT[:8]), s, 4)
    canvas = canvas.at[1:, :8].set(jnp.asarray([encode(TEXT[i:i + 8]) for i in (3, 11, 20)]))
    fn = sampler.make_sample_fn(apply, s, gen_start=start, mesh=mesh, param_shardings=shard,
                                rules=c.mesh.rules, cached=apply.cached)
    many = jax.device_get(fn(jax.device_put(params, shard), canvas, jax.random.key(0)))
    np.testing.assert_array_equal(one["tokens"], many["tokens"])
    assert int(one["model_calls"]) == int(many["model_calls"])
