"""Parameter trees as nested dicts: split by a mask, and put back together.

Used for the trainable / frozen split of the train state (LoRA) and for laying saved
adapters over reloaded base weights.
"""

from __future__ import annotations


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
