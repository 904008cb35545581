"""The model family and the pure ``apply`` contract.

    apply(params, tokens_BxL, t_B=None, *, segment_ids_BxL=None, embeds_BxLxD=None)
        -> logits_BxLxV (float32)

``params`` is a plain nested dict of arrays (``nnx.to_pure_dict`` of the module's
``nnx.Param`` state). Nothing outside this package needs the module itself.

Next to ``apply``, the same forward pass with a block-wise KV cache (Fast-dLLM's prefix /
dual caches), ``apply.cached``::

    prefill(params, tokens_BxL, t_B=None) -> (logits_BxLxV, cache)
    window(params, tokens_BxW, cache, start, t_B=None) -> logits_BxWxV

``prefill`` is ``apply`` that also keeps every layer's keys and values (a ``KVCache``);
``window`` runs the ``W`` tokens at positions ``[start, start + W)`` of the canvas, their
queries attending to the cached keys / values with the window's own rows refreshed. With a
cache of the same canvas its logits are ``apply``'s on those positions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
from flax import nnx

from mdlm_jax.model.transformer import (
    KVCache,
    Transformer,
    embed_tokens,
    head_dim,
    kv_heads,
)

Apply = Callable[..., jax.Array]


class CachedForward(NamedTuple):
    """The model's KV-cached entry points (``apply.cached``; see the module docstring)."""

    prefill: Callable  # (params, tokens_BxL, t_B=None) -> (logits_BxLxV, KVCache)
    window: Callable  # (params, tokens_BxW, cache, start, t_B=None) -> logits_BxWxV


def build(model_cfg, key=None, *, transform=None) -> nnx.Module:
    """The NNX module; ``transform(module)`` may edit it (e.g. add LoRA adapters)."""
    key = jax.random.key(0) if key is None else key
    module = Transformer(model_cfg, rngs=nnx.Rngs(params=key))
    if transform is not None:
        transform(module)
    return module


def bind(graphdef, abstract_state, params) -> nnx.Module:
    """The module of ``graphdef`` holding the plain-dict ``params``."""
    state = jax.tree.map(lambda v: v, abstract_state)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def make_apply(graphdef, abstract_state) -> Apply:
    """The pure ``apply``; ``apply.hidden`` is the same network stopped before the head::

        hidden_BxLxD, head = apply.hidden(params, tokens_BxL, t_B, ...)
        head(hidden_BxCxD) -> logits_BxCxV (float32), for any slice of C positions

    so a loss can project to the vocabulary a chunk of positions at a time
    (``diffusion.losses.token_scores``); ``apply.cached`` is the same network with a
    block-wise KV cache (:class:`CachedForward`)."""

    def apply(params, tokens_BxL, t_B=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
        module = bind(graphdef, abstract_state, params)
        return module(tokens_BxL, t_B, segment_ids_BxL=segment_ids_BxL,
                      embeds_BxLxD=embeds_BxLxD)

    def hidden(params, tokens_BxL, t_B=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
        module = bind(graphdef, abstract_state, params)
        h, cond, _ = module.final_hidden(tokens_BxL, t_B, segment_ids_BxL=segment_ids_BxL,
                                         embeds_BxLxD=embeds_BxLxD)
        return h, lambda h_BxCxD: module.output_logits(h_BxCxD, cond)

    def prefill(params, tokens_BxL, t_B=None):
        module = bind(graphdef, abstract_state, params)
        return module(tokens_BxL, t_B, cache=module.empty_cache(*tokens_BxL.shape), start=0)

    def window(params, tokens_BxW, cache, start, t_B=None):
        module = bind(graphdef, abstract_state, params)
        return module(tokens_BxW, t_B, cache=cache, start=start)[0]

    apply.hidden = hidden
    apply.cached = CachedForward(prefill, window)
    return apply


def _split(module):
    graphdef, state = nnx.split(module, nnx.Param)
    return graphdef, state


def abstract(model_cfg, *, transform=None):
    """``(apply, params_shapes, logical_axes)`` without allocating any parameter."""
    module = nnx.eval_shape(lambda: build(model_cfg, transform=transform))
    graphdef, state = _split(module)
    axes = logical_axes_of(state)
    shapes = nnx.to_pure_dict(state)
    return make_apply(graphdef, state), shapes, axes


def create(model_cfg, key, *, transform=None):
    """``(apply, params)`` with freshly initialised, unsharded parameters."""
    module = build(model_cfg, key, transform=transform)
    graphdef, state = _split(module)
    abstract_state = jax.tree.map(
        lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), state)
    return make_apply(graphdef, abstract_state), nnx.to_pure_dict(state)


def init_fn(model_cfg, *, transform=None):
    """A pure ``key -> params`` function (for ``jax.jit(..., out_shardings=...)``)."""

    def init(key):
        module = build(model_cfg, key, transform=transform)
        return nnx.to_pure_dict(_split(module)[1])

    return init


def logical_axes_of(state) -> dict:
    """The ``logical_axes`` metadata of each parameter, as a pytree of tuples."""

    def axes(var):
        names = var.get_metadata().get("logical_axes")
        if names is None:
            return (None,) * len(var.shape)
        return tuple(names)

    tree = jax.tree.map(axes, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.to_pure_dict(tree) if not isinstance(tree, dict) else tree


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


__all__ = ["Apply", "CachedForward", "KVCache", "Transformer", "abstract", "bind", "build",
           "count_params", "create", "embed_tokens", "head_dim", "init_fn",
           "kv_heads", "logical_axes_of", "make_apply"]
