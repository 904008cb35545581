"""One transformer family, switched by ``config.model``:

- ``family='dit'``: MDLM's DiT: LayerNorm (weight only), GELU MLP with biases, adaLN-zero
  modulation from a time embedding (fed zeros when ``time_conditioning`` is off, as MDLM
  does), RoPE, untied output head with bias.
- ``family='llama'``: LLaDA / Llama / Qwen2 / Dream: RMSNorm, SwiGLU, RoPE with a
  configurable theta, MHA or GQA, optional QKV bias, optional tied head, optional
  one-position logit shift (Dream).
- ``causal=True`` gives the autoregressive baselines.

Layers are stored stacked (a leading ``layers`` axis) and run either with ``lax.scan``
(``scan_layers``) or unrolled; the params pytree is the same either way.

One forward pass serves the plain logits and block-wise KV-cached decoding (Fast-dLLM's
prefix / dual caches): given a :class:`KVCache` of the whole canvas, the tokens are a
window of it at ``start``; every layer writes the window's keys and values into its
cached ones and the window attends to all of them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mdlm_jax.model.layers import (
    LayerNorm,
    Projection,
    RMSNorm,
    TimestepEmbedder,
    apply_rope,
    attention,
    constrain,
    param,
    rope_tables,
)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_of(name: str):
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(DTYPES)}")
    return DTYPES[name]


def head_dim(cfg) -> int:
    return cfg.head_dim or cfg.d_model // cfg.n_heads


def kv_heads(cfg) -> int:
    return cfg.n_kv_heads or cfg.n_heads


class Attention(nnx.Module):
    def __init__(self, cfg, *, rngs):
        d, n, m, k = cfg.d_model, cfg.n_heads, kv_heads(cfg), head_dim(cfg)
        pd = dtype_of(cfg.param_dtype)
        kw = dict(rngs=rngs, param_dtype=pd, init_std=cfg.init_std)
        self.q = Projection((d,), (n, k), ("embed",), ("heads", "head_dim"),
                            use_bias=cfg.qkv_bias, **kw)
        self.k = Projection((d,), (m, k), ("embed",), ("kv_heads", "head_dim"),
                            use_bias=cfg.qkv_bias, **kw)
        self.v = Projection((d,), (m, k), ("embed",), ("kv_heads", "head_dim"),
                            use_bias=cfg.qkv_bias, **kw)
        self.o = Projection((n, k), (d,), ("heads", "head_dim"), ("embed",),
                            use_bias=False, **kw)

    def __call__(self, x, rope, *, causal, segment_ids, impl, dtype, cache=None):
        """``(output, (keys, values))`` of the window ``x``: its own keys and values, or
        with ``cache = (K, V, start)`` the cached K/V with the window's written at ``start``
        (the window attends to all of them)."""
        cos, sin = rope
        q = apply_rope(self.q(x, dtype), cos, sin)
        k = apply_rope(self.k(x, dtype), cos, sin)
        v = self.v(x, dtype)
        q = constrain(q, ("batch", "length", "heads", "head_dim"))
        k = constrain(k, ("batch", "length", "kv_heads", "head_dim"))
        keys, values = k, v
        if cache is not None:
            cached_k, cached_v, start = cache
            keys = jax.lax.dynamic_update_slice_in_dim(cached_k, k.astype(cached_k.dtype),
                                                       start, axis=1)
            values = jax.lax.dynamic_update_slice_in_dim(cached_v, v.astype(cached_v.dtype),
                                                         start, axis=1)
            keys = constrain(keys, ("batch", "length", "kv_heads", "head_dim"))
            values = constrain(values, ("batch", "length", "kv_heads", "head_dim"))
        out = attention(q, keys, values, causal=causal, segment_ids_BxL=segment_ids,
                        implementation=impl)
        return self.o(out, dtype), (keys, values)


class Block(nnx.Module):
    def __init__(self, cfg, *, rngs):
        d, f = cfg.d_model, cfg.mlp_dim
        pd = dtype_of(cfg.param_dtype)
        kw = dict(rngs=rngs, param_dtype=pd, init_std=cfg.init_std)
        self.dit = cfg.family == "dit"
        norm = LayerNorm if self.dit else RMSNorm
        self.attn_norm = norm(d, eps=cfg.norm_eps, rngs=rngs, param_dtype=pd)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = norm(d, eps=cfg.norm_eps, rngs=rngs, param_dtype=pd)
        if self.dit:
            self.fc_in = Projection((d,), (f,), ("embed",), ("mlp",), use_bias=True, **kw)
            self.fc_out = Projection((f,), (d,), ("mlp",), ("embed",), use_bias=True, **kw)
            self.adaln = Projection((cfg.cond_dim,), (6 * d,), ("cond",), ("embed",),
                                    use_bias=True, zero_init=True, **kw)
        else:
            self.gate = Projection((d,), (f,), ("embed",), ("mlp",), use_bias=False, **kw)
            self.up = Projection((d,), (f,), ("embed",), ("mlp",), use_bias=False, **kw)
            self.down = Projection((f,), (d,), ("mlp",), ("embed",), use_bias=False, **kw)

    def __call__(self, x, cond, rope, *, causal, segment_ids, impl, dtype, cache=None):
        """``(x, (keys, values))``: the block's output and its keys / values (see
        ``Attention``)."""
        attn_kw = dict(causal=causal, segment_ids=segment_ids, impl=impl, dtype=dtype,
                       cache=cache)
        if self.dit:
            mod = self.adaln(cond, jnp.float32)[:, None, :]
            shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
            h = self.attn_norm(x, jnp.float32) * (1 + scale1) + shift1
            h, kv = self.attn(h.astype(dtype), rope, **attn_kw)
            x = x + (gate1 * h.astype(jnp.float32)).astype(x.dtype)
            h = self.mlp_norm(x, jnp.float32) * (1 + scale2) + shift2
            h = self.fc_in(h.astype(dtype), dtype)
            h = jax.nn.gelu(h, approximate=True)
            h = constrain(h, ("batch", "length", "mlp"))
            h = self.fc_out(h, dtype)
            x = x + (gate2 * h.astype(jnp.float32)).astype(x.dtype)
        else:
            h, kv = self.attn(self.attn_norm(x, dtype), rope, **attn_kw)
            x = x + h.astype(x.dtype)
            h = self.mlp_norm(x, dtype)
            h = jax.nn.silu(self.gate(h, dtype)) * self.up(h, dtype)
            h = constrain(h, ("batch", "length", "mlp"))
            x = x + self.down(h, dtype).astype(x.dtype)
        return constrain(x, ("batch", "length", "embed")), kv


class KVCache(NamedTuple):
    """Every layer's keys and values (after RoPE) over a whole canvas of ``L`` positions,
    ``keys`` / ``values`` [layers, B, L, kv heads, K], for block-wise decoding (Fast-dLLM).
    ``hidden`` [B, L, D]: the last block's output, kept for ``logit_shift`` models (Dream:
    the logit at a window's first position reads the position before it); None otherwise.
    """

    keys: jax.Array
    values: jax.Array
    hidden: jax.Array | None = None


def check_cacheable(cfg, segment_ids_BxL=None, cache=None) -> None:
    """One-line errors for a KV-cached forward the model cannot run."""
    if cfg.causal:
        raise ValueError("the KV-cached forward needs a bidirectional model (model.causal="
                         "True); decode causal models without sampler.kv_cache")
    if segment_ids_BxL is not None:
        raise ValueError("the KV-cached forward takes no segment_ids_BxL: give it canvases "
                         "of one segment (prompts of one length, no padding)")
    if cache is not None and cfg.logit_shift and cache.hidden is None:
        raise ValueError("model.logit_shift=True needs the cache's hidden states: build the "
                         "cache with the model's prefill")


def _stack_logical_axes(module: nnx.Module) -> None:
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param):
            axes = var.get_metadata().get("logical_axes")
            if axes is not None and (not axes or axes[0] != "layers"):
                var.set_metadata("logical_axes", ("layers",) + tuple(axes))


class Transformer(nnx.Module):
    def __init__(self, cfg, *, rngs):
        validate_model_config(cfg)
        self.cfg = cfg
        d, v = cfg.d_model, cfg.vocab_size
        pd = dtype_of(cfg.param_dtype)
        self.embed = param(rngs, nnx.initializers.normal(stddev=cfg.init_std), (v, d), pd,
                           ("vocab", "embed"))
        dit = cfg.family == "dit"
        if dit:
            self.time_embed = TimestepEmbedder(cfg.cond_dim, rngs=rngs, param_dtype=pd,
                                               init_std=cfg.init_std)

        @nnx.split_rngs(splits=cfg.n_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_blocks(r):
            return Block(cfg, rngs=r)

        self.blocks = make_blocks(rngs)
        _stack_logical_axes(self.blocks)
        norm = LayerNorm if dit else RMSNorm
        self.final_norm = norm(d, eps=cfg.norm_eps, rngs=rngs, param_dtype=pd)
        kw = dict(rngs=rngs, param_dtype=pd, init_std=cfg.init_std)
        if dit:
            self.final_adaln = Projection((cfg.cond_dim,), (2 * d,), ("cond",), ("embed",),
                                          use_bias=True, zero_init=True, **kw)
        if not cfg.tie_embeddings:
            self.head = Projection((d,), (v,), ("embed",), ("vocab",), use_bias=dit,
                                   zero_init=dit, **kw)

    def __call__(self, tokens_BxL, t_B=None, *, segment_ids_BxL=None, embeds_BxLxD=None,
                 cache=None, start=0):
        """Logits [B, L, V] (float32). With ``cache`` (a :class:`KVCache` of the whole
        canvas) the tokens are its window ``[start, start + L)``, and the result is
        ``(logits of the window, the cache with the window's keys and values written)``."""
        x, cond, cache = self.final_hidden(tokens_BxL, t_B, segment_ids_BxL=segment_ids_BxL,
                                           embeds_BxLxD=embeds_BxLxD, cache=cache, start=start)
        logits = self.output_logits(x, cond)
        return logits if cache is None else (logits, cache)

    def empty_cache(self, batch: int, length: int) -> KVCache:
        """A :class:`KVCache` of zeros for ``batch`` canvases of ``length`` positions."""
        cfg = self.cfg
        dtype = dtype_of(cfg.dtype)
        kv = jnp.zeros((cfg.n_layers, batch, length, kv_heads(cfg), head_dim(cfg)), dtype)
        hidden = jnp.zeros((batch, length, cfg.d_model), dtype) if cfg.logit_shift else None
        return KVCache(kv, kv, hidden)

    def final_hidden(self, tokens_BxL, t_B=None, *, segment_ids_BxL=None, embeds_BxLxD=None,
                     cache=None, start=0):
        """``(hidden_BxLxD, cond, cache)``: the last block's output, aligned with the logits
        (the Dream shift applied), the DiT's time features (None otherwise) and the updated
        ``cache`` (None without one); ``output_logits(hidden, cond)`` gives the logits, of
        any slice of positions."""
        cfg = self.cfg
        dtype = dtype_of(cfg.dtype)
        if cache is not None:
            check_cacheable(cfg, segment_ids_BxL, cache)
        if embeds_BxLxD is None:
            embeds_BxLxD = embed_tokens(self.embed[...], tokens_BxL)
        x = constrain(embeds_BxLxD.astype(dtype), ("batch", "length", "embed"))
        b, width = x.shape[0], x.shape[1]
        length = width if cache is None else cache.keys.shape[2]
        rope = rope_tables(length, head_dim(cfg), cfg.rope_theta, cfg)
        if cache is not None:  # the window's rows of the canvas' tables
            rope = tuple(jax.lax.dynamic_slice_in_dim(r, start, width, axis=0) for r in rope)
        cond = None
        if cfg.family == "dit":
            if t_B is None or not cfg.time_conditioning:
                t_B = jnp.zeros((b,), jnp.float32)
            cond = jax.nn.silu(self.time_embed(t_B, jnp.float32))
        kw = dict(causal=cfg.causal, segment_ids=segment_ids_BxL,
                  impl=cfg.attention_impl, dtype=dtype)
        graphdef, stacked = nnx.split(self.blocks)

        def layer(x, xs):  # xs: a layer's block state and its cached (K, V) or None
            block_state, kv = xs
            block_cache = None if kv is None else (*kv, start)
            x, kv = nnx.merge(graphdef, block_state)(x, cond, rope, cache=block_cache, **kw)
            return x, (None if block_cache is None else kv)

        if cfg.remat_policy != "none":
            layer = jax.checkpoint(layer, policy=remat_policy(cfg.remat_policy))
        layers_kv = None if cache is None else (cache.keys, cache.values)
        if cfg.scan_layers:
            x, layers_kv = jax.lax.scan(layer, x, (stacked, layers_kv))
        else:
            per_layer = []
            for i in range(cfg.n_layers):
                x, kv = layer(x, jax.tree.map(lambda a, i=i: a[i], (stacked, layers_kv)))
                per_layer.append(kv)
            if cache is not None:
                layers_kv = jax.tree.map(lambda *a: jnp.stack(a), *per_layer)
        if cache is not None:
            names = ("layers", "batch", "length", "kv_heads", "head_dim")
            hidden = cache.hidden
            if cfg.logit_shift:
                hidden = constrain(jax.lax.dynamic_update_slice_in_dim(
                    hidden, x.astype(hidden.dtype), start, axis=1), ("batch", "length", "embed"))
            cache = KVCache(*(constrain(a, names) for a in layers_kv), hidden)
        if cfg.logit_shift:  # position i reads the hidden state of i - 1 (0 keeps its own)
            before = x[:, :1] if cache is None else jax.lax.dynamic_slice_in_dim(
                cache.hidden, jnp.maximum(start - 1, 0), 1, axis=1).astype(x.dtype)
            x = jnp.concatenate([before, x[:, :-1]], axis=1)
        return x, cond, cache

    def output_logits(self, x, cond=None):
        """The final norm (adaLN-modulated for the DiT) and the output head: float32."""
        dtype = dtype_of(self.cfg.dtype)
        if self.cfg.family == "dit":
            shift, scale = jnp.split(self.final_adaln(cond, jnp.float32)[:, None, :], 2, -1)
            h = (self.final_norm(x, jnp.float32) * (1 + scale) + shift).astype(dtype)
        else:
            h = self.final_norm(x, dtype)
        if self.cfg.tie_embeddings:
            logits = jnp.einsum("bld,vd->blv", h, self.embed[...].astype(dtype))
        else:
            logits = self.head(h, dtype)
        return constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))


