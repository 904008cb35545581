"""Classifier-free guidance as a wrapper of the model contract (LLaDA's unsupervised CFG).

    guided = guidance.guided(apply, scale=0.5, mask_id=m, prompt_end=q)
    logits = guided(params, tokens_BxL, t_B)   # same contract as ``apply``

The unconditional pass sees the same tokens with the prompt (positions
``[prompt_start, prompt_end)``) replaced by mask tokens; the guided logits are
``uncond + (scale + 1) * (cond - uncond)`` (LLaDA, appendix B.3). Both passes run as one
batch of 2B rows. Anything that takes ``apply`` (the likelihood estimator, the sampler's
uncached strategies) takes the wrapped function unchanged. ``scale = 0`` returns
``apply`` itself, so no second pass is paid for when guidance is off.
"""

from __future__ import annotations

import jax.numpy as jnp


def guided(apply, *, scale: float, mask_id: int, prompt_end, prompt_start=0):
    """``apply`` with classifier-free guidance of strength ``scale`` (>= 0).

    ``prompt_end`` / ``prompt_start``: ints or int arrays [B] (per row, e.g. left padding
    before the prompt). Segment ids and time are passed to both passes unchanged.
    """
    if scale < 0:
        raise ValueError(f"classifier-free guidance scale {scale} must be >= 0 (0: off)")
    if scale == 0:
        return apply

    def fn(params, tokens_BxL, t_B=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
        if embeds_BxLxD is not None:
            raise ValueError("classifier-free guidance needs token inputs (the unconditional "
                             "pass masks the prompt tokens); got embeds_BxLxD")
        b, length = tokens_BxL.shape
        pos = jnp.arange(length)[None, :]
        start = jnp.reshape(jnp.asarray(prompt_start), (-1, 1))
        end = jnp.reshape(jnp.asarray(prompt_end), (-1, 1))
        prompt = (pos >= start) & (pos < end)
        uncond = jnp.where(prompt, mask_id, tokens_BxL).astype(tokens_BxL.dtype)
        both = jnp.concatenate([tokens_BxL, uncond])
        t2 = None if t_B is None else jnp.concatenate([t_B, t_B])
        seg2 = (None if segment_ids_BxL is None
                else jnp.concatenate([segment_ids_BxL, segment_ids_BxL]))
        logits = apply(params, both, t2, segment_ids_BxL=seg2).astype(jnp.float32)
        cond, unc = logits[:b], logits[b:]
        return unc + (scale + 1.0) * (cond - unc)

    return fn
