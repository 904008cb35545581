"""Scoring at the answer slot: one greedy decoding step, as the paper does.

The one code path for MDLMs and AR models: ``apply`` gives the logits of position ``i``
(diffusion families, Dream's shift handled by the model) or of position ``i + 1`` (causal
models), so the answer slot is read at ``slot`` or at ``slot - 1``. At that position:

- ``pred``: the greedy decoded token over the full vocabulary (the headline accuracy is
  ``pred == correct letter``, the paper's string match on one token);
- ``letter_probs`` [B, 3]: p(A), p(B), p(C) under the same softmax (the restricted choice
  is their argmax, p(correct) one of them).

For a diffusion model the mask token takes part in the softmax only when
``keep_mask`` (``diffusion.parameterization.resolve_mask_in_softmax(config)``); otherwise
its logit is suppressed exactly as the sampler does (SUBS). The model is called with
``t_B=None``, as the sampler's ``confidence`` strategy calls it, so the prediction equals
the sampler's first step on the same canvas. Rows are padded on the right with segment id
0 (real tokens: 1): padding is hidden from attention, so a row's scores do not depend on
the batch it shares.

:func:`attribution` is the L2 norm over the model width of the gradient of the predicted
answer's logit with respect to the input embeddings (``apply``'s ``embeds_BxLxD``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mdlm_jax.diffusion import parameterization
from mdlm_jax.model import embed_tokens


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
    """What the scorer needs besides params and tokens (hashable: a static argument)."""

    letter_ids: tuple[int, int, int]
    mask_id: int
    keep_mask: bool = False
    causal: bool = False


def read_positions(slot_B, spec: ScoreSpec):
    return slot_B - 1 if spec.causal else slot_B


def answer_logits(apply, params, tokens_BxL, segment_ids_BxL, slot_B, spec: ScoreSpec, *,
                  embeds_BxLxD=None):
    """Raw float32 logits [B, V] that predict the answer slot."""
    logits = apply(params, tokens_BxL, None, segment_ids_BxL=segment_ids_BxL,
                   embeds_BxLxD=embeds_BxLxD)
    read = read_positions(slot_B, spec)
    return jnp.take_along_axis(logits, read[:, None, None], axis=1)[:, 0].astype(jnp.float32)


def answer_log_probs(logits_BxV, spec: ScoreSpec):
    """log-softmax over the vocabulary; the mask suppressed unless kept (or causal)."""
    if not spec.causal and not spec.keep_mask:
        logits_BxV = parameterization.suppress_mask(logits_BxV, spec.mask_id)
    return jax.nn.log_softmax(logits_BxV, axis=-1)


def score(apply, params, tokens_BxL, segment_ids_BxL, slot_B, spec: ScoreSpec) -> dict:
    """``{'pred': int32[B], 'letter_probs': float32[B, 3]}`` (see the module docstring)."""
    logp = answer_log_probs(
        answer_logits(apply, params, tokens_BxL, segment_ids_BxL, slot_B, spec), spec)
    letters = jnp.asarray(spec.letter_ids, jnp.int32)
    return {"pred": jnp.argmax(logp, axis=-1).astype(jnp.int32),
            "letter_probs": jnp.exp(logp[:, letters])}


def attribution(apply, params, tokens_BxL, segment_ids_BxL, slot_B, spec: ScoreSpec) -> dict:
    """``{'pred': int32[B], 'grad_norm': float32[B, L]}``: |d logit_pred / d embeds| per
    position (L2 over D), the logit of the greedy prediction at the answer slot."""
    embeds = embed_tokens(params["embed"], tokens_BxL)
    logp = answer_log_probs(
        answer_logits(apply, params, tokens_BxL, segment_ids_BxL, slot_B, spec), spec)
    pred = jnp.argmax(logp, axis=-1)

    def picked_logit(e):
        logits = answer_logits(apply, params, tokens_BxL, segment_ids_BxL, slot_B, spec,
                               embeds_BxLxD=e)
        return jnp.sum(jnp.take_along_axis(logits, pred[:, None], axis=1))

    grad = jax.grad(picked_logit)(embeds.astype(jnp.float32))
    norm = jnp.sqrt(jnp.sum(jnp.square(grad.astype(jnp.float32)), axis=-1))
    return {"pred": pred.astype(jnp.int32), "grad_norm": jnp.where(segment_ids_BxL > 0, norm, 0)}


def make_fn(fn, apply, spec: ScoreSpec, *, mesh=None, param_shardings=None, rules=None):
    """``f(params, tokens_BxL, segment_ids_BxL, slot_B) -> dict`` jitted; batch-sharded
    over the data axes and params in ``param_shardings`` when ``mesh`` is given.
    ``f.lower(...)`` lowers it ahead of time for abstract arguments (``mdlm_jax.aot``)."""
    def f(params, tokens, seg, slot):
        return fn(apply, params, tokens, seg, slot, spec)

    if mesh is None:
        return jax.jit(f)
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    batch = mesh_lib.batch_sharding(mesh)
    jitted = sharding.jit_on_mesh(f, mesh, in_shardings=(param_shardings, batch, batch, batch),
                                  out_shardings=batch, rules=rules)

    def call(params, tokens, seg, slot):
        mesh_lib.check_batch(tokens.shape[0], mesh, "context.batch_size")
        return jitted(params, tokens, seg, slot)

    call.lower = jitted.lower
    return call


def make_decode_fn(apply, settings, *, gen_start: int, mesh=None, param_shardings=None,
                   rules=None):
    """The sampler on left-padded canvases (experiment 7): ``f(params, canvas_BxL,
    segment_ids_BxL, rng) -> tokens_BxL``; the generation region starts at ``gen_start``."""
    from mdlm_jax.diffusion import sampler

    def f(params, canvas, seg, rng):
        def seg_apply(p, x, t=None, **kw):
            return apply(p, x, t, segment_ids_BxL=seg)

        return sampler.generate(seg_apply, params, canvas, rng, settings,
                                gen_start=gen_start)["tokens"]

    if mesh is None:
        return jax.jit(f)
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    batch = mesh_lib.batch_sharding(mesh)
    jitted = sharding.jit_on_mesh(
        f, mesh, in_shardings=(param_shardings, batch, batch, mesh_lib.replicated(mesh)),
        out_shardings=batch, rules=rules)

    def call(params, canvas, seg, rng):
        mesh_lib.check_batch(canvas.shape[0], mesh, "context.batch_size")
        return jitted(params, canvas, seg, rng)

    call.lower = jitted.lower
    return call


__all__ = ["ScoreSpec", "answer_log_probs", "answer_logits", "attribution", "make_decode_fn",
           "make_fn", "read_positions", "score"]
