"""Per-family tables between Hugging Face checkpoints and this model's config and params.

Each family has three things, all data rather than string munging:

- a reader ``config.json -> model fields`` (and the special token ids),
- a writer ``model config -> config.json`` (used by export),
- a tensor table: rows ``(HF name, param path(s), op)``. ``{i}`` in a name is the layer
  index and its params live in ``blocks`` with a leading layer axis. Rows whose params the
  model does not have (a bias when ``qkv_bias`` is off, the head when it is tied) drop out.

Ops convert one HF tensor (PyTorch ``Linear`` weights are ``[out, in]``) into per-layer
param slices (our kernels are ``[*in, *out]``) as numpy *views* where possible, so a
shard of a memory-mapped tensor can be read without copying the whole tensor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mdlm_jax.data.tokenizers import MASK_TOKEN_NAMES  # noqa: F401  (names of mask tokens)

FAMILIES = ("llada", "dream", "llama", "qwen2", "mdlm")
DIFFUSION_FAMILIES = ("llada", "dream", "mdlm")
LLADA_MASK_ID = 126336


# ------------------------------------------------------------------------- ops
@dataclasses.dataclass(frozen=True)
class Same:
    """The tensor is the param (embeddings, norm weights)."""

    def hf_shape(self, shapes):
        return tuple(shapes[0])

    def to_ours(self, w, shapes):
        return [w]

    def to_hf(self, arrays, shapes):
        return arrays[0]


@dataclasses.dataclass(frozen=True)
class Linear:
    """``[prod(out), prod(in)]`` <-> kernel ``[*in, *out]``; ``n_in`` leading dims are input."""

    n_in: int = 1

    def hf_shape(self, shapes):
        s = shapes[0]
        return (math.prod(s[self.n_in:]), math.prod(s[: self.n_in]))

    def to_ours(self, w, shapes):
        return [w.T.reshape(shapes[0])]

    def to_hf(self, arrays, shapes):
        k = arrays[0]
        return k.reshape(math.prod(k.shape[: self.n_in]), -1).T


@dataclasses.dataclass(frozen=True)
class Bias:
    """``[prod(shape)]`` <-> ``shape`` (q/k/v biases are ``[heads, head_dim]``)."""

    def hf_shape(self, shapes):
        return (math.prod(shapes[0]),)

    def to_ours(self, w, shapes):
        return [w.reshape(shapes[0])]

    def to_hf(self, arrays, shapes):
        return arrays[0].reshape(-1)


@dataclasses.dataclass(frozen=True)
class FusedLinear:
    """MDLM's ``attn_qkv``: ``[(three h d), D]`` <-> three kernels ``[D, h, d]``."""

    def hf_shape(self, shapes):
        return (sum(math.prod(s[1:]) for s in shapes), shapes[0][0])

    def to_ours(self, w, shapes):
        d_in = shapes[0][0]
        t = w.T.reshape((d_in, len(shapes)) + tuple(shapes[0][1:]))
        return [t[:, j] for j in range(len(shapes))]

    def to_hf(self, arrays, shapes):
        return np.stack(arrays, axis=1).reshape(arrays[0].shape[0], -1).T


SAME, LINEAR, BIAS = Same(), Linear(1), Bias()


@dataclasses.dataclass(frozen=True)
class Row:
    hf: str
    ours: tuple[str, ...]
    op: object

    @property
    def stacked(self) -> bool:
        return "{i}" in self.hf


def _rows(*specs):
    return tuple(Row(hf, (ours,) if isinstance(ours, str) else tuple(ours), op)
                 for hf, ours, op in specs)


def _qkv(prefix, q, k, v):
    out = []
    for name, ours in ((q, "q"), (k, "k"), (v, "v")):
        out.append((f"{prefix}{name}.weight", f"blocks/attn/{ours}/kernel", LINEAR))
        out.append((f"{prefix}{name}.bias", f"blocks/attn/{ours}/bias", BIAS))
    return out


_QWEN_LAYER = "model.layers.{i}."
LLAMA_TABLE = _rows(
    ("model.embed_tokens.weight", "embed", SAME),
    (_QWEN_LAYER + "input_layernorm.weight", "blocks/attn_norm/scale", SAME),
    *_qkv(_QWEN_LAYER + "self_attn.", "q_proj", "k_proj", "v_proj"),
    (_QWEN_LAYER + "self_attn.o_proj.weight", "blocks/attn/o/kernel", Linear(2)),
    (_QWEN_LAYER + "post_attention_layernorm.weight", "blocks/mlp_norm/scale", SAME),
    (_QWEN_LAYER + "mlp.gate_proj.weight", "blocks/gate/kernel", LINEAR),
    (_QWEN_LAYER + "mlp.up_proj.weight", "blocks/up/kernel", LINEAR),
    (_QWEN_LAYER + "mlp.down_proj.weight", "blocks/down/kernel", LINEAR),
    ("model.norm.weight", "final_norm/scale", SAME),
    ("lm_head.weight", "head/kernel", LINEAR),
)

