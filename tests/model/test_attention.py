"""Attention implementations: the Pallas splash kernel (interpret mode on CPU) equals XLA's
attention; ``auto`` resolves per platform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax.config_base import base_config
from mdlm_jax.model import layers
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding


def qkv(b=2, length=128, n=4, m=2, k=32):
    keys = jax.random.split(jax.random.key(0), 3)
    return (jax.random.normal(keys[0], (b, length, n, k)),
            jax.random.normal(keys[1], (b, length, m, k)),
            jax.random.normal(keys[2], (b, length, m, k)))


def xla(q, k, v, causal, seg):
    return layers.attention(q, k, v, causal=causal, segment_ids_BxL=seg, implementation="xla")


def test_splash_equals_xla_causal_with_gradients():
    q, k, v = qkv()

    def loss(fn, q):
        return jnp.sum(fn(q) * jnp.cos(jnp.arange(q.shape[-1]))[None, None, None, :])

    splash = lambda q: layers.splash_attention(q, k, v, causal=True, segment_ids_BxL=None,
                                               interpret=True)
    plain = lambda q: xla(q, k, v, True, None)
    np.testing.assert_allclose(np.asarray(splash(q)), np.asarray(plain(q)), atol=2e-5)
    g1 = jax.grad(lambda q: loss(splash, q))(q)
    g2 = jax.grad(lambda q: loss(plain, q))(q)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), atol=1e-4)


def test_splash_equals_xla_with_segments_under_a_mesh():
    """Packed segments and GQA, run per shard: batch over data, heads over tensor."""
    q, k, v = qkv()
    seg = jnp.concatenate([jnp.zeros((2, 50), jnp.int32), jnp.ones((2, 78), jnp.int32)], 1)
    c = base_config()
    c.mesh.shape = (2, 1, 4)
    mesh = mesh_lib.make_mesh(c.mesh)
    with jax.set_mesh(mesh), sharding.logical_rules(c.mesh.rules):
        got = jax.jit(lambda q, k, v, s: layers.splash_attention(
            q, k, v, causal=False, segment_ids_BxL=s, interpret=True))(q, k, v, seg)
    np.testing.assert_allclose(np.asarray(got), np.asarray(xla(q, k, v, False, seg)),
                               atol=2e-5)


@pytest.mark.parametrize("platform,dtype,want", [
    ("gpu", jnp.bfloat16, "cudnn"), ("gpu", jnp.float32, "xla"), ("tpu", jnp.bfloat16, "splash"),
    ("cpu", jnp.bfloat16, "xla")])
def test_auto_resolves_per_platform(platform, dtype, want):
    assert layers.resolve_attention("auto", platform, dtype) == want
    assert layers.resolve_attention("xla", platform, dtype) == "xla"


def test_unknown_attention_is_a_clear_error():
    with pytest.raises(ValueError, match="attention_impl='flash2' is unknown"):
        layers.resolve_attention("flash2", "cpu")
