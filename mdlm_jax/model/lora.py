"""Low-rank adapters (LoRA) on the model's projections, and the helpers to train them.

Usage::

    transform = lora.transform(config.lora)            # fn(module): attaches adapters
    apply, params = model.create(config.model, key, transform=transform)
    trainable, frozen = lora.split(params)              # adapters / everything else
    loss(lora.combine(trainable, frozen))               # differentiate w.r.t. trainable only
    merged = lora.merge(params, config.lora)            # plain params for a model built
                                                        # without the transform

An adapted projection computes ``x @ W + (alpha / rank) * (x @ A) @ B`` (``layers.Projection``).
``A`` ([*in, r]) starts uniform in ``+-1/sqrt(fan_in)`` (PyTorch's / PEFT's Kaiming-uniform
default), ``B`` ([r, *out]) starts at zero, so the adapted model initially equals the base
model. Adapters inside the stacked ``blocks`` get a leading ``layers`` axis like every other
block parameter. Adapters are kept in float32 whatever ``model.param_dtype`` is: updates of a
learning rate of 1e-6 would vanish in bfloat16.

Targets (``lora.targets``) are projection names: ``q k v o`` (attention), ``gate up down``
(LLaDA / Llama MLP), ``fc_in fc_out`` (DiT MLP); any other projection name of the model
(``head``, ``adaln``, ...) is accepted too. A name that matches no projection is an error
listing the names that exist. There is no adapter dropout (the paper's setting): the pure
``apply`` takes no dropout RNG.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mdlm_jax.model.layers import Projection
from mdlm_jax.param_trees import combine, partition

ADAPTER_KEYS = ("lora_a", "lora_b")


def check_config(lora_cfg) -> None:
    """Errors for settings LoRA cannot honour."""
    if lora_cfg.rank <= 0:
        raise ValueError(f"lora.rank={lora_cfg.rank}: LoRA needs a positive rank "
                         "(rank 0 means 'no LoRA': do not apply the transform)")
    if lora_cfg.alpha <= 0:
        raise ValueError(f"lora.alpha={lora_cfg.alpha} must be positive")
    if not tuple(lora_cfg.targets):
        raise ValueError("lora.targets is empty; name at least one projection, e.g. ('q', 'v')")


def enabled(lora_cfg) -> bool:
    return lora_cfg.rank > 0


def scale(lora_cfg) -> float:
    return float(lora_cfg.alpha) / float(lora_cfg.rank)


def projections(module: nnx.Module) -> list[tuple[tuple, Projection]]:
    """``(path, projection)`` of every ``Projection`` in ``module``, in graph order."""
    return [(tuple(path), node) for path, node in nnx.iter_graph(module)
            if isinstance(node, Projection)]


def projection_names(module: nnx.Module) -> list[str]:
    return sorted({str(path[-1]) for path, _ in projections(module)})


def transform(lora_cfg, key=None):
    """``fn(module)`` attaching adapters to the projections named in ``lora_cfg.targets``."""
    check_config(lora_cfg)
    targets = tuple(str(t) for t in lora_cfg.targets)
    rank = int(lora_cfg.rank)
    base_key = jax.random.key(0) if key is None else key

    def attach(module: nnx.Module) -> nnx.Module:
        found = projections(module)
        names = projection_names(module)
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ValueError(f"lora.targets {unknown} match no projection of this model; "
                             f"projections that exist: {names}")
        chosen = [(path, proj) for path, proj in found if str(path[-1]) in targets]
        for i, (path, proj) in enumerate(chosen):
            _attach_one(proj, rank, scale(lora_cfg), jax.random.fold_in(base_key, i),
                        stacked="blocks" in [str(p) for p in path])
        return module

    return attach


def _attach_one(proj: Projection, rank: int, lora_scale: float, key, *, stacked: bool):
    kernel = proj.kernel
    axes = tuple(kernel.get_metadata().get("logical_axes")
                 or (None,) * len(kernel.shape))
    n_in, n_out = len(proj.in_shape), len(proj.out_shape)
    lead = kernel.shape[: len(kernel.shape) - n_in - n_out]
    lead_axes = axes[: len(lead)]
    if stacked and (not lead or lead_axes[0] != "layers"):
        raise ValueError("a projection inside the stacked blocks has no leading 'layers' axis")
    in_axes = axes[len(lead): len(lead) + n_in]
    out_axes = axes[len(lead) + n_in:]
    fan_in = 1
    for d in proj.in_shape:
        fan_in *= d
    bound = 1.0 / fan_in**0.5
    a = jax.random.uniform(key, lead + proj.in_shape + (rank,), jnp.float32, -bound, bound)
    b = jnp.zeros(lead + (rank,) + proj.out_shape, jnp.float32)
    proj.lora_a = nnx.data(nnx.Param(a, logical_axes=lead_axes + in_axes + ("lora_rank",)))
    proj.lora_b = nnx.data(nnx.Param(b, logical_axes=lead_axes + ("lora_rank",) + out_axes))
    proj.lora_scale = lora_scale


# ---------------------------------------------------------------- params pytrees
def _is_adapter_path(path) -> bool:
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", last))
    return str(name) in ADAPTER_KEYS


def trainable_mask(params):
    """A pytree of bools shaped like ``params``: True exactly at ``lora_a``/``lora_b``."""
    return jax.tree_util.tree_map_with_path(lambda p, _: _is_adapter_path(p), params)


def split(params) -> tuple[dict, dict]:
    """``(adapters, base)``: two nested dicts holding the adapter / the other leaves;
    :func:`combine` puts them back together."""
    return partition(params, trainable_mask(params))


def has_adapters(params) -> bool:
    return any(jax.tree.leaves(trainable_mask(params)))


def merge(params, lora_cfg) -> dict:
    """Params with every adapter folded into its kernel: ``W + scale * A @ B``.

    The product is formed in float32 and cast to the kernel's dtype. The result has no
    ``lora_a``/``lora_b`` leaves and fits a model built without the transform.
    """
    if not enabled(lora_cfg):
        raise ValueError("lora.rank <= 0: there is nothing to merge")
    s = scale(lora_cfg)

    def walk(tree):
        out = {k: walk(v) if isinstance(v, dict) else v for k, v in tree.items()}
        if "lora_a" in out or "lora_b" in out:
            if not {"lora_a", "lora_b", "kernel"} <= set(out):
                raise ValueError(f"incomplete adapter: keys {sorted(out)}")
            a, b = out.pop("lora_a"), out.pop("lora_b")
            out["kernel"] = _fold(out["kernel"], a, b, s)
        return out

    return walk(params)


def _fold(kernel, a, b, s):
    n_stack = a.ndim + b.ndim - 2 - kernel.ndim
    lead = kernel.shape[:n_stack]
    rank = a.shape[-1]
    a2 = jnp.reshape(a.astype(jnp.float32), lead + (-1, rank))
    b2 = jnp.reshape(b.astype(jnp.float32), lead + (rank, -1))
    delta = jnp.reshape(jnp.matmul(a2, b2), kernel.shape)
    return (kernel.astype(jnp.float32) + s * delta).astype(kernel.dtype)


__all__ = ["check_config", "combine", "enabled", "has_adapters", "merge", "projection_names",
           "projections", "scale", "split", "trainable_mask", "transform"]
