"""The forward (noising) process: time sampling and independent masking."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_times(rng, batch_size: int, *, eps: float = 1e-3, antithetic: bool = True):
    """t_B in [eps, 1]: low-discrepancy ``t_i = (u + i / B) mod 1`` when ``antithetic``."""
    if antithetic:
        u = jax.random.uniform(rng, ())
        t = jnp.mod(u + jnp.arange(batch_size, dtype=jnp.float32) / batch_size, 1.0)
    else:
        t = jax.random.uniform(rng, (batch_size,))
    return (1.0 - eps) * t + eps


def mask_tokens(rng, x0_BxL, mask_prob_B, mask_id: int, maskable_BxL=None):
    """Replace each maskable token by ``mask_id`` with probability ``mask_prob_B``.

    Returns ``(xt_BxL, masked_BxL)``. Positions outside ``maskable_BxL`` (padding,
    prompt tokens of SFT batches) are never masked.
    """
    u = jax.random.uniform(rng, x0_BxL.shape)
    masked = u < jnp.asarray(mask_prob_B)[:, None]
    if maskable_BxL is not None:
        masked = masked & maskable_BxL
    return jnp.where(masked, mask_id, x0_BxL), masked
