"""Tiny models saved as workdirs and a tiny suite config for the context tests.

Not a conftest.py: the root conftest module name is taken, so the tests import these
fixtures by name.
"""

from __future__ import annotations

import jax
import pytest

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model as model_lib
from mdlm_jax.config_base import base_config
from mdlm_jax.parallel import mesh as mesh_lib


def tiny_model_config(causal: bool = False):
    """A LLaDA-like (or causal) char-level model: 2 layers, width 32."""
    c = base_config()
    c.model.update(family="llama", d_model=32, n_layers=2, n_heads=2, mlp_dim=64,
                   max_length=512, causal=causal, init_std=0.3)
    if causal:
        c.loss.terms = {"ar_nll": 1.0}
    return c


def suite_config(model_path: str, experiment: str = "extra_masks", **context):
    c = base_config()
    c.context.update(
        model_path=model_path, experiment=experiment, relevant_tasks=("animal",),
        distractor_tasks=("smallest", "largest"), points=2, n_relevant=1, n_distractors=2,
        positions=(0, 2), locations=("left", "right"), mask_counts=(0, 3),
        locality_mask_counts=(2,), distractor_counts=(0, 2), order_seeds=2,
        attribution_points=1, attribution_masks=4, decode_steps=4, sensitivity_counts=(0, 4),
        sensitivity_points=2, length_multiple=64, dtype="float32", progress_bar=False)
    c.context.update(context)
    return c


@pytest.fixture(scope="session")
def mdlm_workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("ctx_mdlm") / "model")
    c = tiny_model_config()
    _, params = model_lib.create(c.model, jax.random.key(1))
    ckpt.save_params(wd, params, c)
    return wd


@pytest.fixture(scope="session")
def ar_workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("ctx_ar") / "model")
    c = tiny_model_config(causal=True)
    _, params = model_lib.create(c.model, jax.random.key(2))
    ckpt.save_params(wd, params, c)
    return wd


@pytest.fixture(scope="session")
def one_device_mesh():
    return mesh_lib.make_mesh(base_config().mesh, devices=jax.devices()[:1])
