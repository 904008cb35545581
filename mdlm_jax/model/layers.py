"""Building blocks of the transformer family: projections, norms, RoPE, attention.

Every parameter carries ``logical_axes`` metadata (names from the README's legend); the
mesh rules in ``config.mesh.rules`` map them onto mesh axes (see ``parallel.sharding``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mdlm_jax.parallel.sharding import constrain


def param(rngs: nnx.Rngs, init, shape, dtype, axes) -> nnx.Param:
    return nnx.Param(init(rngs.params(), shape, dtype), logical_axes=tuple(axes))


def over_leading(w, ndim: int):
    """``w`` (the trailing feature dims of an array of rank ``ndim``) with size-1 leading
    dims, so it broadcasts explicitly (the tests run with ``jax_numpy_rank_promotion``
    set to raise)."""
    return jnp.reshape(w, (1,) * (ndim - w.ndim) + w.shape)


class Projection(nnx.Module):
    """A linear map ``x[..., *in] @ W[*in, *out] (+ b[*out])`` via einsum.

    ``in_axes``/``out_axes`` are the logical names of the input and output feature dims.
    An optional low-rank adapter (LoRA) adds ``scale * (x @ A) @ B``; see ``model.lora``.
    """

    def __init__(self, in_shape, out_shape, in_axes, out_axes, *, use_bias, rngs,
                 param_dtype=jnp.float32, init_std=0.02, zero_init=False):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        init = (nnx.initializers.zeros if zero_init
                else nnx.initializers.normal(stddev=init_std))
        self.kernel = param(rngs, init, self.in_shape + self.out_shape, param_dtype,
                            tuple(in_axes) + tuple(out_axes))
        self.bias = (param(rngs, nnx.initializers.zeros, self.out_shape, param_dtype,
                           out_axes) if use_bias else None)
        self.lora_a = None
        self.lora_b = None
        self.lora_scale = 0.0

    def __call__(self, x, dtype):
        n_in = len(self.in_shape)
        letters = "abcdefgh"
        xin = letters[:n_in]
        out = "pqrs"[: len(self.out_shape)]
        spec = f"...{xin},{xin}{out}->...{out}"
        y = jnp.einsum(spec, x.astype(dtype), self.kernel[...].astype(dtype))
        if self.lora_a is not None:
            a = self.lora_a[...].astype(dtype)  # [*in, r]
            b = self.lora_b[...].astype(dtype)  # [r, *out]
            h = jnp.einsum(f"...{xin},{xin}z->...z", x.astype(dtype), a)
            y = y + self.lora_scale * jnp.einsum(f"...z,z{out}->...{out}", h, b)
        if self.bias is not None:
            y = y + over_leading(self.bias[...].astype(dtype), y.ndim)
        return y


class RMSNorm(nnx.Module):
    def __init__(self, dim, *, eps, rngs, param_dtype=jnp.float32):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones, (dim,), param_dtype, ("embed",))

    def __call__(self, x, dtype):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * over_leading(self.scale[...].astype(jnp.float32), y.ndim)).astype(dtype)


class LayerNorm(nnx.Module):
    """MDLM's LayerNorm: float32 statistics, a weight and no bias."""

    def __init__(self, dim, *, eps, rngs, param_dtype=jnp.float32):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones, (dim,), param_dtype, ("embed",))

    def __call__(self, x, dtype):
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * over_leading(self.scale[...].astype(jnp.float32), y.ndim)).astype(dtype)


ROPE_SCALINGS = ("none", "llama3")


