"""What keeps a workdir's checkpoints safe: retention that never deletes the newest one,
damaged steps found before a restore, settings that would not fit the saved layout named
against ``WORKDIR/config.json``, and a full disk reported as one line.
"""

from __future__ import annotations

import errno
import os

from mdlm_jax.checkpoint import checkpoint_dir, read_config

# Keys whose value fixes the layout of the saved parameters (model and adapters) and, for
# a resumed ``train``, of the optimizer state and the data iterator's state.
PARAM_LAYOUT_KEYS = (
    "model.family", "model.vocab_size", "model.d_model", "model.n_layers", "model.n_heads",
    "model.n_kv_heads", "model.head_dim", "model.mlp_dim", "model.qkv_bias",
    "model.time_conditioning", "model.cond_dim", "model.tie_embeddings",
    "lora.rank", "lora.targets",
    "data.tokenizer",  # the weights were trained on its ids: another tokenizer scores nonsense
)
STATE_LAYOUT_KEYS = PARAM_LAYOUT_KEYS + (
    "optimizer.ema_decay", "optimizer.grad_clip", "data.num_workers")
# Only whether these are on (> 0) changes the layout (EMA copy, clipping state).
_SWITCHES = ("optimizer.ema_decay", "optimizer.grad_clip")


def check_config(ckpt_cfg) -> None:
    """``checkpoint.*`` values that could lose checkpoints are refused at config load."""
    if ckpt_cfg.keep < 1:
        raise ValueError(f"checkpoint.keep={ckpt_cfg.keep} would delete every checkpoint, "
                         "those of earlier runs included; keep at least the newest: "
                         "--config.checkpoint.keep=1 (or more)")


# ------------------------------------------------------------------ damaged steps
def step_damage(workdir: str, step: int) -> str | None:
    """Why checkpoint ``step`` cannot be complete (empty, metadata missing), or None."""
    path = os.path.join(checkpoint_dir(workdir), str(step))
    entries = os.listdir(path) if os.path.isdir(path) else []
    if not entries:
        return "empty step directory"
    if "_CHECKPOINT_METADATA" not in entries:
        return "_CHECKPOINT_METADATA is missing"
    for item in ("state", "params"):
        item_dir = os.path.join(path, item)
        if os.path.isdir(item_dir) and not os.path.exists(os.path.join(item_dir, "_METADATA")):
            return f"{item}/_METADATA is missing"
    if not any(os.path.isdir(os.path.join(path, i)) for i in ("state", "params")):
        return "it holds neither a train state nor parameters"
    return None


def all_steps(workdir: str) -> list[int]:
    path = checkpoint_dir(workdir)
    if not os.path.isdir(path):
        return []
    return sorted(int(d) for d in os.listdir(path)
                  if d.isdigit() and os.path.isdir(os.path.join(path, d)))


def newest_intact_step(workdir: str, *, skip=()) -> tuple[int | None, list[tuple[int, str]]]:
    """``(step, damaged)``: the newest step that looks complete, and the newer damaged ones
    (``skip``: steps known to be damaged, with their reason, e.g. a failed restore)."""
    damaged = []
    known = dict(skip)
    for step in reversed(all_steps(workdir)):
        why = known.get(step) or step_damage(workdir, step)
        if why is None:
            return step, damaged
        damaged.append((step, why))
    return None, damaged


def damage_note(workdir: str, damaged, fallback) -> str:
    names = "; ".join(f"step {s} ({why})" for s, why in damaged)
    base = f"damaged checkpoint in {checkpoint_dir(workdir)}: {names}; it was kept"
    if fallback is None:
        return base + ", and no complete checkpoint is older"
    return base + f"; the newest complete checkpoint is step {fallback}"


class DamagedCheckpointError(ValueError):
    pass


def refuse_damaged(workdir: str, damaged, fallback):
    """Training cannot skip a damaged step (it would save over it later): say how to move
    it aside."""
    ckdir = checkpoint_dir(workdir)
    moves = " && ".join(f"mv {ckdir}/{s} {os.path.abspath(workdir)}/damaged_step{s}"
                        for s, _ in damaged)
    raise DamagedCheckpointError(
        f"{damage_note(workdir, damaged, fallback)}. To resume from "
        f"{'step ' + str(fallback) if fallback is not None else 'scratch'}, move the damaged "
        f"one aside first: {moves}")


