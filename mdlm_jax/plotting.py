"""The loss curve of a workdir as a PNG (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import math
import os

from mdlm_jax import monitoring

LOSS_CURVE = "loss_curve.png"


def save_loss_curve(workdir: str, path: str | None = None) -> str | None:
    """Plot ``workdir/metrics.jsonl``: train loss and validation NELBO (nats per token,
    left axis; bits per token on the right) against step. Writes ``path`` (default
    ``workdir/loss_curve.png``) and returns it, or None when nothing was logged.

    The picture is redrawn from the whole metrics history on every call (a resumed run's
    curve includes the earlier steps); it is written to a temporary file and renamed, so
    an interrupted call never leaves a truncated image.
    """
    train = monitoring.read_metrics(workdir, "train")
    evals = monitoring.read_metrics(workdir, "eval")
    if not train and not evals:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = path or os.path.join(workdir, LOSS_CURVE)
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)  # the Agg backend for this figure only; pyplot's state is untouched
    ax = fig.add_subplot()
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1.2,
                label="train loss")
    nats = [(r["step"], r["nats_per_token"]) for r in evals if "nats_per_token" in r]
    if nats:
        ax.plot(*zip(*nats), "o-", ms=5, label="validation NELBO")
        step, last = nats[-1]
        ax.annotate(f"{last / math.log(2):.3f} bits/token", (step, last),
                    textcoords="offset points", xytext=(-10, 12), ha="right")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per token")
    right = ax.secondary_yaxis("right", functions=(lambda n: n / math.log(2),
                                                   lambda b: b * math.log(2)))
    right.set_ylabel("bits per token")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(os.path.basename(os.path.normpath(workdir)))
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
