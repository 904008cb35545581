"""The SUBS parameterization shared by the loss and the sampler.

The model never predicts the mask token (its logit is suppressed) and unmasked tokens are
carried over unchanged: at a position that is not masked the distribution is a point
mass on the observed token.

Samplers may instead keep the mask token in the softmax, as the published LLaDA
``generate`` and Fast-dLLM samplers do (their argmax may even pick the mask token, which
then stays masked): ``sampler.mask_in_softmax`` chooses, and
:func:`resolve_mask_in_softmax` is the one place that turns the setting into a decision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -1e9
MASK_IN_SOFTMAX = ("auto", "keep", "drop")
# Families of published weights whose own samplers keep the mask token in the softmax.
KEEP_MASK_FAMILIES = ("llada", "dream")


def resolve_mask_in_softmax(config) -> bool:
    """True: keep the mask token in the softmax before the argmax and the confidence.

    ``sampler.mask_in_softmax``: ``keep`` | ``drop`` | ``auto``. ``auto`` follows the
    model family: keep for published LLaDA / Dream weights (``model.imported_from``, set
    when the weights come from a HF directory, directly or through ``convert``), drop for
    models trained by this project with SUBS (which never predict the mask token).
    """
    choice = config.sampler.mask_in_softmax
    if choice not in MASK_IN_SOFTMAX:
        raise ValueError(f"sampler.mask_in_softmax={choice!r} is unknown; use one of "
                         f"{MASK_IN_SOFTMAX}")
    if choice != "auto":
        return choice == "keep"
    return config.model.imported_from in KEEP_MASK_FAMILIES


def suppress_mask(logits_BxLxV, mask_id: int):
    """Logits with the mask token's logit set to -inf (a large negative number)."""
    logits = logits_BxLxV.astype(jnp.float32)
    if mask_id < logits.shape[-1]:
        logits = logits.at[..., mask_id].set(NEG_INF)
    return logits


def clean_log_probs(logits_BxLxV, mask_id: int):
    """log p_theta(x0 | xt) at every position, the mask token excluded (float32)."""
    return jax.nn.log_softmax(suppress_mask(logits_BxLxV, mask_id), axis=-1)


def subs_log_probs(logits_BxLxV, xt_BxL, mask_id: int):
    """SUBS: clean log probs at masked positions, a point mass on xt elsewhere."""
    logp = clean_log_probs(logits_BxLxV, mask_id)
    onehot = jax.nn.one_hot(xt_BxL, logp.shape[-1], dtype=jnp.bool_)
    carried = jnp.where(onehot, 0.0, NEG_INF)
    is_masked = (xt_BxL == mask_id)[..., None]
    return jnp.where(is_masked, logp, carried)