# ------------------------------------------------------------------ layout vs config.json
def _value(config, dotted: str):
    section, key = dotted.split(".")
    node = config[section]
    v = node[key]
    if dotted == "model.head_dim" and not v:
        return node.d_model // node.n_heads
    if dotted == "model.n_kv_heads" and not v:
        return node.n_heads
    if dotted in _SWITCHES:
        return "on" if v > 0 else "off"
    if dotted == "model.cond_dim" and not node.time_conditioning:
        return None  # no time embedding: its width does not matter
    if dotted == "lora.targets" and not config.lora.rank:
        return None  # no adapters: the targets do not matter
    return tuple(v) if isinstance(v, (list, tuple)) else v


def layout_differences(workdir: str, config, keys) -> list[str]:
    """``'key=stored there, here'`` for each of ``keys`` whose value differs from
    ``WORKDIR/config.json`` (empty when the workdir has no config.json)."""
    if not os.path.exists(os.path.join(workdir, "config.json")):
        return []
    stored = read_config(workdir)
    out = []
    for key in keys:
        there, here = _value(stored, key), _value(config, key)
        if there != here:
            out.append((key, there, here))
    return out


def check_layout(workdir: str, config, keys, command: str) -> None:
    """Refuse settings that change the saved state's layout, naming the keys."""
    diffs = layout_differences(workdir, config, keys)
    if not diffs:
        return
    names = ", ".join(f"{k}={there!r} there but {here!r} here" for k, there, here in diffs)
    fix = " ".join(f"--config.{k}={_flag(k, there)}" for k, there, _ in diffs)
    raise ValueError(
        f"{command} with settings that do not fit the checkpoints of {workdir}: {names} "
        f"(from {os.path.join(workdir, 'config.json')}); pass the stored values ({fix}) or "
        "use a new --workdir (nothing was changed)")


def _flag(key: str, value) -> str:
    if key in _SWITCHES:
        return "<a value > 0>" if value == "on" else "0"
    if isinstance(value, tuple):
        return "'" + repr(value) + "'"
    return str(value)


# ------------------------------------------------------------------ full disk
def is_disk_full(error: BaseException) -> bool:
    """An ENOSPC anywhere in the exception chain (Python or tensorstore's message)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error) or "ENOSPC" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


class DiskFullError(OSError):
    pass


def disk_full_error(workdir: str, step) -> DiskFullError:
    intact, _ = newest_intact_step(workdir)
    kept = (f"the newest complete checkpoint, step {intact}, is intact" if intact is not None
            else "no complete checkpoint exists yet")
    return DiskFullError(
        errno.ENOSPC, f"no space left on the device of {checkpoint_dir(workdir)} while saving "
        f"{'a checkpoint' if step is None else f'step {step}'}; {kept}. Free space (or "
        "lower checkpoint.keep) and run the same command again to resume")


def finish_saves(mngr, workdir, step) -> None:
    """Wait for pending (async) saves; a full disk is one line naming what is intact."""
    try:
        mngr.wait_until_finished()
    except Exception as e:
        if is_disk_full(e):
            raise disk_full_error(workdir, step) from None
        raise


def close(mngr, workdir, *, failing: bool = False) -> None:
    """Finish pending saves and close ``mngr``; while another error is being raised
    (``failing``), a second one from the saves is not allowed to replace it."""
    try:
        finish_saves(mngr, workdir, None)
        mngr.close()
    except Exception:
        if not failing:
            raise


def save(mngr, workdir, step, args) -> None:
    """``mngr.save``; a full disk (now or from an earlier async save) is one line."""
    try:
        mngr.save(step, args=args, force=True)
    except Exception as e:
        if is_disk_full(e):
            raise disk_full_error(workdir, step) from None
        raise


def resume_step(workdir, config):
    """The step ``train`` resumes from (None: a fresh start): the newest checkpoint, refused
    with the remedy when it is damaged or when the settings do not fit its layout."""
    from mdlm_jax.checkpoint import items_at

    step, damaged = newest_intact_step(workdir)
    if damaged:
        refuse_damaged(workdir, damaged, step)
    if step is not None:
        items = items_at(workdir, step)
        keys = STATE_LAYOUT_KEYS if "state" in items else PARAM_LAYOUT_KEYS
        if "data" not in items:
            keys = tuple(k for k in keys if k != "data.num_workers")
        check_layout(workdir, config, keys, "resuming train")
    return step
