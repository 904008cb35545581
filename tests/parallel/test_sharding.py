"""Meshes, logical-axis rules, sharded init and the 1-device vs 8-device equality of a step."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mdlm_jax import train
from mdlm_jax.config_base import DEFAULT_RULES
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding
from mdlm_jax.param_trees import flatten
from mdlm_jax.train_state import TrainPlan


def test_eight_fake_devices():
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"


def setup_for(cfg, shape):
    cfg.mesh.shape = shape
    n = int(np.prod(shape))
    return TrainPlan(cfg, mesh_lib.make_mesh(cfg.mesh, jax.devices()[:n]))


def random_params(shapes, seed=0, std=0.05):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.normal(size=s.shape) * std).astype(s.dtype), shapes)


@pytest.fixture(scope="module")
def one_step_results():
    """The same train step (same params, batch and key) on 1 device and on 2x2x2."""
    from conftest import make_tiny_config

    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 256, size=(1, 8, 32)).astype(np.int32)  # [accum, B, L]
    batch_np = {"tokens": tokens, "valid": np.ones_like(tokens, bool)}
    params_np = None
    out = {}
    for shape in [(1, 1, 1), (2, 2, 2)]:
        # optimizer.eps 1e-6: Adam divides by sqrt(v) + eps, which turns round-off in a
        # near-zero gradient (a vocabulary row no token uses) into a visible update
        cfg = make_tiny_config(optimizer__warmup_steps=0, optimizer__eps=1e-6,
                               model__time_conditioning=True)
        setup = setup_for(cfg, shape)
        if params_np is None:
            params_np = random_params(setup.trainable_shapes)
        params = jax.device_put(params_np, setup.trainable_shardings)
        state = setup.init_state(params)
        batch = jax.device_put(batch_np, setup.batch_sharding)
        step = setup.jit_train_step()
        with jax.set_mesh(setup.mesh), sharding.logical_rules(cfg.mesh.rules):
            state, metrics = step(state, batch, None, jax.random.key(7))
            state, metrics2 = step(state, batch, None, jax.random.key(7))
        out[shape] = (jax.device_get(state), jax.device_get(metrics),
                      jax.device_get(metrics2), setup)
    return params_np, out


def test_one_step_on_one_device_equals_eight_device_mesh(one_step_results):
    params0, out = one_step_results
    (s1, m1, m1b, _), (s8, m8, m8b, setup8) = out[(1, 1, 1)], out[(2, 2, 2)]
    assert dict(zip(setup8.mesh.axis_names, setup8.mesh.devices.shape)) == {
        "data": 2, "fsdp": 2, "tensor": 2}
    for m_a, m_b in [(m1, m8), (m1b, m8b)]:
        assert np.isfinite(m_a["loss"])
        np.testing.assert_allclose(m_b["loss"], m_a["loss"], rtol=1e-5)
        np.testing.assert_allclose(m_b["grad_norm"], m_a["grad_norm"], rtol=1e-4)
    assert int(s1["step"]) == int(s8["step"]) == 2
    moved = 0
    flat8, flat0 = flatten(s8["params"]), flatten(params0)
    for path, a in flatten(s1["params"]).items():
        b, init = flat8[path], flat0[path]
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6, err_msg=f"params/{path} differ")
        moved += int(not np.allclose(a, init))
    assert moved > 10, "the step left the parameters (almost) unchanged: nothing was compared"


def test_state_is_sharded_as_configured(one_step_results):
    _, out = one_step_results
    setup8 = out[(2, 2, 2)][3]
    q = setup8.state_shardings["params"]["blocks"]["attn"]["q"]["kernel"]
    assert q.spec == P(None, "fsdp", "tensor", None)


def test_parameters_are_created_sharded():
    from conftest import make_tiny_config

    cfg = make_tiny_config()
    setup8 = setup_for(cfg, (2, 2, 2))
    params = setup8.random_params(jax.random.key(0))
    for leaf in jax.tree.leaves(params):
        assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.mesh == setup8.mesh
    q = params["blocks"]["attn"]["q"]["kernel"]  # (layers, embed, heads, head_dim)
    assert q.sharding.spec == P(None, "fsdp", "tensor", None)
    assert q.shape == (2, 32, 2, 16)
    assert {s.data.shape for s in q.addressable_shards} == {(2, 16, 1, 16)}
    emb = params["embed"]  # (vocab, embed)
    assert emb.sharding.spec == P("tensor", "fsdp")
    up = params["blocks"]["fc_in"]["kernel"]  # (layers, embed, mlp)
    assert up.sharding.spec == P(None, "fsdp", "tensor")
    # the sharded init draws the same numbers as the single-device one
    setup1 = setup_for(make_tiny_config(), (1, 1, 1))
    single = jax.device_get(setup1.random_params(jax.random.key(0)))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(jax.device_get(params))):
        np.testing.assert_array_equal(a, b)


def test_logical_rules_use_each_mesh_axis_once():
    axes = ("data", "fsdp", "tensor")
    assert sharding.logical_to_spec(("batch", "length", "embed"), DEFAULT_RULES, axes) == P(
        ("data", "fsdp"), None, None)
    assert sharding.logical_to_spec(("embed", "mlp"), DEFAULT_RULES, axes) == P("fsdp", "tensor")
    assert sharding.logical_to_spec(("heads", "mlp"), DEFAULT_RULES, axes) == P("tensor", None)
    assert sharding.logical_to_spec(("embed",), DEFAULT_RULES, ("data",)) == P(None)


def test_indivisible_dims_stay_replicated():
    mesh = mesh_lib.make_mesh(_mesh_cfg((2, 2, 2)))
    shapes = {"w": jax.ShapeDtypeStruct((257, 32), np.float32)}
    specs = sharding.param_specs({"w": ("vocab", "embed")}, shapes, DEFAULT_RULES, mesh)
    assert specs["w"] == P(None, "fsdp")


def _mesh_cfg(shape):
    from mdlm_jax.config_base import base_config

    c = base_config().mesh
    c.shape = shape
    return c


@pytest.mark.parametrize("shape,match", [
    ((3, 1, 1), "8"),
    ((-1, 3, 1), "divisible"),
    ((-1, -1, 1), "more than one -1"),
    ((8, 1), r"must have 3 entries, the sizes of the mesh axes \('data', 'fsdp', 'tensor'\)"),
])
def test_mesh_shape_not_matching_devices_is_a_clear_error(shape, match):
    with pytest.raises(ValueError, match=match):
        mesh_lib.make_mesh(_mesh_cfg(shape))


def test_minus_one_takes_the_remaining_devices():
    mesh = mesh_lib.make_mesh(_mesh_cfg((-1, 2, 1)))
    assert mesh.devices.shape == (4, 2, 1)
    assert mesh_lib.data_parallel_size(mesh) == 8


def test_global_batch_not_divisible_by_data_parallel_size(tiny_config, tmp_path):
    mesh = mesh_lib.make_mesh(_mesh_cfg((4, 1, 2)))
    with pytest.raises(ValueError, match="data-parallel size 4"):
        mesh_lib.check_batch(6, mesh)
    mesh_lib.check_batch(8, mesh)
    with pytest.raises(ValueError, match="global_batch_size=12 is not divisible"):
        train.run(tiny_config(data__global_batch_size=12), str(tmp_path / "w"))
    assert not (tmp_path / "w" / "checkpoints").exists()
