"""LoRA adapters: attachment, frozen base weights, merging, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mdlm_jax import config_base, model
from mdlm_jax.model import lora

V = 40


def configs(family="llama", targets=("q", "v", "down"), rank=4):
    c = config_base.base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = family, 32, 2, 2, 64
    m.vocab_size, m.cond_dim = V, 16
    c.lora.rank, c.lora.alpha, c.lora.targets = rank, 8.0, targets
    return m, c.lora


def tokens():
    return jnp.asarray(np.random.default_rng(0).integers(0, V, size=(2, 12)), jnp.int32)


TARGETS = {"llama": ("q", "v", "down"), "dit": ("fc_in", "fc_out", "o")}


@pytest.fixture(scope="module", params=["llama", "dit"])
def built(request):
    """One adapted and one plain model per family, jitted once for all tests."""
    m, lc = configs(request.param, TARGETS[request.param])
    apply, params = model.create(m, jax.random.key(0), transform=lora.transform(lc))
    base_apply, base = model.create(m, jax.random.key(0))
    return m, lc, jax.jit(apply), params, jax.jit(base_apply), base


def test_adapters_are_stacked_zero_b_and_start_at_the_base_model(built):
    m, lc, apply, params, base_apply, base = built
    first, second = (("attn", "q"), ("down",)) if m.family == "llama" else (("fc_in",), ("o",))
    p1 = params["blocks"]
    for k in first:
        p1 = p1[k]
    d_out = 16 if m.family == "llama" else 64
    assert p1["lora_a"].shape == (2, 32, 4)
    assert p1["lora_b"].shape[:2] == (2, 4) and p1["lora_b"].shape[-1] == d_out
    assert p1["lora_a"].dtype == jnp.float32 and float(jnp.abs(p1["lora_a"]).max()) > 0
    assert not np.any(np.asarray(p1["lora_b"]))
    assert "lora_a" not in params["blocks"]["attn"]["k"]
    _, _, axes = model.abstract(m, transform=lora.transform(lc))
    if m.family == "llama":
        assert axes["blocks"]["attn"]["q"]["lora_a"] == ("layers", "embed", "lora_rank")
        assert axes["blocks"]["down"]["lora_b"] == ("layers", "lora_rank", "embed")
    else:
        assert axes["blocks"]["fc_in"]["lora_b"] == ("layers", "lora_rank", "mlp")
    x, t = tokens(), jnp.array([0.3, 0.7])
    np.testing.assert_allclose(apply(params, x, t), base_apply(base, x, t), atol=1e-6)


def test_trainable_mask_split_combine():
    m, lc = configs()
    _, params = model.create(m, jax.random.key(0), transform=lora.transform(lc))
    mask = lora.trainable_mask(params)
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    on = sorted(jax.tree_util.keystr(p) for p, v in flat if v)
    assert len(on) == 6 and all(p.endswith(("['lora_a']", "['lora_b']")) for p in on)
    adapters, base = lora.split(params)
    assert len(jax.tree.leaves(adapters)) == 6
    assert not lora.has_adapters(base) and lora.has_adapters(params)
    back = lora.combine(adapters, base)
    assert jax.tree.structure(back) == jax.tree.structure(params)


def test_only_adapters_train_and_base_stays_bit_identical():
    m, lc = configs()
    apply, params = model.create(m, jax.random.key(0), transform=lora.transform(lc))
    x = tokens()
    adapters, base = lora.split(params)
    opt = optax.adam(1e-2)
    state = opt.init(adapters)

    @jax.jit
    def step(adapters, base, state):
        def loss(ad):
            logits = apply(lora.combine(ad, base), x)
            return -jnp.mean(jax.nn.log_softmax(logits)[..., 3])

        grads = jax.grad(loss)(adapters)
        updates, state = opt.update(grads, state, adapters)
        return optax.apply_updates(adapters, updates), state, grads

    new_adapters, state, grads = step(adapters, base, state)
    new_adapters, state, _ = step(new_adapters, base, state)
    assert float(jnp.abs(grads["blocks"]["attn"]["q"]["lora_b"]).max()) > 0
    assert len(jax.tree.leaves(state)) > 0
    assert all(leaf.shape in {a.shape for a in jax.tree.leaves(adapters)} or leaf.ndim == 0
               for leaf in jax.tree.leaves(state))  # optimizer state only for adapters
    after = lora.combine(new_adapters, base)
    for (path, old), new in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                jax.tree.leaves(after)):
        if path[-1].key in ("lora_a", "lora_b"):
            assert not np.array_equal(np.asarray(old), np.asarray(new)), path
        else:
            assert np.array_equal(np.asarray(old), np.asarray(new)), path


def test_merged_model_matches_unmerged(built):
    m, lc, apply, params, base_apply, _ = built
    rng = np.random.default_rng(2)

    def noise(v, std):
        return (std * rng.normal(size=v.shape)).astype(np.float32)

    # nonzero B; DiT's zero-initialised adaLN gates and head would hide every difference
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: (noise(v, 0.3) if p[-1].key == "lora_b" else np.asarray(v) + noise(v, 0.05)),
        params)
    merged = lora.merge(params, lc)
    assert not lora.has_adapters(merged)
    x, t = tokens(), jnp.array([0.3, 0.7])
    want = apply(params, x, t)
    np.testing.assert_allclose(base_apply(merged, x, t), want, atol=2e-4, rtol=2e-4)
    unadapted = base_apply(lora.split(params)[1], x, t)
    assert float(jnp.abs(unadapted - want).max()) > 1e-3  # the adapters matter


def test_merge_keeps_the_kernel_dtype():
    kernel = jnp.ones((3, 4), jnp.bfloat16)
    params = {"p": {"kernel": kernel, "lora_a": jnp.ones((3, 2)), "lora_b": jnp.ones((2, 4))}}
    _, lc = configs(rank=2)
    merged = lora.merge(params, lc)["p"]
    assert set(merged) == {"kernel"} and merged["kernel"].dtype == jnp.bfloat16
    np.testing.assert_allclose(merged["kernel"].astype(jnp.float32), 1 + 4.0 * 2, rtol=1e-2)


def test_bad_settings_are_clear_errors():
    m, lc = configs(rank=0)
    with pytest.raises(ValueError, match="positive rank"):
        lora.transform(lc)
    m, lc = configs(targets=("q", "query_proj"))
    with pytest.raises(ValueError, match=r"\['query_proj'\] match no projection.*'down'.*'q'"):
        model.create(m, jax.random.key(0), transform=lora.transform(lc))


def test_no_adapter_matrix_is_replicated_under_tensor_parallelism():
    """Mesh (1, 1, 8): every adapter matrix is split over 'tensor' (A by its rank where its
    input features are not split, B by its output features, or by its rank where those are
    not): no chip repeats another's adapter work. Outputs match the unsharded model."""
    from jax.sharding import PartitionSpec

    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    c = config_base.base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim, m.vocab_size = \
        "llama", 32, 2, 8, 64, V
    c.lora.rank, c.lora.alpha = 8, 16.0
    c.lora.targets = ("q", "k", "v", "o", "gate", "up", "down")
    c.mesh.shape = (1, 1, 8)
    mesh = mesh_lib.make_mesh(c.mesh)
    apply, shapes, axes = model.abstract(m, transform=lora.transform(c.lora))
    specs = sharding.param_specs(axes, shapes, c.mesh.rules, mesh)
    adapters, _ = lora.split(specs)
    flat = jax.tree_util.tree_flatten_with_path(
        adapters, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]
    assert len(flat) == 14
    for path, spec in flat:
        assert "tensor" in jax.tree.leaves(tuple(spec)), (jax.tree_util.keystr(path), spec)
    assert specs["blocks"]["attn"]["q"]["lora_a"] == PartitionSpec(None, "fsdp", "tensor")
    assert specs["blocks"]["attn"]["q"]["lora_b"] == PartitionSpec(None, None, "tensor", None)
    assert specs["blocks"]["down"]["lora_b"] == PartitionSpec(None, "tensor", "fsdp")
    _, params = model.create(m, jax.random.key(0), transform=lora.transform(c.lora))
    params = jax.tree.map(lambda p: p + 0.01, params)  # B is zero at init: make it count
    shardings = sharding.param_shardings(axes, shapes, c.mesh.rules, mesh)
    placed = jax.device_put(params, shardings)
    x = tokens()
    with jax.set_mesh(mesh), sharding.logical_rules(c.mesh.rules):
        got = jax.jit(apply)(placed, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(jax.jit(apply)(params, x)),
                               rtol=2e-5, atol=2e-5)
