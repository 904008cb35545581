"""One ``train`` per workdir: ``WORKDIR/train.lock`` names the run that holds it.

The lock file is created atomically (``O_CREAT | O_EXCL``) and holds the holder's host,
pid and start time. A second ``train`` on the same workdir is refused at once, naming the
holder. A lock whose holder is gone (same host, no such process: a killed run) is stale and
taken over. A lock held from another host cannot be probed; the refusal says how to clear
it once that run is known to be dead.

Multi-host jobs: only process 0 takes the lock (the workdir is shared), and every process
learns its outcome, so a refused job stops on all hosts instead of waiting in a collective.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket

LOCK_FILE = "train.lock"


class WorkdirInUseError(ValueError):
    """Another ``train`` holds the workdir (a user error: one line from ``main``)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # being written, or unreadable: treated as held by an unknown run


def _describe(holder: dict) -> str:
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
            f"{holder.get('started', '?')}")


def _stale(holder: dict) -> bool:
    pid = holder.get("pid")
    return (holder.get("host") == socket.gethostname() and isinstance(pid, int)
            and pid != os.getpid() and not _alive(pid))


def acquire(workdir: str) -> str:
    """Take the lock of ``workdir`` (this process); returns the lock file's path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if _stale(holder):
                # take over: rename is atomic, so of two runs taking over only one wins
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, f"{path}.stale.{os.getpid()}")
                    os.remove(f"{path}.stale.{os.getpid()}")
                continue
            raise WorkdirInUseError(
                f"{workdir} is in use by another train run ({_describe(holder)}); wait for "
                f"it to finish, or use another --workdir. If that run is dead (e.g. on "
                f"another host), delete {path}") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise WorkdirInUseError(f"could not take the lock {path}; another run keeps taking it")


def release(path: str) -> None:
    holder = _read(path)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def held(workdir: str):
    """The lock for the duration of a run (process 0 takes it; all processes agree)."""
    import jax

    path, error = None, None
    created = not os.path.exists(workdir)
    if jax.process_index() == 0:
        try:
            path = acquire(workdir)
        except WorkdirInUseError as e:
            error = e
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        refused = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if int(refused) and error is None:
            error = WorkdirInUseError(f"{workdir} is in use by another train run (see process 0)")
    if error is not None:
        raise error
    try:
        yield
    finally:
        if path is not None:
            release(path)
            if created:  # a run that wrote nothing leaves no empty workdir behind
                with contextlib.suppress(OSError):
                    os.rmdir(workdir)
