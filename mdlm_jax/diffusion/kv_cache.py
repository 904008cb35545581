"""Block-wise KV cache for the ``confidence`` / ``threshold`` samplers (Fast-dLLM).

At the start of each block the full model runs once and every layer's keys and values
(after RoPE) are kept. Within the block only a window of positions is recomputed, its
queries attending to the cached keys/values with the window's own rows refreshed:

- ``prefix``: the window is ``[block_start, L)`` (block and suffix recomputed, prefix
  cached);
- ``dual``: the window is the current block only (prefix and suffix cached).

The model itself does the work: the params are bound to the NNX module
(``model.bind``), each stacked block runs with the window and its layer's cache
(``Block(..., cache=(K, V, start))``), and ``Transformer.output_logits`` gives the logits.
Only the ``llama`` family (LLaDA-style: bidirectional, no logit shift) is supported.
"""

from __future__ import annotations

import jax
from flax import nnx

from mdlm_jax import model as model_lib
from mdlm_jax.model.layers import rope_tables
from mdlm_jax.model.transformer import dtype_of, embed_tokens, head_dim

MODES = ("prefix", "dual")


def check_model_config(model_cfg, mode: str) -> None:
    """One-line errors for a cache mode or a model the cache cannot serve."""
    if mode not in MODES:
        raise ValueError(f"sampler.kv_cache={mode!r} is unknown; use one of {MODES}")
    if model_cfg.family != "llama" or model_cfg.causal or model_cfg.logit_shift:
        raise ValueError(
            f"sampler.kv_cache={mode!r} supports the bidirectional llama family without "
            f"logit shift only (model.family={model_cfg.family!r}, causal="
            f"{model_cfg.causal}, logit_shift={model_cfg.logit_shift}); set "
            "--config.sampler.kv_cache=none")


class BlockCache:
    def __init__(self, model_cfg, mode: str, block_length: int):
        if model_cfg is None:
            raise ValueError("sampler.kv_cache needs the model config: pass model_cfg= to "
                             "the sampler (or set --config.sampler.kv_cache=none)")
        check_model_config(model_cfg, mode)
        self.cfg = model_cfg
        self.mode = mode
        self.block_length = block_length
        module = nnx.eval_shape(lambda: model_lib.build(model_cfg))
        self.graphdef, self.abstract_state = nnx.split(module, nnx.Param)
        self.dtype = dtype_of(model_cfg.dtype)

    # ------------------------------------------------------------------ internals
    def _module(self, params):
        return model_lib.bind(self.graphdef, self.abstract_state, params)

    def _layers(self, module, x, cos, sin, caches, start):
        """All layers over a window ``x`` [B, W, D]; returns (x, (K, V) per layer)."""
        dtype, impl = self.dtype, self.cfg.attention_impl
        graphdef, stacked = nnx.split(module.blocks)

        def layer(x, xs):
            block_state, cache = xs
            block = nnx.merge(graphdef, block_state)
            return block(x, None, (cos, sin), causal=False, segment_ids=None, impl=impl,
                         dtype=dtype, cache=None if cache is None else (*cache, start))

        return jax.lax.scan(layer, x, (stacked, caches))

    # -------------------------------------------------------------------- public
    def full(self, params, tokens_BxL):
        """Full forward: ``(logits_BxLxV, (K, V))`` with K/V [layers, B, L, heads, dim]."""
        module = self._module(params)
        length = tokens_BxL.shape[1]
        cos, sin = rope_tables(length, head_dim(self.cfg), self.cfg.rope_theta, self.cfg)
        x = embed_tokens(module.embed[...], tokens_BxL).astype(self.dtype)
        x, kv = self._layers(module, x, cos, sin, None, 0)
        return module.output_logits(x), kv

    def window(self, params, tokens_BxL, cache, prev_logits_BxLxV, block_start):
        """Logits with the window recomputed against the cache (rows outside: stale)."""
        module = self._module(params)
        length = tokens_BxL.shape[1]
        if self.mode == "prefix":
            if not isinstance(block_start, int):
                raise ValueError("kv_cache='prefix' needs a static block start")
            start, width = block_start, length - block_start
        else:
            start, width = block_start, self.block_length
        cos, sin = rope_tables(length, head_dim(self.cfg), self.cfg.rope_theta, self.cfg)
        cos = jax.lax.dynamic_slice_in_dim(cos, start, width, axis=0)
        sin = jax.lax.dynamic_slice_in_dim(sin, start, width, axis=0)
        ids = jax.lax.dynamic_slice_in_dim(tokens_BxL, start, width, axis=1)
        x = embed_tokens(module.embed[...], ids).astype(self.dtype)
        x, _ = self._layers(module, x, cos, sin, cache, start)
        logits = module.output_logits(x)
        return jax.lax.dynamic_update_slice_in_dim(prev_logits_BxLxV, logits, start, axis=1)
