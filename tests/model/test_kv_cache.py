"""The model's KV-cached forward (``apply.cached``: ``prefill``, ``window``): the same
forward pass as ``apply``, so on a cache of the same canvas its logits are ``apply``'s on
the window's positions, for every family, with LoRA adapters, and on a sharded mesh."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from mdlm_jax import model  # noqa: E402
from mdlm_jax.config_base import base_config  # noqa: E402

V, B, L = 40, 4, 24
ATOL = 2e-5  # float32: the window's attention sums the same terms in another order
# (start, width): the first block, one in the middle (the sampler's dual window) and one
# reaching the end (the prefix window)
WINDOWS = ((0, 8), (13, 8), (5, 19))
FAMILIES = {
    "llada": dict(family="llama"),
    "qwen2": dict(family="llama", n_kv_heads=2, qkv_bias=True, tie_embeddings=True),
    "dream": dict(family="llama", n_kv_heads=2, qkv_bias=True, logit_shift=True),
    "dit": dict(family="dit", time_conditioning=True),
}


def model_config(**overrides):
    m = base_config().model
    m.d_model, m.n_layers, m.n_heads, m.mlp_dim, m.cond_dim = 32, 2, 4, 64, 16
    m.vocab_size, m.max_length = V, 64
    for k, v in overrides.items():
        m[k] = v
    return m


def random_params(shapes, seed=0, std=0.3):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, std, s.shape), s.dtype), shapes)


def tokens(seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, size=(B, L)), jnp.int32)


T_B = jnp.asarray([0.2, 0.4, 0.6, 0.8], jnp.float32)


def cached_logits(apply, params, x, t_B=T_B):
    """The prefill's logits and each window's, in one compiled function."""

    def run(params, x, t_B):
        full, cache = apply.cached.prefill(params, x, t_B)
        windows = [apply.cached.window(params, x[:, s:s + w], cache, s, t_B)
                   for s, w in WINDOWS]
        return full, cache, windows

    return jax.jit(run)(params, x, t_B)


def assert_windows_are_apply(full, windows, ref):
    ref = np.asarray(ref)
    assert np.abs(ref).max() > 1.0, "logits should not be near zero (a vacuous comparison)"
    np.testing.assert_allclose(full, ref, atol=ATOL)
    for (s, w), got in zip(WINDOWS, windows):
        assert got.shape == (B, w, V) and got.dtype == jnp.float32
        np.testing.assert_allclose(got, ref[:, s:s + w], atol=ATOL, err_msg=f"window {s}+{w}")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_cached_logits_equal_apply_on_the_window(name):
    cfg = model_config(**FAMILIES[name])
    apply, shapes, _ = model.abstract(cfg)
    params = random_params(shapes)
    x = tokens()
    full, cache, windows = cached_logits(apply, params, x)
    assert_windows_are_apply(full, windows, jax.jit(apply)(params, x, T_B))
    assert cache.keys.shape == (2, B, L, cfg.n_kv_heads or cfg.n_heads, 8)
    assert (cache.hidden is not None) == cfg.logit_shift


def test_window_reads_the_cache_outside_it():
    """A window's logits depend on the cached keys / values of the other positions (what
    makes the cache Fast-dLLM's approximation when they are stale)."""
    apply, shapes, _ = model.abstract(model_config(family="llama"))
    params = random_params(shapes)
    x = tokens()
    _, cache = apply.cached.prefill(params, x)
    _, other = apply.cached.prefill(params, x.at[:, 20:].set((x[:, 20:] + 1) % V))
    a = apply.cached.window(params, x[:, 8:16], cache, 8)
    b = apply.cached.window(params, x[:, 8:16], other, 8)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


def test_unrolled_and_rematerialised_layers_cache_alike():
    cfg = model_config(**FAMILIES["dream"], scan_layers=False, remat_policy="full")
    apply, shapes, _ = model.abstract(cfg)
    params = random_params(shapes)
    x = tokens(1)
    full, _, windows = cached_logits(apply, params, x)
    assert_windows_are_apply(full, windows, jax.jit(apply)(params, x, T_B))


def test_with_lora_adapters_and_merged():
    """The adapted model's cached forward is its ``apply``; merged into the base weights,
    the plain model's cached forward gives the same logits."""
    from mdlm_jax.model import lora

    c = base_config()
    cfg = model_config(**FAMILIES["qwen2"])
    c.lora.rank, c.lora.alpha, c.lora.targets = 4, 8.0, ("q", "v", "down")
    adapted_apply, shapes, _ = model.abstract(cfg, transform=lora.transform(c.lora))
    params = random_params(shapes, seed=1)  # lora_b != 0: the adapters change the logits
    x = tokens(2)
    ref = jax.jit(adapted_apply)(params, x, None)
    full, _, windows = cached_logits(adapted_apply, params, x, None)
    assert_windows_are_apply(full, windows, ref)
    plain_apply, _, _ = model.abstract(cfg)
    base = lora.split(params)[1]
    assert np.abs(np.asarray(ref) - np.asarray(jax.jit(plain_apply)(base, x, None))).max() > 1e-2
    full, _, windows = cached_logits(plain_apply, lora.merge(params, c.lora), x, None)
    assert_windows_are_apply(full, windows, ref)


def test_sharded_on_eight_devices_keeps_the_shardings():
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    c = base_config()
    c.mesh.shape = (2, 2, 2)
    cfg = model_config(**FAMILIES["dream"])
    apply, shapes, axes = model.abstract(cfg)
    params = random_params(shapes)
    x = tokens(3)
    ref = jax.jit(apply)(params, x, None)
    mesh = mesh_lib.make_mesh(c.mesh)
    shard = sharding.param_shardings(axes, shapes, c.mesh.rules, mesh)
    placed = jax.device_put(params, shard)
    assert placed["blocks"]["attn"]["k"]["kernel"].sharding.spec == P(None, "fsdp", "tensor",
                                                                       None)
    with jax.set_mesh(mesh), sharding.logical_rules(c.mesh.rules):
        full, cache, windows = cached_logits(apply, placed,
                                             jax.device_put(x, mesh_lib.batch_sharding(mesh)),
                                             None)
    assert_windows_are_apply(full, windows, ref)
    batch = ("data", "fsdp")

    def sharded_as(x, *spec):
        return x.sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), x.ndim)

    assert sharded_as(cache.keys, None, batch, None, "tensor", None), cache.keys.sharding
    assert sharded_as(cache.values, None, batch, None, "tensor", None)
    assert sharded_as(cache.hidden, batch, None, None), cache.hidden.sharding
    assert sharded_as(full, batch, None, "tensor"), full.sharding
    assert sharded_as(windows[1], batch, None, "tensor"), windows[1].sharding


def test_causal_models_have_no_cached_forward():
    apply, shapes, _ = model.abstract(model_config(family="llama", causal=True))
    with pytest.raises(ValueError, match="needs a bidirectional model"):
        apply.cached.prefill(random_params(shapes), tokens())
