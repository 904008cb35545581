"""Parameter trees as nested dicts: flattened to paths, split by a mask, put back together.

Used for the trainable / frozen split of the train state (LoRA), for laying saved adapters
or imported weights over other weights, and for the HF importer and exporter, which name
parameters by path (``'blocks/attn/q/kernel'``).
"""

from __future__ import annotations


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{'a/b/c': leaf}`` from a nested dict (every value that is not a dict is a leaf)."""
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "/"))
        else:
            out[name] = v
    return out


def unflatten(flat: dict) -> dict:
    """Inverse of :func:`flatten`: a nested dict from ``{'a/b/c': leaf}``."""
    tree: dict = {}
    for path, v in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def partition(params: dict, mask: dict):
    """Split a nested dict into ``(selected, rest)`` by a same-shaped bool pytree."""
    sel, rest = {}, {}
    for k, v in params.items():
        m = mask[k]
        if isinstance(v, dict):
            a, b = partition(v, m)
            if a:
                sel[k] = a
            if b:
                rest[k] = b
        elif m:
            sel[k] = v
        else:
            rest[k] = v
    return sel, rest


def combine(a: dict, b: dict) -> dict:
    """Inverse of :func:`partition`: a deep merge of two nested dicts with disjoint leaves."""
    out = dict(a)
    for k, v in b.items():
        if k in out and isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = combine(out[k], v)
        elif k in out:
            raise ValueError(f"parameter {k!r} is in both parts")
        else:
            out[k] = v
    return out


def override(base: dict, top: dict) -> dict:
    """``base`` with every leaf of ``top`` laid over it (added or replaced)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = override(out.get(k, {}), v) if isinstance(v, dict) else v
    return out