_LLADA = "model.transformer."
_LLADA_LAYER = _LLADA + "blocks.{i}."
LLADA_TABLE = _rows(
    (_LLADA + "wte.weight", "embed", SAME),
    (_LLADA_LAYER + "attn_norm.weight", "blocks/attn_norm/scale", SAME),
    *_qkv(_LLADA_LAYER, "q_proj", "k_proj", "v_proj"),
    (_LLADA_LAYER + "attn_out.weight", "blocks/attn/o/kernel", Linear(2)),
    (_LLADA_LAYER + "ff_norm.weight", "blocks/mlp_norm/scale", SAME),
    (_LLADA_LAYER + "ff_proj.weight", "blocks/gate/kernel", LINEAR),
    (_LLADA_LAYER + "up_proj.weight", "blocks/up/kernel", LINEAR),
    (_LLADA_LAYER + "ff_out.weight", "blocks/down/kernel", LINEAR),
    (_LLADA + "ln_f.weight", "final_norm/scale", SAME),
    (_LLADA + "ff_out.weight", "head/kernel", LINEAR),
)

_MDLM = "backbone."
_MDLM_LAYER = _MDLM + "blocks.{i}."
MDLM_TABLE = _rows(
    (_MDLM + "vocab_embed.embedding", "embed", SAME),
    (_MDLM + "sigma_map.mlp.0.weight", "time_embed/mlp_in/kernel", LINEAR),
    (_MDLM + "sigma_map.mlp.0.bias", "time_embed/mlp_in/bias", SAME),
    (_MDLM + "sigma_map.mlp.2.weight", "time_embed/mlp_out/kernel", LINEAR),
    (_MDLM + "sigma_map.mlp.2.bias", "time_embed/mlp_out/bias", SAME),
    (_MDLM_LAYER + "norm1.weight", "blocks/attn_norm/scale", SAME),
    (_MDLM_LAYER + "attn_qkv.weight",
     ("blocks/attn/q/kernel", "blocks/attn/k/kernel", "blocks/attn/v/kernel"), FusedLinear()),
    (_MDLM_LAYER + "attn_out.weight", "blocks/attn/o/kernel", Linear(2)),
    (_MDLM_LAYER + "norm2.weight", "blocks/mlp_norm/scale", SAME),
    (_MDLM_LAYER + "mlp.0.weight", "blocks/fc_in/kernel", LINEAR),
    (_MDLM_LAYER + "mlp.0.bias", "blocks/fc_in/bias", SAME),
    (_MDLM_LAYER + "mlp.2.weight", "blocks/fc_out/kernel", LINEAR),
    (_MDLM_LAYER + "mlp.2.bias", "blocks/fc_out/bias", SAME),
    (_MDLM_LAYER + "adaLN_modulation.weight", "blocks/adaln/kernel", LINEAR),
    (_MDLM_LAYER + "adaLN_modulation.bias", "blocks/adaln/bias", SAME),
    (_MDLM + "output_layer.norm_final.weight", "final_norm/scale", SAME),
    (_MDLM + "output_layer.linear.weight", "head/kernel", LINEAR),
    (_MDLM + "output_layer.linear.bias", "head/bias", SAME),
    (_MDLM + "output_layer.adaLN_modulation.weight", "final_adaln/kernel", LINEAR),
    (_MDLM + "output_layer.adaLN_modulation.bias", "final_adaln/bias", SAME),
)

TABLES = {"llada": LLADA_TABLE, "dream": LLAMA_TABLE, "llama": LLAMA_TABLE,
          "qwen2": LLAMA_TABLE, "mdlm": MDLM_TABLE}
# Non-parameter buffers some checkpoints carry; skipped on import, never written.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
HEAD_NAMES = {"llada": _LLADA + "ff_out.weight", "dream": "lm_head.weight",
              "llama": "lm_head.weight", "qwen2": "lm_head.weight", "mdlm": None}


def rows_for(family: str, param_paths) -> tuple[Row, ...]:
    """The family's rows whose params all exist in the model."""
    have = set(param_paths)
    return tuple(r for r in TABLES[family] if all(p in have for p in r.ours))


# ------------------------------------------------------------------- families
def detect_family(hf_cfg: dict, where: str) -> str:
    mt = str(hf_cfg.get("model_type", "")).lower()
    archs = " ".join(hf_cfg.get("architectures") or []).lower()
    for fam in FAMILIES:
        if mt == fam or (not mt and fam in archs):
            return fam
    if mt.startswith("llada") or "llada" in archs:
        return "llada"
    raise ValueError(f"{where}: unknown model family (model_type={hf_cfg.get('model_type')!r}, "
                     f"architectures={hf_cfg.get('architectures')}); supported: "
                     f"{', '.join(FAMILIES)}")


