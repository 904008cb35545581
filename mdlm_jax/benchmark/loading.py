"""One function from a model path to ``(apply, params, config, tokenizer)``.

A path is either a workdir of this project (``config.json`` + ``checkpoints/``, written by
``train`` or ``convert``) or a Hugging Face directory (``config.json`` + safetensors;
LLaDA, Dream, MDLM, Llama, Qwen2). Everything that reads a model for benchmarks goes
through :func:`load`, so a change in how configs are filled from a directory touches only
this function.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from mdlm_jax.checks import is_diffusion


@dataclasses.dataclass
class Loaded:
    apply: object
    params: object
    config: object  # the full resolved config (model, diffusion, data.tokenizer, loss)
    tokenizer: object
    kind: str  # "workdir" | "hf"
    step: int | None

    @property
    def is_diffusion(self) -> bool:
        return is_diffusion(self.config)


def load(path: str, *, mesh=None, dtype: str = "", use_ema: bool = True) -> Loaded:
    """The model at ``path`` (a workdir or a HF directory), sharded over ``mesh``.

    ``dtype`` ('' : as stored) sets a HF directory's parameter and compute dtype. A HF
    causal model (Llama, Qwen2) is loaded as an AR model (loss term ``ar_nll``).
    """
    from mdlm_jax import checkpoint as ckpt
    from mdlm_jax import model_loading
    from mdlm_jax.data.tokenizers import get_tokenizer

    if not path:
        raise ValueError("no model path: set benchmark.path (or model_args path=DIR) to a "
                         "workdir of this project or a HF model directory")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a directory: give a workdir of this project "
                                "or a HF model directory")
    if os.path.isdir(ckpt.checkpoint_dir(path)):
        config = ckpt.read_config(path)
        apply, params, step = model_loading.load_model(path, config, mesh=mesh,
                                                       use_ema=use_ema)
        return Loaded(apply, params, config, get_tokenizer(config.data), "workdir", int(step))
    if glob.glob(os.path.join(path, "*.safetensors")):
        from mdlm_jax import model as model_lib
        from mdlm_jax.checkpoint import hf
        from mdlm_jax.checkpoint.hf_config import configure_from_directory
        from mdlm_jax.config_base import base_config

        config = base_config()
        info = configure_from_directory(config, path, as_diffusion=False, dtype=dtype or None)
        config.model.param_dtype = config.model.dtype = info.dtype  # the checkpoint's, or dtype
        if config.model.causal:
            config.loss.terms = {"ar_nll": 1.0}
        params = hf.read_params(info, config.model, mesh=mesh, rules=config.mesh.rules)
        apply, _, _ = model_lib.abstract(config.model)
        if info.tokenizer_file is None:
            raise FileNotFoundError(f"{path} has no tokenizer.json; benchmarks need the "
                                    "model's tokenizer beside its weights")
        return Loaded(apply, params, config, get_tokenizer(config.data), "hf", None)
    raise FileNotFoundError(f"{path} holds neither checkpoints/ (a workdir of this project) "
                            "nor *.safetensors (a HF model directory)")
