"""Tiny models saved as workdirs and a tiny suite config for the context tests.

Not a conftest.py: the root conftest module name is taken, so the tests import these
fixtures by name.
"""

from __future__ import annotations

import jax
import pytest

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model as model_lib
from mdlm_jax.config_base import base_config
from mdlm_jax.parallel import mesh as mesh_lib


def tiny_model_config(causal: bool = False):
    """A LLaDA-like (or causal) char-level model: 2 layers, width 32."""
    c = base_config()
    c.model.update(family="llama", d_model=32, n_layers=2, n_heads=2, mlp_dim=64,
                   max_length=512, causal=causal, init_std=0.3)
    if causal:
        c.loss.terms = {"ar_nll": 1.0}
    return c


def suite_config(model_path: str, experiment: str = "extra_masks", **context):
    c = base_config()
    c.context.update(
        model_path=model_path, experiment=experiment, relevant_tasks=("animal",),
        distractor_tasks=("smallest", "largest"), points=2, n_relevant=1, n_distractors=2,
        positions=(0, 2), locations=("left", "right"), mask_counts=(0, 3),
        locality_mask_counts=(2,), distractor_counts=(0, 2), order_seeds=2,
        attribution_points=1, attribution_masks=4, decode_steps=4, sensitivity_counts=(0, 4),
        sensitivity_points=2, length_multiple=64, dtype="float32", progress_bar=False)
    c.context.update(context)
    return c


@pytest.fixture(scope="session")
def mdlm_workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("ctx_mdlm") / "model")
    c = tiny_model_config()
    _, params = model_lib.create(c.model, jax.random.key(1))
    ckpt.save_params(wd, params, c)
    return wd


@pytest.fixture(scope="session")
def ar_workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("ctx_ar") / "model")
    c = tiny_model_config(causal=True)
    _, params = model_lib.create(c.model, jax.random.key(2))
    ckpt.save_params(wd, params, c)
    return wd


@pytest.fixture(scope="session")
def one_device_mesh():
    return mesh_lib.make_mesh(base_config().mesh, devices=jax.devices()[:1])


def write_hf_llada(folder: str) -> str:
    """A tiny LLaDA-format directory (config.json, random safetensors, a char-level
    tokenizer.json whose option letters are single tokens); mask id 127."""
    import json
    import os

    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    os.makedirs(folder, exist_ok=True)
    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.save(os.path.join(folder, "tokenizer.json"))
    v, d, f, h, kv, n_layers = 128, 32, 64, 4, 2, 2
    cfg = {"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": d,
           "n_heads": h, "n_kv_heads": kv, "n_layers": n_layers, "mlp_hidden_size": f,
           "vocab_size": v, "embedding_size": v, "rope_theta": 5e5, "rms_norm_eps": 1e-5,
           "max_sequence_length": 512, "weight_tying": False, "include_bias": False,
           "mask_token_id": 127, "eos_token_id": 0, "pad_token_id": 0,
           "torch_dtype": "float32", "block_type": "llama", "activation_type": "silu"}
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    rng = np.random.default_rng(0)
    hd = d // h
    shapes = {"attn_norm": (d,), "ff_norm": (d,), "q_proj": (d, d), "k_proj": (kv * hd, d),
              "v_proj": (kv * hd, d), "attn_out": (d, d), "ff_proj": (f, d),
              "up_proj": (f, d), "ff_out": (d, f)}
    t = {"model.transformer.wte.weight": (v, d), "model.transformer.ln_f.weight": (d,),
         "model.transformer.ff_out.weight": (v, d)}
    for i in range(n_layers):
        for name, shape in shapes.items():
            t[f"model.transformer.blocks.{i}.{name}.weight"] = shape
    tensors = {k: (1.0 + 0.1 * rng.normal(size=s) if len(s) == 1 else 0.3 * rng.normal(size=s))
               .astype(np.float32) for k, s in t.items()}
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    return folder
