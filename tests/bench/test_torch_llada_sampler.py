"""mdlm_jax's confidence / threshold samplers reproduce the published loops' tokens.

``bench/torch_llada_sampler.py`` restates LLaDA's ``generate`` and Fast-dLLM's uncached
threshold loop in PyTorch over the same weights. At temperature 0 the tokens must be
equal: with the mask token kept in the softmax (``sampler.mask_in_softmax='keep'``, the
published code) and with it dropped (``'drop'``, SUBS, against ``suppress_mask=True``).
The head is biased towards the mask token so that keeping it changes the tokens.
"""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax import model as model_lib
from mdlm_jax.config_base import base_config
from mdlm_jax.diffusion import sampler

torch = pytest.importorskip("torch", reason="torch is not installed: pip install -e '.[test]'")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V, MASK = 48, 47


def _tls():
    spec = importlib.util.spec_from_file_location(
        "torch_llada_sampler", os.path.join(ROOT, "bench", "torch_llada_sampler.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("torch_llada_sampler", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup():
    c = base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = "llama", 32, 2, 4, 64
    m.vocab_size, m.max_length = V, 64
    c.diffusion.mask_id = MASK
    c.sampler.gen_length, c.sampler.block_length, c.sampler.steps = 16, 8, 16
    c.sampler.temperature = 0.0
    apply, shapes, _ = model_lib.abstract(c.model)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(np.float32), shapes)
    head = params["head"]["kernel"]
    head[:, MASK] = 4.0 * head[:, :4].mean(-1)  # the mask wins some argmaxes
    params = jax.tree.map(jnp.asarray, params)
    return c, apply, params


@pytest.mark.parametrize("strategy", ["confidence", "threshold"])
@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_tokens_equal_the_published_loop_at_temperature_zero(setup, strategy, mode):
    tls = _tls()
    c, apply, params = setup
    c = c.copy_and_resolve_references()
    c.sampler.mask_in_softmax = mode
    s = sampler.Settings.from_config(c, strategy=strategy, threshold=0.3)
    prompt = np.random.default_rng(1).integers(0, MASK, size=(3, 6))
    canvas, start = sampler.build_canvas([0] * 6, s, 3)
    canvas = canvas.at[:, :6].set(jnp.asarray(prompt, jnp.int32))
    out = jax.device_get(sampler.make_sample_fn(apply, s, gen_start=start)(
        params, canvas, jax.random.key(0)))
    tmodel = tls.TorchLlama.from_jax(jax.device_get(params), c.model)
    ref, calls = tls.generate(
        tmodel, torch.from_numpy(prompt).long(), steps=s.steps, gen_length=s.gen_length,
        block_length=s.block_length, mask_id=MASK, suppress_mask=mode == "drop",
        threshold=s.threshold if strategy == "threshold" else None)
    np.testing.assert_array_equal(np.asarray(out["tokens"]), ref.numpy())
    assert sampler.reference_model_calls(out, s) == calls
    left = int(np.sum(ref.numpy()[:, start:] == MASK))
    if mode == "keep":  # the published loops commit masks (they stay masked)
        assert left > 0, "the mask bias should make the kept mask win some argmaxes"
    if mode == "drop":
        assert left == 0
