"""The pure train step: gradient accumulation on a sharded mesh."""

import jax
import numpy as np
import optax

from mdlm_jax import train_state
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding
from mdlm_jax.param_trees import flatten


def test_accumulated_micro_batches_give_the_full_batch_gradient_on_a_sharded_mesh():
    """Two micro-batches of 8 accumulated equal one batch of 16 (2x2x2 mesh).

    The AR loss draws no noise and every row has the same number of scored tokens, so the
    mean of the micro-batch losses is the full batch's loss; plain SGD with rate 1 makes
    the parameter change the gradient itself."""
    from conftest import make_tiny_config

    cfg = make_tiny_config(model__causal=True, loss__terms={"ar_nll": 1.0},
                           optimizer__ema_decay=0.0)
    cfg.mesh.shape = (2, 2, 2)
    plan = train_state.TrainPlan(cfg, mesh_lib.make_mesh(cfg.mesh, jax.devices()))
    rng = np.random.default_rng(0)
    params_np = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.05).astype(s.dtype),
                             plan.trainable_shapes)
    tokens = rng.integers(0, 256, size=(16, 32)).astype(np.int32)
    tx = optax.sgd(1.0)
    step = jax.jit(lambda state, batch: train_state.train_step(
        state, batch, None, jax.random.key(3), apply=plan.apply, tx=tx, config=cfg))

    results = {}
    with jax.set_mesh(plan.mesh), sharding.logical_rules(cfg.mesh.rules):
        for accum in (1, 2):
            params = jax.device_put(params_np, plan.trainable_shardings)
            state = {"step": np.int32(0), "params": params, "opt_state": tx.init(params),
                     "ema": None}
            batch = {"tokens": tokens.reshape(accum, 16 // accum, 32)}
            batch = jax.device_put(batch, plan.batch_sharding)
            assert batch["tokens"].sharding.spec == plan.batch_sharding.spec
            new_state, metrics = step(state, batch)
            grads = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), params_np,
                                 jax.device_get(new_state["params"]))
            results[accum] = (grads, jax.device_get(metrics))

    (g1, m1), (g2, m2) = results[1], results[2]
    np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-5)
    np.testing.assert_allclose(m2["grad_norm"], m1["grad_norm"], rtol=1e-4)
    assert m1["grad_norm"] > 1e-3  # a real gradient was compared
    flat2 = flatten(g2)
    for path, a in flatten(g1).items():
        np.testing.assert_allclose(flat2[path], a, rtol=1e-4, atol=1e-6,
                                   err_msg=f"grad/{path} differs")