def rope_tables(length: int, head_dim: int, theta: float, scaling=None):
    """cos/sin tables [L, K] of rotary embeddings, half-split (GPT-NeoX / Llama) layout.

    ``scaling``: None, or a model config whose ``rope_scaling == 'llama3'`` selects
    Llama-3.1's rescaling of the low frequencies (factor, low/high frequency factors and
    the original context length).
    """
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if scaling is not None and scaling.rope_scaling == "llama3":
        inv_freq = llama3_inv_freq(inv_freq, scaling)
    elif scaling is not None and scaling.rope_scaling != "none":
        raise ValueError(f"model.rope_scaling={scaling.rope_scaling!r}; use one of "
                         f"{ROPE_SCALINGS}")
    pos = jnp.arange(length, dtype=jnp.float32)
    freqs = jnp.outer(pos, inv_freq)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def llama3_inv_freq(inv_freq, cfg):
    """Llama-3.1: long wavelengths divided by the factor, short ones kept, a smooth blend
    between (the published ``rope_type='llama3'`` rule)."""
    factor, low, high = cfg.rope_scaling_factor, cfg.rope_low_freq_factor, \
        cfg.rope_high_freq_factor
    old_len = cfg.rope_original_max_length
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return jnp.where(medium, blended, scaled)


def apply_rope(x_BxLxNxK, cos_LxK, sin_LxK):
    x32 = x_BxLxNxK.astype(jnp.float32)
    half = x32.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    cos = cos_LxK[None, :, None, :]
    sin = sin_LxK[None, :, None, :]
    return (x32 * cos + rotated * sin).astype(x_BxLxNxK.dtype)


# model.attention_impl: jax.nn.dot_product_attention's implementation ('auto': JAX picks)
ATTENTION_IMPLS = ("auto", "xla", "cudnn")


def attention(q_BxLxNxK, k_BxLxMxK, v_BxLxMxK, *, causal, segment_ids_BxL, implementation):
    """``jax.nn.dot_product_attention`` with segment masking for packed sequences."""
    mask = None
    if segment_ids_BxL is not None:
        same = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
        mask = same[:, None, :, :]
    impl = resolve_attention(implementation, jax.default_backend(), q_BxLxNxK.dtype)
    if impl == "splash" and splash_supported(q_BxLxNxK.shape[1], k_BxLxMxK.shape[1]):
        return splash_attention(q_BxLxNxK, k_BxLxMxK, v_BxLxMxK, causal=causal,
                                segment_ids_BxL=segment_ids_BxL)
    if impl == "splash":
        impl = "xla"  # lengths the kernel's blocks do not tile (e.g. KV-cached windows)
    return jax.nn.dot_product_attention(
        q_BxLxNxK, k_BxLxMxK, v_BxLxMxK, mask=mask, is_causal=causal, implementation=impl
    )


ATTENTION_IMPLS = ("auto", "xla", "cudnn", "splash")
SPLASH_BLOCK = 512  # the splash kernel's tile along the sequence (smaller for short ones)
TIME_FREQ_DIM = 256  # sinusoidal features of the DiT's time embedding


def resolve_attention(implementation: str, platform: str, dtype=None) -> str:
    """``model.attention_impl`` for a platform: ``auto`` is cuDNN's fused kernel on a GPU
    (16-bit compute; cuDNN has no float32 kernel), the Pallas splash kernel on a TPU and
    XLA's attention on CPU; an explicit choice is kept. ``platform`` '' keeps ``auto`` for
    the platform the model runs on."""
    if implementation not in ATTENTION_IMPLS:
        raise ValueError(f"model.attention_impl={implementation!r} is unknown; use one of "
                         f"{ATTENTION_IMPLS}")
    if implementation != "auto" or not platform:
        return implementation
    if platform == "gpu" and (dtype is None or jnp.dtype(dtype).itemsize == 2):
        return "cudnn"
    return "splash" if platform == "tpu" else "xla"


def splash_supported(q_len: int, kv_len: int) -> bool:
    return q_len == kv_len and q_len % 128 == 0


