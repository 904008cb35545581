"""``python -m mdlm_jax.main convert --from HF_DIR --to WORKDIR``.

Reads a Hugging Face model directory (LLaDA, Dream, Llama-3, Qwen2/2.5, MDLM; see
``checkpoint.hf``) and writes a workdir the train / sample / eval commands start from: a
params-only orbax checkpoint at step 0 and the resolved ``config.json`` (model, mask id,
EOS id and tokenizer filled from the directory by ``hf_config.configure_from_directory``).
"""

from __future__ import annotations

import os

import jax

from mdlm_jax import checkpoint as ckpt
from mdlm_jax.checkpoint import hf
from mdlm_jax.checkpoint.hf_config import configure_from_directory
from mdlm_jax.config_base import base_config
from mdlm_jax.model import count_params
from mdlm_jax.parallel.mesh import make_mesh


def run(src_dir: str, workdir: str, *, as_diffusion: bool = False, dtype=None):
    """Convert ``src_dir`` into ``workdir``; returns the resolved config.

    ``as_diffusion`` adapts a causal model (Llama / Qwen2) into a bidirectional one with
    the one-position logit shift (see ``checkpoint.hf``).
    """
    workdir = os.path.abspath(workdir)
    if ckpt.latest_step(workdir) is not None:
        raise FileExistsError(f"{workdir} already holds checkpoints; convert into a new "
                              "workdir (nothing was written)")
    config = base_config()
    info = configure_from_directory(config, src_dir, as_diffusion=as_diffusion, dtype=dtype)
    config.model.param_dtype = config.model.dtype = info.dtype  # the checkpoint's, or dtype
    mesh = make_mesh(config.mesh)
    params = hf.read_params(info, config.model, mesh=mesh, rules=config.mesh.rules)
    config.model.init_from = ""  # the workdir's checkpoint is the starting point now
    path = ckpt.save_params(workdir, params, config, step=0)
    if jax.process_index() == 0:
        n = count_params(params)
        print(f"converted {info.family} model from {info.path} ({n / 1e6:.1f}M parameters, "
              f"mask id {info.mask_id}) to {path}")
    return config
