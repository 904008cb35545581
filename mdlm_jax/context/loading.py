"""The model the suite scores: a workdir of this project or a HuggingFace directory.

``context.model_path`` names either a workdir (``config.json`` + ``checkpoints/``; EMA
weights when present, LoRA adapters merged) or a HuggingFace directory (``config.json`` +
``*.safetensors``, imported through ``checkpoint.hf``; :func:`config_from_hf_dir` is the one
place a model directory becomes a config). Weights and compute are cast to
``context.dtype`` (bf16 by default).
"""

from __future__ import annotations

import dataclasses
import glob
import os

import jax
import jax.numpy as jnp


@dataclasses.dataclass
class Model:
    apply: object
    params: object
    model_cfg: object
    tokenizer: object
    mask_id: int
    name: str
    causal: bool
    keep_mask: bool = False
    step: int | None = None  # the checkpoint step of a workdir; None: a HF directory


# ------------------------------------------------------------------------ model
def is_workdir(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, "config.json"))
            and os.path.isdir(os.path.join(path, "checkpoints")))


def is_hf_dir(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, "config.json"))
            and bool(glob.glob(os.path.join(path, "*.safetensors"))))


def config_from_hf_dir(config, path: str):
    """A copy of ``config`` whose model, mask id and tokenizer come from a HF directory
    (the one place that turns a model directory into a config)."""
    from mdlm_jax.checkpoint.hf_config import configure_from_directory

    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        # A causal directory (Llama, Qwen2) is scored as the AR model it is.
        configure_from_directory(cfg, path, as_diffusion=False, dtype=config.context.dtype)
    return cfg


def _cast(params, dtype: str):
    dt = jnp.dtype(dtype)
    return jax.tree.map(lambda x: x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        params)


def load_model(config, mesh=None) -> Model:
    """The model named by ``config.context.model_path`` (see the module docstring)."""
    from mdlm_jax import model as model_lib
    from mdlm_jax.data.tokenizers import get_tokenizer
    from mdlm_jax.diffusion.parameterization import resolve_mask_in_softmax

    cx = config.context
    path = cx.model_path
    if not path or not os.path.isdir(path):
        raise ValueError(f"context.model_path={path!r} is not a directory; name a workdir of "
                         "this project or a HuggingFace model directory")
    if is_workdir(path):
        from mdlm_jax.checkpoint import read_config
        from mdlm_jax.model_loading import load_model

        cfg = read_config(path)
        _, params, step = load_model(path, cfg, mesh=mesh, use_ema=True)
        with cfg.unlocked():
            cfg.lora.rank = 0  # adapters are merged by load_model
    elif is_hf_dir(path):
        from mdlm_jax.checkpoint import hf

        cfg = config_from_hf_dir(config, path)
        params, step = hf.init_params_from(cfg, mesh), None
    else:
        raise ValueError(f"context.model_path={path!r} is neither a workdir of this project "
                         "(config.json + checkpoints/) nor a HuggingFace directory (config.json "
                         "+ *.safetensors)")
    with cfg.unlocked():
        cfg.model.dtype = cfg.model.param_dtype = cx.dtype
        # The suite's setting, resolved for the scored model's family (model.imported_from).
        cfg.sampler.mask_in_softmax = config.sampler.mask_in_softmax
    params = _cast(params, cx.dtype)
    apply = model_lib.abstract(cfg.model)[0]
    name = cx.model_name or os.path.basename(os.path.normpath(path))
    return Model(apply, params, cfg.model, get_tokenizer(cfg.data), cfg.diffusion.mask_id,
                 name, bool(cfg.model.causal), resolve_mask_in_softmax(cfg),
                 None if step is None else int(step))


__all__ = ["Model", "config_from_hf_dir", "is_hf_dir", "is_workdir", "load_model"]
