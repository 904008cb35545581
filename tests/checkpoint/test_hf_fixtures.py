"""Tiny HF-format model directories and independent numpy forwards for the hf tests.

Tensor names here are written out from the published modeling code (LLaDA's
``modeling_llada.py``, MDLM's ``models/dit.py`` / ``modeling_mdlm.py``, transformers' Llama
and Qwen2), not taken from ``checkpoint.hf_tables``, so the tests check the tables.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

V, D, F, H, KV, NL = 64, 32, 64, 4, 2, 2
HD = D // H


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def write_tokenizer(folder, n_tokens):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, **{f"w{i}": i for i in range(1, n_tokens)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(os.path.join(folder, "tokenizer.json"))


def torch_model(kind, *, tied=False, seed=0, rope_scaling=None):
    """A tiny transformers Llama / Qwen2 with every weight perturbed (norms not all ones)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cls_cfg, cls = ((LlamaConfig, LlamaForCausalLM) if kind == "llama"
                    else (Qwen2Config, Qwen2ForCausalLM))
    cfg = cls_cfg(hidden_size=D, intermediate_size=F, num_hidden_layers=NL,
                  num_attention_heads=H, num_key_value_heads=KV, vocab_size=V,
                  max_position_embeddings=64, tie_word_embeddings=tied,
                  rope_theta=5e5 if kind == "llama" else 1e6, rms_norm_eps=1e-5,
                  **({"rope_scaling": rope_scaling} if rope_scaling else {}))
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def state_dict_np(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def save_st(folder, tensors, name="model.safetensors"):
    from safetensors.numpy import save_file

    os.makedirs(folder, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              os.path.join(folder, name))


# LLaDA's names for the Llama weights (modeling_llada.py: LLaDALlamaBlock, ln_f, ff_out).
def llada_names(sd):
    out = {"model.transformer.wte.weight": sd["model.embed_tokens.weight"],
           "model.transformer.ln_f.weight": sd["model.norm.weight"],
           "model.transformer.ff_out.weight": sd["lm_head.weight"]}
    ours = {"input_layernorm": "attn_norm", "self_attn.q_proj": "q_proj",
            "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
            "self_attn.o_proj": "attn_out", "post_attention_layernorm": "ff_norm",
            "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj", "mlp.down_proj": "ff_out"}
    for i in range(NL):
        for hf_name, ll_name in ours.items():
            out[f"model.transformer.blocks.{i}.{ll_name}.weight"] = \
                sd[f"model.layers.{i}.{hf_name}.weight"]
    return out


def llada_config(mask_id=63):
    return {"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": D,
            "n_heads": H, "n_kv_heads": KV, "n_layers": NL, "mlp_hidden_size": F,
            "vocab_size": V, "embedding_size": V, "rope_theta": 5e5, "rms_norm_eps": 1e-5,
            "max_sequence_length": 64, "weight_tying": False, "include_bias": False,
            "mask_token_id": mask_id, "eos_token_id": 1, "pad_token_id": 1,
            "torch_dtype": "float32", "block_type": "llama", "activation_type": "silu"}


def dream_config(mask_id=62):
    cfg = {"model_type": "Dream", "architectures": ["DreamModel"], "hidden_size": D,
           "num_hidden_layers": NL, "num_attention_heads": H, "num_key_value_heads": KV,
           "intermediate_size": F, "vocab_size": V, "rope_theta": 1e6, "rms_norm_eps": 1e-5,
           "max_position_embeddings": 64, "tie_word_embeddings": False, "hidden_act": "silu",
           "torch_dtype": "float32", "eos_token_id": 0}
    if mask_id is not None:
        cfg["mask_token_id"] = mask_id
    return cfg


def mdlm_tensors(seed=0, vocab=V):
    rng = np.random.RandomState(seed)

    def r(*shape, s=0.1):
        return (s * rng.randn(*shape)).astype(np.float32)

    t = {"backbone.vocab_embed.embedding": r(vocab, D, s=1.0),
         "backbone.sigma_map.mlp.0.weight": r(D, 256), "backbone.sigma_map.mlp.0.bias": r(D),
         "backbone.sigma_map.mlp.2.weight": r(D, D), "backbone.sigma_map.mlp.2.bias": r(D),
         "backbone.output_layer.norm_final.weight": 1 + r(D),
         "backbone.output_layer.linear.weight": r(vocab, D),
         "backbone.output_layer.linear.bias": r(vocab),
         "backbone.output_layer.adaLN_modulation.weight": r(2 * D, D),
         "backbone.output_layer.adaLN_modulation.bias": r(2 * D),
         "backbone.rotary_emb.inv_freq": (1.0 / 1e4 ** (np.arange(0, HD, 2) / HD)).astype(
             np.float32)}
    for i in range(NL):
        p = f"backbone.blocks.{i}."
        t.update({p + "norm1.weight": 1 + r(D), p + "attn_qkv.weight": r(3 * D, D, s=0.3),
                  p + "attn_out.weight": r(D, D), p + "norm2.weight": 1 + r(D),
                  p + "mlp.0.weight": r(4 * D, D), p + "mlp.0.bias": r(4 * D),
                  p + "mlp.2.weight": r(D, 4 * D), p + "mlp.2.bias": r(D),
                  p + "adaLN_modulation.weight": r(6 * D, D),
                  p + "adaLN_modulation.bias": r(6 * D)})
    return t


def mdlm_config(vocab=V):
    return {"model_type": "mdlm", "architectures": ["MDLM"], "hidden_dim": D, "n_blocks": NL,
            "n_heads": H, "cond_dim": D, "model_length": 64, "vocab_size": vocab,
            "dropout": 0.1, "time_conditioning": True}


# ----------------------------------------------------------- numpy references
def _rope(x, theta):
    n, k = x.shape[1], x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, k, 2) / k)
    f = np.outer(np.arange(n), inv)
    emb = np.concatenate([f, f], -1)
    cos, sin = np.cos(emb)[None, :, None], np.sin(emb)[None, :, None]
    rot = np.concatenate([-x[..., k // 2:], x[..., : k // 2]], -1)
    return x * cos + rot * sin


def _attend(q, k, v, causal):
    k = np.repeat(k, q.shape[2] // k.shape[2], axis=2)
    v = np.repeat(v, q.shape[2] // v.shape[2], axis=2)
    s = np.einsum("blhk,bmhk->bhlm", q, k) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[1]
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    out = np.einsum("bhlm,bmhk->blhk", s, v)
    return out.reshape(out.shape[0], out.shape[1], -1)


def ref_llama(sd, tokens, *, theta, eps=1e-5, causal, shift=False):
    """Llama / Qwen2 / LLaDA / Dream forward in float64 over HF (transformers) names."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def lin(x, name, heads=None):
        y = x @ sd[name + ".weight"].T
        if name + ".bias" in sd:
            y = y + sd[name + ".bias"]
        return y if heads is None else y.reshape(y.shape[:2] + (heads, -1))

    x = sd["model.embed_tokens.weight"][tokens]
    for i in range(NL):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = _rope(lin(h, p + "self_attn.q_proj", H), theta)
        k = _rope(lin(h, p + "self_attn.k_proj", KV), theta)
        v = lin(h, p + "self_attn.v_proj", KV)
        x = x + lin(_attend(q, k, v, causal), p + "self_attn.o_proj")
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    h = rms(x, sd["model.norm.weight"])
    logits = h @ sd.get("lm_head.weight", sd["model.embed_tokens.weight"]).T
    if shift:
        logits = np.concatenate([logits[:, :1], logits[:, :-1]], 1)
    return logits


def ref_mdlm(t, tokens, sigma):
    """MDLM's DiT forward (modeling_mdlm.py) in float64."""
    t = {k: np.asarray(v, np.float64) for k, v in t.items()}
    b = "backbone."

    def lin(x, name):
        return x @ t[name + ".weight"].T + t.get(name + ".bias", 0.0)

    def ln(x, w):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w

    def silu(x):
        return x / (1 + np.exp(-x))

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    half = 128
    freqs = np.exp(-math.log(10000) * np.arange(half) / half)
    args = np.asarray(sigma, np.float64)[:, None] * freqs[None]
    c = np.concatenate([np.cos(args), np.sin(args)], -1)
    c = silu(lin(silu(lin(c, b + "sigma_map.mlp.0")), b + "sigma_map.mlp.2"))
    x = t[b + "vocab_embed.embedding"][tokens]
    bsz, n = tokens.shape
    for i in range(NL):
        p = f"{b}blocks.{i}."
        sh1, sc1, g1, sh2, sc2, g2 = np.split(lin(c, p + "adaLN_modulation")[:, None], 6, -1)
        h = ln(x, t[p + "norm1.weight"]) * (1 + sc1) + sh1
        qkv = (h @ t[p + "attn_qkv.weight"].T).reshape(bsz, n, 3, H, HD)
        q, k, v = _rope(qkv[:, :, 0], 1e4), _rope(qkv[:, :, 1], 1e4), qkv[:, :, 2]
        x = x + g1 * (_attend(q, k, v, False) @ t[p + "attn_out.weight"].T)
        h = ln(x, t[p + "norm2.weight"]) * (1 + sc2) + sh2
        x = x + g2 * lin(gelu(lin(h, p + "mlp.0")), p + "mlp.2")
    shift, scale = np.split(lin(c, b + "output_layer.adaLN_modulation")[:, None], 2, -1)
    h = ln(x, t[b + "output_layer.norm_final.weight"]) * (1 + scale) + shift
    return lin(h, b + "output_layer.linear")