def _rope_kind(c: dict) -> tuple[str, dict]:
    params = c.get("rope_parameters") or {}
    scaling = c.get("rope_scaling") or {}
    source = params if (params.get("rope_type") or params.get("type")) else scaling
    kind = source.get("rope_type") or source.get("type") or "default"
    return kind, source


def _rope_theta(c: dict, default: float, *, allow_llama3: bool = False) -> float:
    kind, _ = _rope_kind(c)
    if kind not in ("default",) + (("llama3",) if allow_llama3 else ()):
        raise ValueError(f"RoPE scaling {kind!r} is not supported by the model (plain RoPE "
                         "with a theta, or Llama-3.1's 'llama3' rescaling)")
    params = c.get("rope_parameters") or {}
    return float(params.get("rope_theta", c.get("rope_theta", default)))


def _rope_scaling(c: dict) -> dict:
    """Model fields for Llama-3.1's ``rope_type='llama3'`` (empty for plain RoPE)."""
    kind, src = _rope_kind(c)
    if kind != "llama3":
        return {}
    return dict(rope_scaling="llama3", rope_scaling_factor=float(src["factor"]),
                rope_low_freq_factor=float(src["low_freq_factor"]),
                rope_high_freq_factor=float(src["high_freq_factor"]),
                rope_original_max_length=int(src["original_max_position_embeddings"]))


def rope_scaling_json(m) -> dict | None:
    """The HF ``rope_scaling`` entry of a model config (None for plain RoPE)."""
    if m.rope_scaling == "none":
        return None
    return {"rope_type": "llama3", "factor": m.rope_scaling_factor,
            "low_freq_factor": m.rope_low_freq_factor,
            "high_freq_factor": m.rope_high_freq_factor,
            "original_max_position_embeddings": m.rope_original_max_length}


