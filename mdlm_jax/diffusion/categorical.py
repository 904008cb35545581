"""Categorical sampling shared by the sampler strategies.

Noise: LLaDA draws ``u ~ U(0, 1)`` in float64 and scores ``exp(l) / (-log u)^T``, i.e.
``argmax(l + T * g)`` with Gumbel noise ``g = -log(-log u)``. Float32 uniforms are
multiples of 2^-24, which truncates both Gumbel tails (``g`` in [-2.8, 16.6] instead of
float64's [-3.6, 36.7]) and lowers diversity. :func:`gumbel_noise` builds ``u`` from 53
random bits (two uint32 words) and computes ``-log u`` from ``u`` when ``u < 1/2`` and as
``-log1p(-(1 - u))`` from the exactly formed complement otherwise, so every one of the
2^53 grid points of float64's uniform gives its own exponential variate with float32's
relative precision: the same support and tails as the float64 reference, without
turning on x64.

``s`` is a ``sampler.Settings`` (temperature, top_k, top_p, mask_id, remasking, eos_id).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mdlm_jax.diffusion import parameterization


def gumbel_noise(key, shape):
    """Gumbel noise with float64's uniform resolution (53 bits), computed in float32."""
    return gumbel_from_bits(jax.random.bits(key, tuple(shape) + (2,), jnp.uint32))


def gumbel_from_bits(bits):
    """Gumbel variates from uint32 pairs [..., 2] (53 bits used), see the module doc."""
    hi = bits[..., 0] >> 5  # 27 bits
    lo = bits[..., 1] >> 6  # 26 bits: m = hi * 2^26 + lo, u = (m + 1/2) / 2^53
    hi_c = jnp.uint32(2**27 - 1) - hi
    lo_c = jnp.uint32(2**26 - 1) - lo
    f32 = jnp.float32
    u = hi.astype(f32) * f32(2.0**-27) + (lo.astype(f32) + 0.5) * f32(2.0**-53)
    w = hi_c.astype(f32) * f32(2.0**-27) + (lo_c.astype(f32) + 0.5) * f32(2.0**-53)
    exp_var = jnp.where(u < 0.5, -jnp.log(u), -jnp.log1p(-w))  # -log u, both tails exact
    return -jnp.log(exp_var)


def filter_logits(logits_BxLxV, s):
    """Mask logit suppressed (SUBS) unless ``s.mask_in_softmax``, then top-k and top-p
    (on softmax(l / T)); float32."""
    if s.mask_in_softmax:
        logits = logits_BxLxV.astype(jnp.float32)
    else:
        logits = parameterization.suppress_mask(logits_BxLxV, s.mask_id)
    neg = parameterization.NEG_INF
    if s.top_k > 0 and s.top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, s.top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if s.top_p < 1.0:
        scaled = logits / s.temperature if s.temperature > 0 else logits
        sorted_l = jnp.sort(scaled, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_l, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each token
        keep_sorted = before < s.top_p  # the most likely token is always kept
        cutoff = jnp.min(jnp.where(keep_sorted, sorted_l, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(scaled < cutoff, neg, logits)
    return logits


def sample_x0(logits_BxLxV, key, s):
    """LLaDA's ``add_gumbel_noise`` + argmax: a draw from softmax(l / T); T = 0 greedy."""
    if s.temperature == 0:
        return jnp.argmax(logits_BxLxV, axis=-1).astype(jnp.int32)
    g = gumbel_noise(key, logits_BxLxV.shape)
    return jnp.argmax(logits_BxLxV + s.temperature * g, axis=-1).astype(jnp.int32)


def confidence(logits_BxLxV, x0_BxL, key, s):
    """Remasking score of each prediction (higher commits first); EOS ranked last.

    ``logits_BxLxV`` come from :func:`filter_logits`: the mask token is already in or out
    of the softmax as ``s.mask_in_softmax`` says."""
    if s.remasking == "low_confidence":
        logp = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
        conf = jnp.exp(jnp.take_along_axis(logp, x0_BxL[..., None], axis=-1)[..., 0])
    else:
        conf = jax.random.uniform(key, x0_BxL.shape)
    if s.suppress_eos_confidence and s.eos_id >= 0:
        conf = jnp.where(x0_BxL == s.eos_id, conf - 2.0, conf)  # below every other token
    return conf