def embed_tokens(table_VxD, tokens_BxL):
    return jnp.take(table_VxD, tokens_BxL, axis=0)


def remat_policies() -> tuple[str, ...]:
    """``model.remat_policy`` values: none, full (save nothing) and every ready-made policy
    of ``jax.checkpoint_policies`` (its ``save_*`` / ``offload_*`` factories need args)."""
    ready = sorted(n for n in dir(jax.checkpoint_policies)
                   if not n.startswith(("_", "save_", "offload_")))
    return ("none", "full", *ready)


def remat_policy(name: str):
    """The ``jax.checkpoint`` policy of ``model.remat_policy`` (None for 'none' / 'full')."""
    if name not in remat_policies():
        raise ValueError(f"model.remat_policy={name!r} is unknown; use one of "
                         f"{', '.join(remat_policies())}")
    return None if name in ("none", "full") else getattr(jax.checkpoint_policies, name)


def validate_model_config(cfg) -> None:
    from mdlm_jax.model.layers import ATTENTION_IMPLS, ROPE_SCALINGS

    if cfg.family not in ("dit", "llama"):
        raise ValueError(f"model.family={cfg.family!r} is unknown; use 'dit' or 'llama'")
    for key in ("vocab_size", "d_model", "n_layers", "n_heads", "mlp_dim", "max_length",
                "cond_dim", "rope_theta", "norm_eps", "rope_scaling_factor",
                "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_max_length"):
        if not cfg[key] > 0 or cfg[key] == float("inf"):
            raise ValueError(f"model.{key}={cfg[key]} must be a finite number > 0")
    for key in ("n_kv_heads", "head_dim", "init_std"):
        if not cfg[key] >= 0:
            raise ValueError(f"model.{key}={cfg[key]} must be >= 0 (0: the default)")
    if cfg.attention_impl not in ATTENTION_IMPLS:
        raise ValueError(f"model.attention_impl={cfg.attention_impl!r} is unknown; use one "
                         f"of {', '.join(ATTENTION_IMPLS)}")
    if cfg.rope_scaling not in ROPE_SCALINGS:
        raise ValueError(f"model.rope_scaling={cfg.rope_scaling!r} is unknown; use one of "
                         f"{', '.join(ROPE_SCALINGS)}")
    remat_policy(cfg.remat_policy)
    if cfg.n_heads <= 0 or (cfg.head_dim == 0 and cfg.d_model % cfg.n_heads):
        raise ValueError(f"model.d_model={cfg.d_model} is not divisible by model.n_heads="
                         f"{cfg.n_heads}; set model.head_dim explicitly or change one of them")
    if cfg.n_heads % kv_heads(cfg):
        raise ValueError(f"model.n_heads={cfg.n_heads} is not a multiple of "
                         f"model.n_kv_heads={cfg.n_kv_heads}")
    if head_dim(cfg) % 2:
        raise ValueError(f"head dim {head_dim(cfg)} must be even for RoPE")
    if cfg.family == "dit" and cfg.tie_embeddings:
        raise ValueError("model.tie_embeddings is not supported by the DiT family")
    dtype_of(cfg.dtype)
    dtype_of(cfg.param_dtype)