def hf_dtype_name(c: dict) -> str | None:
    name = c.get("torch_dtype") or c.get("dtype")
    if isinstance(name, str):
        name = name.replace("torch.", "")
        return {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(name)
    return None


def _first_id(v):
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else None
    return None if v is None else int(v)


def _require(c, keys, where):
    missing = [k for k in keys if k not in c]
    if missing:
        raise ValueError(f"{where}: config.json lacks {', '.join(missing)}")


def _llama_like(c: dict, family: str, where: str) -> dict:
    _require(c, ("hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "vocab_size"), where)
    act = c.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{where}: hidden_act={act!r} is not supported (SwiGLU with silu only)")
    if c.get("use_sliding_window"):
        raise ValueError(f"{where}: sliding-window attention is not supported")
    if family == "llama" and (c.get("attention_bias") or c.get("mlp_bias")):
        raise ValueError(f"{where}: Llama attention_bias / mlp_bias are not supported")
    d, n = int(c["hidden_size"]), int(c["num_attention_heads"])
    hd = int(c.get("head_dim") or d // n)
    return dict(
        family="llama", vocab_size=int(c["vocab_size"]), d_model=d,
        n_layers=int(c["num_hidden_layers"]), n_heads=n,
        n_kv_heads=int(c.get("num_key_value_heads") or n), head_dim=0 if hd == d // n else hd,
        mlp_dim=int(c["intermediate_size"]),
        max_length=int(c.get("max_position_embeddings", 2048)),
        rope_theta=_rope_theta(c, 10000.0, allow_llama3=family == "llama"),
        **_rope_scaling(c),
        qkv_bias=family in ("qwen2", "dream"),
        causal=family in ("llama", "qwen2"), logit_shift=family == "dream",
        norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    )


def _llada(c: dict, where: str) -> dict:
    _require(c, ("d_model", "n_heads", "n_layers"), where)
    for key in ("scale_logits", "attention_layer_norm", "alibi", "input_emb_norm"):
        if c.get(key):
            raise ValueError(f"{where}: LLaDA option {key}=true is not supported")
    if c.get("rope") is False:
        raise ValueError(f"{where}: LLaDA without RoPE is not supported")
    d, n = int(c["d_model"]), int(c["n_heads"])
    mlp = c.get("mlp_hidden_size") or int(c.get("mlp_ratio", 4)) * d
    vocab = int(c.get("embedding_size") or c["vocab_size"])
    return dict(
        family="llama", vocab_size=vocab, d_model=d, n_layers=int(c["n_layers"]), n_heads=n,
        n_kv_heads=int(c.get("n_kv_heads") or n), head_dim=0, mlp_dim=int(mlp),
        max_length=int(c.get("max_sequence_length", 4096)),
        rope_theta=_rope_theta(c, 10000.0),
        qkv_bias=bool(c.get("include_bias") or c.get("include_qkv_bias")),
        causal=False, logit_shift=False, norm_eps=float(c.get("rms_norm_eps", 1e-5)),
        tie_embeddings=bool(c.get("weight_tying", False)),
    )


def _mdlm(c: dict, where: str) -> dict:
    _require(c, ("hidden_dim", "n_blocks", "n_heads", "vocab_size"), where)
    d = int(c["hidden_dim"])
    return dict(
        family="dit", vocab_size=int(c["vocab_size"]), d_model=d, n_layers=int(c["n_blocks"]),
        n_heads=int(c["n_heads"]), n_kv_heads=0, head_dim=0, mlp_dim=4 * d,
        max_length=int(c.get("model_length", 1024)), rope_theta=10000.0, qkv_bias=False,
        causal=False, logit_shift=False, norm_eps=1e-5,
        time_conditioning=bool(c.get("time_conditioning", False)),
        cond_dim=int(c.get("cond_dim", 128)), tie_embeddings=False,
    )


def read_model_fields(family: str, c: dict, where: str) -> dict:
    """``config.model`` fields for an HF ``config.json`` of ``family``."""
    if family == "llada":
        return _llada(c, where)
    if family == "mdlm":
        return _mdlm(c, where)
    return _llama_like(c, family, where)


def special_ids(family: str, c: dict) -> dict:
    """mask / eos / pad ids the config names (None where it does not)."""
    mask = c.get("mask_token_id")
    if mask is None and family == "llada":
        mask = LLADA_MASK_ID
    if mask is None and family == "mdlm":
        mask = int(c["vocab_size"]) - 1  # MDLM appends [MASK] as the last id
    return dict(mask_id=_first_id(mask), eos_id=_first_id(c.get("eos_token_id")),
                pad_id=_first_id(c.get("pad_token_id")))


# -------------------------------------------------------------------- writers
def write_config(family: str, m, ids: dict, dtype: str, base: dict | None) -> dict:
    """config.json for ``family`` from model config ``m``, on top of ``base`` (a source's)."""
    out = dict(base or {})
    n, hd = m.n_heads, m.head_dim or m.d_model // m.n_heads
    if family == "llada":
        out.update(model_type="llada", d_model=m.d_model, n_heads=n,
                   n_kv_heads=m.n_kv_heads or n, n_layers=m.n_layers,
                   mlp_hidden_size=m.mlp_dim, vocab_size=m.vocab_size,
                   embedding_size=m.vocab_size, rope_theta=m.rope_theta,
                   rms_norm_eps=m.norm_eps, max_sequence_length=m.max_length,
                   weight_tying=bool(m.tie_embeddings), include_bias=False,
                   include_qkv_bias=bool(m.qkv_bias), block_type="llama",
                   activation_type="silu", layer_norm_type="rms", rope=True)
        out.setdefault("architectures", ["LLaDAModelLM"])
    elif family == "mdlm":
        out.update(model_type="mdlm", hidden_dim=m.d_model, n_blocks=m.n_layers, n_heads=n,
                   cond_dim=m.cond_dim, model_length=m.max_length, vocab_size=m.vocab_size,
                   time_conditioning=bool(m.time_conditioning))
        out.setdefault("architectures", ["MDLM"])
    else:
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                "dream": "DreamModel"}[family]
        out.update(model_type={"dream": "Dream"}.get(family, family),
                   hidden_size=m.d_model, num_hidden_layers=m.n_layers,
                   num_attention_heads=n, num_key_value_heads=m.n_kv_heads or n,
                   head_dim=hd, intermediate_size=m.mlp_dim, vocab_size=m.vocab_size,
                   max_position_embeddings=m.max_length, rms_norm_eps=m.norm_eps,
                   tie_word_embeddings=bool(m.tie_embeddings), hidden_act="silu")
        scaling = rope_scaling_json(m)
        if "rope_parameters" in out:
            out["rope_parameters"] = {**out["rope_parameters"], "rope_theta": m.rope_theta,
                                      **(scaling or {"rope_type": "default"})}
        else:
            out["rope_theta"] = m.rope_theta
            out["rope_scaling"] = scaling
        if family == "llama":
            out.update(attention_bias=False, mlp_bias=False)
        if base is None or str(base.get("model_type", "")).lower() != family:
            out["architectures"] = [arch]
    key = "dtype" if "dtype" in out and "torch_dtype" not in out else "torch_dtype"
    out[key] = dtype
    for name, value in (("mask_token_id", ids.get("mask_id")),
                        ("eos_token_id", ids.get("eos_id")),
                        ("pad_token_id", ids.get("pad_id"))):
        if value is not None and not isinstance(out.get(name), list):
            out[name] = int(value)
    return out
