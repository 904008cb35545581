"""Logical axis names -> mesh axes.

Parameters carry ``logical_axes`` metadata; activations are annotated with
:func:`constrain`. The rules (``config.mesh.rules``) are a sequence of
``(logical_name, mesh_axes)`` pairs, ``mesh_axes`` being a mesh axis name, a tuple of
them, or ``None`` (replicated). A mesh axis is used at most once per array: a later
logical axis that maps onto an axis already used stays replicated.
"""

from __future__ import annotations

import contextlib

import jax
from jax.sharding import NamedSharding, PartitionSpec

_ACTIVE_RULES: list[tuple] = []
DEFERRED = ("lora_rank",)


def rules_dict(rules) -> dict:
    out = {}
    for name, axes in rules:
        out[name] = axes
    return out


def logical_to_spec(names, rules, mesh_axis_names=None) -> PartitionSpec:
    """PartitionSpec for an array whose dims carry logical ``names``."""
    table = rules_dict(rules)
    used: set[str] = set()
    spec = [None] * len(names)
    order = sorted(range(len(names)), key=lambda i: names[i] in DEFERRED)
    for i in order:
        axes = table.get(names[i]) if names[i] is not None else None
        if axes is None:
            continue
        axes_t = (axes,) if isinstance(axes, str) else tuple(axes)
        keep = tuple(a for a in axes_t if a not in used
                     and (mesh_axis_names is None or a in mesh_axis_names))
        used.update(keep)
        if keep:
            spec[i] = keep[0] if len(keep) == 1 else keep
    return PartitionSpec(*spec)


@contextlib.contextmanager
def logical_rules(rules):
    """Activate ``rules`` for :func:`constrain` while tracing model code."""
    _ACTIVE_RULES.append(tuple(rules))
    try:
        yield
    finally:
        _ACTIVE_RULES.pop()


class MeshJitted:
    """A jitted function bound to a mesh and logical rules: calling it, or lowering it
    ahead of time (``.lower(*abstract_args)``, e.g. ``jax.ShapeDtypeStruct``s for a TPU
    topology's devices), runs inside ``mesh`` with ``rules`` active."""

    def __init__(self, jitted, mesh, rules):
        self.jitted, self.mesh, self.rules = jitted, mesh, tuple(rules or ())

    @contextlib.contextmanager
    def _active(self):
        with jax.set_mesh(self.mesh), logical_rules(self.rules):
            yield

    def __call__(self, *args):
        with self._active():
            return self.jitted(*args)

    def lower(self, *args):
        with self._active():
            return self.jitted.lower(*args)


def jit_on_mesh(fn, mesh, *, in_shardings, out_shardings, rules=()):
    """``fn`` jitted with these shardings; every call (and ``.lower``) runs inside ``mesh``
    with ``rules`` active (so the model's :func:`constrain` annotations apply): a
    :class:`MeshJitted`. ``mesh=None``: plain ``jax.jit``."""
    if mesh is None:
        return jax.jit(fn)
    return MeshJitted(jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings),
                      mesh, rules)


def constrain(x, names):
    """``with_sharding_constraint`` by logical names; a no-op without a mesh or rules."""
    if not _ACTIVE_RULES:
        return x
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    spec = logical_to_spec(names, _ACTIVE_RULES[-1], mesh.axis_names)
    if not _divides(x.shape, spec, dict(zip(mesh.axis_names, mesh.axis_sizes))):
        return x
    return jax.lax.with_sharding_constraint(x, spec)


def _axis_size(entry, sizes):
    if entry is None:
        return 1
    if isinstance(entry, str):
        return sizes[entry]
    n = 1
    for a in entry:
        n *= sizes[a]
    return n


def _divides(shape, spec, sizes) -> bool:
    return all(dim % _axis_size(e, sizes) == 0 for dim, e in zip(shape, spec))


def param_specs(axes_tree, shapes_tree, rules, mesh) -> object:
    """PartitionSpecs for a params pytree; dims that do not divide stay replicated."""
    sizes = dict(zip(mesh.axis_names, mesh.devices.shape))

    def one(names, shape):
        spec = logical_to_spec(names, rules, mesh.axis_names)
        fixed = [e if dim % _axis_size(e, sizes) == 0 else None
                 for dim, e in zip(shape.shape, spec)]
        return PartitionSpec(*fixed)

    return jax.tree.map(one, axes_tree, shapes_tree, is_leaf=lambda x: isinstance(x, tuple))


def param_shardings(axes_tree, shapes_tree, rules, mesh):
    specs = param_specs(axes_tree, shapes_tree, rules, mesh)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))
