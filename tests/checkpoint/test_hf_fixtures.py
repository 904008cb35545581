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


# ----------------------------------------- published directories at tiny sizes
# config.json of GSAI-ML/LLaDA-8B-Base, Dream-org/Dream-v0-Base-7B, meta-llama/Meta-Llama-3-8B
# and Qwen/Qwen2.5-7B: the published field set with every non-size value as published
# (n_kv_heads as published: LLaDA writes it out equal to n_heads), sizes shrunk to
# D / F / H / NL and a 64-row vocabulary. Each has a tokenizer.json whose special tokens
# sit where the published ones do relative to the vocabulary: LLaDA's and Dream's mask
# token inside the tokenizer, spare embedding rows after it (LLaDA, Dream, Qwen2.5), none
# for Llama-3. The published ids are in comments.
PUBLISHED_SIZES = {"llada": {"d_model": D, "mlp_hidden_size": F, "n_heads": H,
                             "n_kv_heads": H, "n_layers": NL},
                   "llama_like": {"hidden_size": D, "intermediate_size": F,
                                  "num_attention_heads": H, "num_hidden_layers": NL}}
PUBLISHED_KV = {"llada": H, "dream": KV, "qwen2": KV, "llama": 1}  # 32/32, 4/28, 4/28, 8/32
# tokenizer layout: words w0.. fill the ids below the first special token
PUBLISHED_SPECIALS = {
    "llada": {48: "<|startoftext|>", 49: "<|endoftext|>",  # 126080, 126081
              54: "<|mdm_mask|>",  # 126336
              57: "<|start_header_id|>", 58: "<|end_header_id|>", 59: "<|eot_id|>"},
    "dream": {48: "<|endoftext|>", 49: "<|im_start|>", 50: "<|im_end|>",  # 151643..151645
              57: "<|beginoftext|>", 58: "<|mask|>"},  # 151665, 151666 (152064 rows)
    "qwen2": {48: "<|endoftext|>", 49: "<|im_start|>", 50: "<|im_end|>"},  # 151643..5
    "llama": {48: "<|begin_of_text|>", 49: "<|end_of_text|>",  # 128000, 128001
              54: "<|start_header_id|>", 55: "<|end_header_id|>", 57: "<|eot_id|>"},
}
TOKENIZER_SIZE = {"llada": 60, "dream": 59, "qwen2": 60, "llama": V}  # 126349 / 151667 /
# 151665 / 128256 in the published tokenizers


def published_config(family: str) -> dict:
    sizes = PUBLISHED_SIZES["llada" if family == "llada" else "llama_like"]
    if family == "llada":
        return {
            "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0,
            "architectures": ["LLaDAModelLM"], "attention_dropout": 0.0,
            "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
            "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                         "AutoModel": "modeling_llada.LLaDAModelLM",
                         "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
            "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama",
            "embedding_dropout": 0.0, "embedding_size": V, "eos_token_id": 49,
            "flash_attention": False, "include_bias": False, "include_qkv_bias": False,
            "init_cutoff_factor": None, "init_device": "meta", "init_fn": "mitchell",
            "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
            "layer_norm_with_affine": True, "mask_token_id": 54,
            "max_sequence_length": 4096, "mlp_ratio": 4, "model_type": "llada",
            "multi_query_attention": None, "pad_token_id": 49, "precision": "amp_bf16",
            "residual_dropout": 0.0, "rms_norm_eps": 1e-05, "rope": True,
            "rope_full_precision": True, "rope_theta": 500000.0, "scale_logits": False,
            "transformers_version": "4.46.3", "use_cache": False, "vocab_size": V,
            "weight_tying": False, **sizes}
    common = {"attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
              "num_key_value_heads": PUBLISHED_KV[family], "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": V, **sizes}
    if family == "llama":
        return {**common, "architectures": ["LlamaForCausalLM"], "attention_bias": False,
                "bos_token_id": 48, "eos_token_id": 49, "max_position_embeddings": 8192,
                "model_type": "llama", "pretraining_tp": 1, "rms_norm_eps": 1e-05,
                "rope_scaling": None, "rope_theta": 500000.0,
                "transformers_version": "4.40.0.dev0"}
    qwen = {**common, "bos_token_id": 48, "eos_token_id": 48,
            "max_position_embeddings": 131072, "max_window_layers": NL,
            "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "use_sliding_window": False}
    if family == "dream":
        return {**qwen, "architectures": ["DreamModel"], "mask_token_id": 58,
                "model_type": "Dream", "pad_token_id": 48, "rope_scaling": None,
                "sliding_window": None, "transformers_version": "4.46.2"}
    return {**qwen, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "sliding_window": 131072, "transformers_version": "4.43.1", "use_mrope": False}


def llama_tensors(*, kv=KV, qkv_bias=False, seed=0, vocab=V):
    """Random weights under transformers' Llama / Qwen2 names (norms around 1)."""
    rng = np.random.RandomState(seed)

    def r(*shape):
        return (0.1 * rng.randn(*shape)).astype(np.float32)

    t = {"model.embed_tokens.weight": r(vocab, D), "model.norm.weight": 1 + r(D),
         "lm_head.weight": r(vocab, D)}
    for i in range(NL):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": 1 + r(D),
                  p + "self_attn.q_proj.weight": r(H * HD, D),
                  p + "self_attn.k_proj.weight": r(kv * HD, D),
                  p + "self_attn.v_proj.weight": r(kv * HD, D),
                  p + "self_attn.o_proj.weight": r(D, H * HD),
                  p + "post_attention_layernorm.weight": 1 + r(D),
                  p + "mlp.gate_proj.weight": r(F, D), p + "mlp.up_proj.weight": r(F, D),
                  p + "mlp.down_proj.weight": r(D, F)})
        if qkv_bias:
            for name, n in (("q", H), ("k", kv), ("v", kv)):
                t[p + f"self_attn.{name}_proj.bias"] = r(n * HD)
    return t


def write_published_tokenizer(folder, family: str):
    """A word-level tokenizer.json with the family's special tokens at their ids, and a
    tokenizer_config.json naming the EOS token as the published one does."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    specials = PUBLISHED_SPECIALS[family]
    vocab = {specials.get(i, f"w{i}"): i for i in range(TOKENIZER_SIZE[family])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials.values()])
    tok.save(os.path.join(folder, "tokenizer.json"))
    eos = {"llada": "<|endoftext|>", "dream": "<|endoftext|>", "qwen2": "<|endoftext|>",
           "llama": "<|end_of_text|>"}[family]
    write_json(os.path.join(folder, "tokenizer_config.json"), {"eos_token": eos})


def write_published_dir(folder, family: str, seed=0):
    """A tiny directory laid out as the published ``family`` checkpoint."""
    os.makedirs(folder, exist_ok=True)
    t = llama_tensors(kv=PUBLISHED_KV[family], qkv_bias=family in ("dream", "qwen2"),
                      seed=seed)
    save_st(folder, llada_names(t) if family == "llada" else t)
    write_json(os.path.join(folder, "config.json"), published_config(family))
    write_published_tokenizer(folder, family)
    return str(folder)
