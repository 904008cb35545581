"""A usable model from a workdir: config + model + LoRA + checkpoint -> ``(apply, params, step)``.

``checkpoint`` only moves trees (into the shapes and shardings it is given) and reads
metadata; this module decides what to build and what to read: the model and its LoRA
transform from the config, EMA or raw parameters, the base weights of a LoRA run (from
``model.init_from`` or another workdir), and the merge of the adapters. ``eval``,
``sample``, the benchmarks and training's starting point all load through it.
"""

from __future__ import annotations

import jax

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model as model_lib
from mdlm_jax.checkpoint import integrity
from mdlm_jax.parallel import sharding


def lora_transform(config):
    """The model transform that adds LoRA adapters, or None for ``lora.rank=0``."""
    if config.lora.rank == 0:
        return None
    from mdlm_jax.model import lora

    return lora.transform(config.lora)


def load_model(workdir: str, config=None, *, mesh=None, use_ema: bool = True, step=None):
    """``(apply, params, step)`` from the latest (or given) checkpoint of ``workdir``.

    EMA parameters are used when present and ``use_ema``; LoRA adapters are merged into
    their base weights. A ``config`` whose layout keys differ from the workdir's
    ``config.json`` is refused, naming them. Without ``step``, damaged newer steps are
    skipped with a warning (and kept).
    """
    if config is None:
        config = ckpt.read_config(workdir)
    else:
        integrity.check_layout(workdir, config, integrity.PARAM_LAYOUT_KEYS, "restoring")
    transform = lora_transform(config)
    apply, shapes, axes = model_lib.abstract(config.model, transform=transform)
    target = shapes
    if mesh is not None:
        shard = sharding.param_shardings(axes, shapes, config.mesh.rules, mesh)
        target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                                 sharding=sh), shapes, shard)
    restored = ckpt.restore_params_tree(workdir, target, use_ema=use_ema, step=step)
    params = restored.params
    if transform is None:
        return apply, params, restored.step
    from mdlm_jax.model import lora
    from mdlm_jax.param_trees import override

    if restored.item == "state":  # LoRA runs store the adapters; the base is reloaded
        base = base_params(config, mesh)
        if base is None:
            raise ValueError(f"{workdir} is a LoRA run whose base weights come from "
                             "model.init_from or checkpoint.restore_from, and its config "
                             "names neither")
        params = override(base, params)
    apply, _, _ = model_lib.abstract(config.model)
    return apply, lora.merge(params, config.lora), restored.step


def base_params(config, mesh):
    """The parameters a run starts from, before any adapter: ``model.init_from`` (a HF
    directory) or ``checkpoint.restore_from`` (a workdir); None for a random start."""
    if config.model.init_from:
        from mdlm_jax.checkpoint import hf

        return hf.init_params_from(config, mesh)
    if config.checkpoint.restore_from:
        return load_model(config.checkpoint.restore_from, None, mesh=mesh, use_ema=True)[1]
    return None


def load_ar_scorer(workdir: str, mesh=None):
    """``(apply, params, config)`` of the causal model trained in ``workdir``, the scorer
    of ``diffusion.sample_metrics`` (``sampler.eval_model_workdir``)."""
    import os

    if not os.path.exists(os.path.join(workdir, "config.json")):
        raise ValueError(f"sampler.eval_model_workdir={workdir!r} has no config.json; point "
                         "it at the workdir of a run trained with loss.terms={'ar_nll': 1}")
    config = ckpt.read_config(workdir)
    if "ar_nll" not in config.loss.terms or not config.model.causal:
        raise ValueError(f"sampler.eval_model_workdir={workdir!r} is not a causal ar_nll "
                         "run (model.causal and loss.terms['ar_nll'] needed)")
    apply, params, _ = load_model(workdir, config, mesh=mesh, use_ema=True)
    return apply, params, config
