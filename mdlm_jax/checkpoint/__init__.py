"""Orbax checkpoints of a workdir.

Layout: ``WORKDIR/checkpoints/<step>/`` with the items

- ``state``: the train state (step, params, opt_state, ema) written by training;
- ``data``: the grain iterator state, saved with the train state;
- ``params``: parameters alone (``main convert`` writes these; training starts from them).

``WORKDIR/config.json`` is the resolved config of the run that wrote the workdir.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NamedTuple

import jax
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_manager(workdir: str, ckpt_cfg=None, *, read_only: bool = False):
    keep = ckpt_cfg.keep if ckpt_cfg is not None else 3
    use_async = bool(ckpt_cfg.async_save) if ckpt_cfg is not None else False
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=use_async and not read_only,
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def latest_step(workdir: str) -> int | None:
    path = checkpoint_dir(workdir)
    if not os.path.isdir(path):
        return None
    with make_manager(workdir, read_only=True) as mngr:
        return mngr.latest_step()


def items_at(workdir: str, step: int) -> set[str]:
    path = os.path.join(checkpoint_dir(workdir), str(step))
    if not os.path.isdir(path):
        return set()
    return {d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))}


def stored_shapes(workdir: str, step: int, item: str):
    """Shapes of the arrays stored in ``item`` at ``step`` (from orbax metadata)."""
    path = os.path.join(checkpoint_dir(workdir), str(step), item)
    if not os.path.isdir(path):
        return None
    try:
        meta = ocp.StandardCheckpointer().metadata(path)
    except Exception as e:
        raise UnreadableCheckpoint(f"unreadable metadata: {type(e).__name__}") from e
    tree = getattr(meta, "item_metadata", meta)
    tree = getattr(tree, "tree", tree)
    return jax.tree.map(lambda m: tuple(m.shape) if hasattr(m, "shape") else None, tree)


def save_params(workdir: str, params, config, *, step: int = 0) -> str:
    """Write ``params`` as a params-only checkpoint at ``step`` plus ``config.json``."""
    with make_manager(workdir) as mngr:
        if step in mngr.all_steps():
            raise FileExistsError(
                f"{checkpoint_dir(workdir)}/{step} exists already; choose another workdir "
                "(nothing was overwritten)")
        mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)))
        mngr.wait_until_finished()
    write_config(workdir, config)
    return os.path.join(checkpoint_dir(workdir), str(step))


def write_config(workdir: str, config) -> None:
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, "config.json.tmp")
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(workdir, "config.json"))


def read_config(workdir: str) -> mlc.ConfigDict:
    """The resolved config a workdir was trained with, over the base declarations."""
    from mdlm_jax.config_base import base_config

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {workdir} is not a workdir written by "
                                "'python -m mdlm_jax.main train' or 'convert'")
    with open(path) as f:
        stored = json.load(f)
    cfg = base_config()
    _update(cfg, stored)
    return cfg


def _update(cfg, stored: dict):
    for k, v in stored.items():
        if k not in cfg:
            continue
        if isinstance(cfg[k], mlc.ConfigDict) and isinstance(v, dict):
            if k == "terms":
                cfg[k] = mlc.ConfigDict(v)
            else:
                _update(cfg[k], v)
        else:
            cfg[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v) \
                if isinstance(v, list) else v


class RestoredParams(NamedTuple):
    params: dict  # the target's tree, or its subtree stored in a train state
    step: int
    item: str  # "params" (a params-only checkpoint) or "state" (a train state)


def restore_params_tree(workdir: str, target, *, use_ema: bool = True,
                        step=None) -> RestoredParams:
    """The parameters stored at the latest (or given) step of ``workdir``, read into
    ``target`` (a tree of ``ShapeDtypeStruct``, with shardings or not: then host arrays).

    From a train state: the EMA when stored and ``use_ema``, else the raw parameters, at
    the paths the state holds (a LoRA run stores its adapters only). Without ``step``,
    damaged newer steps are skipped with a warning (and kept).
    """
    from mdlm_jax.checkpoint import integrity

    if step is not None:
        return _restore_params_at(workdir, target, use_ema, step)
    failed = []
    while True:
        step, damaged = integrity.newest_intact_step(workdir, skip=failed)
        if step is None:
            if damaged:
                raise integrity.DamagedCheckpointError(
                    integrity.damage_note(workdir, damaged, None))
            raise FileNotFoundError(f"no checkpoint under {checkpoint_dir(workdir)}; train "
                                    f"first: python -m mdlm_jax.main train --workdir {workdir}")
        if damaged:
            print(f"warning: {integrity.damage_note(workdir, damaged, step)}; using it",
                  file=sys.stderr)
        try:
            return _restore_params_at(workdir, target, use_ema, step)
        except UnreadableCheckpoint as e:
            failed.append((step, str(e)))


class UnreadableCheckpoint(Exception):
    """orbax could not read a step that looked complete (e.g. a truncated file)."""


def read_step(mngr, step, args):
    """``mngr.restore(step, args)``; a failure to read is :class:`UnreadableCheckpoint`."""
    try:
        return mngr.restore(step, args=args)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise UnreadableCheckpoint(f"unreadable: {type(e).__name__}: {first}") from e


def _restore_params_at(workdir, target, use_ema, step) -> RestoredParams:
    items = items_at(workdir, step)
    with make_manager(workdir, read_only=True) as mngr:
        if "params" in items and "state" not in items:
            out = read_step(mngr, step, ocp.args.Composite(
                params=ocp.args.StandardRestore(target)))
            return RestoredParams(out["params"], step, "params")
        stored = stored_shapes(workdir, step, "state")
        if not isinstance(stored, dict) or "params" not in stored:
            raise UnreadableCheckpoint("unreadable: the state's metadata holds no params")
        which = "ema" if use_ema and stored.get("ema") else "params"
        item = {which: _select(target, stored[which])}
        out = read_step(mngr, step, ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=_restore_args(item), partial_restore=True)))
        return RestoredParams(out["state"][which], step, "state")


def _select(target, stored):
    """The leaves of ``target`` at the paths present in ``stored`` (a subtree)."""
    if not isinstance(stored, dict):
        return target
    return {k: _select(target[k], v) for k, v in stored.items()}


def _restore_args(tree):
    """Orbax restore arguments: straight into each leaf's sharding, else to host numpy."""
    def one(x):
        sh = getattr(x, "sharding", None)
        if sh is not None:
            return ocp.ArrayRestoreArgs(sharding=sh, global_shape=x.shape, dtype=x.dtype)
        return ocp.RestoreArgs(restore_type=np.ndarray, dtype=x.dtype)

    return jax.tree.map(one, tree)