def splash_attention(q_BxLxNxK, k_BxLxMxK, v_BxLxMxK, *, causal, segment_ids_BxL,
                     interpret: bool = False):
    """Pallas splash (flash) attention from ``jax.experimental.pallas.ops.tpu``: the score
    matrix is never materialised. Under a mesh the kernel runs per shard (``shard_map``:
    batch over the data axes, heads over ``tensor``). ``interpret`` runs it on any backend
    (tests on CPU). GQA repeats the key/value heads."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as splash,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as masks,
    )

    b, length, n, k = q_BxLxNxK.shape
    m = k_BxLxMxK.shape[2]
    q = jnp.swapaxes(q_BxLxNxK * (1.0 / math.sqrt(k)), 1, 2).astype(q_BxLxNxK.dtype)
    kk = jnp.swapaxes(jnp.repeat(k_BxLxMxK, n // m, axis=2), 1, 2)
    vv = jnp.swapaxes(jnp.repeat(v_BxLxMxK, n // m, axis=2), 1, 2)
    seg = (jnp.zeros((b, length), jnp.int32) if segment_ids_BxL is None
           else segment_ids_BxL.astype(jnp.int32))
    block = min(SPLASH_BLOCK, length)
    while length % block:
        block //= 2
    sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                              block_q_dkv=block, block_kv_dkv=block,
                              block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)

    def local(q, kk, vv, seg):
        heads = q.shape[1]
        one = masks.CausalMask((length, length)) if causal else masks.FullMask((length, length))
        kernel = splash.make_splash_mha(masks.MultiHeadMask([one] * heads), head_shards=1,
                                        q_seq_shards=1, block_sizes=sizes,
                                        interpret=interpret)
        return jax.vmap(lambda q1, k1, v1, s1: kernel(
            q1, k1, v1, segment_ids=splash.SegmentIds(q=s1, kv=s1)))(q, kk, vv, seg)

    out = _per_shard(local, q, kk, vv, seg)
    return jnp.swapaxes(out, 1, 2)


def _per_shard(fn, q_BxNxLxK, k_BxNxLxK, v_BxNxLxK, seg_BxL):
    """``fn`` under ``shard_map`` over the context mesh (batch over data/fsdp, heads over
    tensor, as far as they divide), or directly without a mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return fn(q_BxNxLxK, k_BxNxLxK, v_BxNxLxK, seg_BxL)
    from jax.sharding import PartitionSpec as P

    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    b, n = q_BxNxLxK.shape[:2]
    batch = tuple(a for a in ("data", "fsdp") if a in sizes)
    if b % math.prod(sizes[a] for a in batch):
        batch = ()
    heads = "tensor" if "tensor" in sizes and n % sizes["tensor"] == 0 else None
    bspec = batch or None
    qkv = P(bspec, heads, None, None)
    return jax.shard_map(fn, mesh=mesh, in_specs=(qkv, qkv, qkv, P(bspec, None)),
                         out_specs=qkv, check_vma=False)(q_BxNxLxK, k_BxNxLxK, v_BxNxLxK,
                                                        seg_BxL)


class TimestepEmbedder(nnx.Module):
    """MDLM's ``sigma_map``: sinusoidal features of the noise level, then an MLP."""

    def __init__(self, cond_dim, *, rngs, param_dtype, init_std, freq_dim=TIME_FREQ_DIM):
        self.freq_dim = freq_dim
        self.mlp_in = Projection((freq_dim,), (cond_dim,), ("cond",), ("cond",),
                                 use_bias=True, rngs=rngs, param_dtype=param_dtype,
                                 init_std=init_std)
        self.mlp_out = Projection((cond_dim,), (cond_dim,), ("cond",), ("cond",),
                                  use_bias=True, rngs=rngs, param_dtype=param_dtype,
                                  init_std=init_std)

    def __call__(self, t_B, dtype):
        half = self.freq_dim // 2
        freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
        args = t_B.astype(jnp.float32)[:, None] * freqs[None]
        emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
        h = jax.nn.silu(self.mlp_in(emb, jnp.float32))
        return self.mlp_out(h, jnp.float32).astype(dtype)


__all__ = ["Projection", "RMSNorm", "LayerNorm", "rope_tables", "apply_rope", "attention",
           "resolve_attention", "splash_attention",
           "TimestepEmbedder", "constrain", "param"]
