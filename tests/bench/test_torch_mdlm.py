"""The PyTorch MDLM of the benchmark implements the same model as the JAX DiT."""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax import model as model_lib
from mdlm_jax.config_base import base_config

torch = pytest.importorskip("torch", reason="torch is not installed: pip install -e '.[test]'")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _torch_mdlm():
    spec = importlib.util.spec_from_file_location(
        "torch_mdlm", os.path.join(ROOT, "bench", "torch_mdlm.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("torch_mdlm", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _tiny_model_config(time_conditioning: bool):
    c = base_config()
    m = c.model
    m.family, m.vocab_size, m.d_model, m.n_layers = "dit", 61, 32, 2
    m.n_heads, m.mlp_dim, m.cond_dim, m.max_length = 4, 64, 16, 32
    m.time_conditioning = time_conditioning
    m.dtype = m.param_dtype = "float32"
    m.scan_layers = True
    return m


def test_jax_params_in_torch_give_the_same_logits():
    tm = _torch_mdlm()
    mcfg = _tiny_model_config(time_conditioning=True)
    apply, shapes, _ = model_lib.abstract(mcfg)
    # Random values for every parameter (the initializer zeroes the adaLN layers and the
    # head), so that all paths (modulation, gates, time embedding, head bias) carry signal.
    rng = np.random.default_rng(0)

    def draw(path, s):
        noise = rng.normal(0.0, 0.1, s.shape).astype(np.float32)
        return noise + 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else noise

    params = jax.tree_util.tree_map_with_path(draw, shapes)
    tokens = jax.random.randint(jax.random.key(2), (3, 24), 0, mcfg.vocab_size)
    cfg = tm.DiTConfig(vocab_size=mcfg.vocab_size, d_model=mcfg.d_model,
                       n_layers=mcfg.n_layers, n_heads=mcfg.n_heads, mlp_dim=mcfg.mlp_dim,
                       cond_dim=mcfg.cond_dim, mask_id=mcfg.vocab_size - 1,
                       time_conditioning=True)
    model = tm.DIT(cfg).eval()
    tm.load_jax_params(model, jax.device_get(params))
    jit_apply = jax.jit(apply)
    # t = 0 is also what both models feed the time embedding without time conditioning.
    for t in ([0.1, 0.5, 0.9], [0.0, 0.0, 0.0]):
        want = np.asarray(jit_apply(params, tokens, jnp.array(t, jnp.float32)))
        with torch.no_grad():
            got = model(torch.tensor(np.asarray(tokens), dtype=torch.long),
                        torch.tensor(t)).numpy()
        assert np.abs(want).max() > 0.1, "logits too small for the comparison to mean anything"
        np.testing.assert_allclose(
            got, want, atol=1e-4, rtol=1e-4,
            err_msg=f"torch DIT and the JAX DiT disagree on the same params (t={t})")


def test_torch_train_step_lowers_the_loss_on_a_repeated_batch():
    tm = _torch_mdlm()
    torch.manual_seed(0)
    cfg = tm.DiTConfig(vocab_size=61, d_model=32, n_layers=2, n_heads=4, mlp_dim=64,
                       cond_dim=16, mask_id=60)
    trainer = tm.Trainer(tm.DIT(cfg), lr=1e-2, ema_decay=0.99)
    x0 = torch.randint(0, cfg.mask_id, (4, 32))
    losses = []
    for _ in range(8):
        torch.manual_seed(1)  # the same times and masks every step: a fixed objective
        losses.append(float(trainer.step(x0)))
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.8 * losses[0], f"loss did not go down: {losses}"
    assert trainer.ema is not None
    assert not torch.equal(trainer.ema[0], trainer.params[0]), "EMA did not move"
