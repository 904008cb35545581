"""Summaries, markdown tables and plots of the suite's results (derived from results.jsonl).

Accuracy is first averaged within each task pair, then over the pairs; the 95% confidence
interval is Student's t over the pair means (the paper's intervals over its 16 tasks).

Attribution (experiments 3 and 9): per token the L2 norm of the gradient (see
``scoring.attribution``); ``share`` normalizes the norms to sum 1 over the prompt, ``rel``
divides them by their maximum. Per point: the share of each in-context example
(``attr_pieces``, kinds in ``attr_kinds``: r relevant, d distractor, q the test question)
and, with masks in the prompt, the mean ``rel`` on mask tokens, on the last 50 non-mask
tokens and on all non-mask tokens (the paper's Table 1 groups).
"""

from __future__ import annotations

import json
import os

import numpy as np

SPLIT_GROUPS = (("attr_mask", "mask tokens"), ("attr_last50", "last 50 non-mask"),
                ("attr_nonmask", "all non-mask"))


def attribution_fields(norm_L, enc, prompt, is_mask_L=None) -> dict:
    g = np.asarray(norm_L, np.float64)
    share = g / (g.sum() or 1.0)
    rel = g / (g.max() or 1.0)
    pieces = [round(float(share[s:e].sum()), 6) for s, e in enc.spans]
    kinds = "".join(k[0] for k in prompt.kinds)
    out = {"attr_pieces": pieces, "attr_kinds": kinds,
           "attr_relevant_share": float(sum(p for p, k in zip(pieces, kinds) if k == "r"))}
    if is_mask_L is not None:
        mask = np.asarray(is_mask_L, bool)
        non = np.nonzero(~mask)[0]
        out.update(attr_mask=float(rel[mask].mean()) if mask.any() else None,
                   attr_last50=float(rel[non[-50:]].mean()),
                   attr_nonmask=float(rel[non].mean()),
                   attr_mask_share=float(share[mask].sum()))
    return out


def mean_ci(values) -> tuple[float, float | None]:
    """Mean and the half-width of the 95% t interval (None with fewer than 2 values)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), None
    from scipy import stats

    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def _pair_mean(rows, field):
    by_pair = {}
    for r in rows:
        if r.get(field) is not None:
            by_pair.setdefault(r["pair"], []).append(float(r[field]))
    return [float(np.mean(v)) for v in by_pair.values()]


def summarize(exp, rows: list[dict], header: dict) -> dict:
    groups = {}
    for r in rows:
        groups.setdefault((r["series"], r["x"]), []).append(r)
    conditions = []
    for (series, x), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        acc, ci = mean_ci(_pair_mean(rs, "correct"))
        c = {"series": series, "x": x, "accuracy": acc, "ci95": ci, "points": len(rs),
             "pairs": len({r["pair"] for r in rs}),
             "masks": float(np.mean([r["masks"] for r in rs])),
             "prompt_tokens": float(np.mean([r["prompt_tokens"] for r in rs]))}
        for field, name in (("choice_correct", "restricted_accuracy"),
                            ("p_correct", "p_correct"), ("attr_relevant_share",
                                                         "relevant_share")):
            vals = _pair_mean(rs, field)
            if vals:
                c[name], c[name + "_ci95"] = mean_ci(vals)
        for field, _ in SPLIT_GROUPS:
            vals = [r[field] for r in rs if r.get(field) is not None]
            if vals:
                c[field] = float(np.mean(vals))
        conditions.append(c)
    out = {"experiment": exp.name, "number": exp.number, "title": exp.title, **header,
           "points": len(rows), "conditions": conditions}
    attr = [r for r in rows if "attr_pieces" in r]
    if attr:
        out["attribution_by_position"] = _by_position(attr)
    return out


def _by_position(rows) -> dict:
    """Mean share of each in-context example position, split by the example's kind."""
    acc = {"relevant": {}, "distractor": {}}
    for r in rows:
        i = 0
        for share, kind in zip(r["attr_pieces"], r["attr_kinds"]):
            if kind == "q":
                continue
            name = "relevant" if kind == "r" else "distractor"
            acc[name].setdefault(i, []).append(share)
            i += 1
    return {name: {str(i): float(np.mean(v)) for i, v in sorted(d.items())}
            for name, d in acc.items()}


def _fmt(v, ci=None, digits=3):
    if v is None:
        return "-"
    return f"{v:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def markdown_table(exp, summary: dict) -> str:
    head = (f"**({exp.number}) {exp.title}** - model {summary['model']}, seed "
            f"{summary['seed']}, {summary['points']} points\n\n")
    cols = ["series", exp.xlabel, "accuracy (95% CI)", "restricted acc.", "p(correct)",
            "mask tokens", "prompt tokens", "pairs", "points"]
    split = any("attr_mask" in c for c in summary["conditions"])
    if split:
        cols += [name for _, name in SPLIT_GROUPS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for c in summary["conditions"]:
        cells = [c["series"], f"{c['x']:g}", _fmt(c["accuracy"], c["ci95"]),
                 _fmt(c.get("restricted_accuracy")), _fmt(c.get("p_correct")),
                 f"{c['masks']:.1f}", f"{c['prompt_tokens']:.0f}", str(c["pairs"]),
                 str(c["points"])]
        if split:
            cells += [_fmt(c.get(f)) for f, _ in SPLIT_GROUPS]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


METRICS = {"accuracy": ("accuracy", "ci95"),  # plotted measure -> (value, 95% CI half-width)
           "p_correct": ("p(correct)", "p_correct_ci95")}


def plot(exp, summary: dict, path: str, metric: str = "accuracy") -> None:
    """One line per series with its 95% band; ``metric`` accuracy (with the restricted
    accuracy dashed) or p_correct."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if "attribution_by_position" in summary and exp.name == "attribution":
        for name, color in (("relevant", "tab:green"), ("distractor", "tab:gray")):
            d = summary["attribution_by_position"][name]
            xs = [int(i) for i in d]
            ax.plot(xs, list(d.values()), "o-", ms=3, color=color, label=f"{name} example")
        ax.set_xlabel(exp.xlabel)
        ax.set_ylabel("normalized gradient share")
    elif exp.name == "attribution_split":
        c = summary["conditions"][0]
        names = [name for _, name in SPLIT_GROUPS]
        ax.bar(names, [c.get(f) or 0.0 for f, _ in SPLIT_GROUPS],
               color=["tab:red", "tab:blue", "tab:gray"])
        ax.set_ylabel("mean gradient norm / max")
    else:
        series = {}
        for c in summary["conditions"]:
            series.setdefault(c["series"], []).append(c)
        label, ci_key = METRICS[metric]
        for name, cs in series.items():
            xs = np.asarray([c["x"] for c in cs], float)
            ys = np.asarray([c.get(metric, np.nan) for c in cs], float)
            (line,) = ax.plot(xs, ys, "o-", ms=4, label=name)
            if all(c.get(ci_key) is not None for c in cs):
                ci = np.asarray([c[ci_key] for c in cs], float)
                ax.fill_between(xs, ys - ci, ys + ci, alpha=0.2, color=line.get_color())
            if metric == "accuracy" and all("restricted_accuracy" in c for c in cs):
                ax.plot(xs, [c["restricted_accuracy"] for c in cs], "x--", ms=4, lw=1,
                        color=line.get_color(), label=f"{name} (argmax over A/B/C)")
        ax.axhline(1 / 3, ls=":", color="k", lw=1, label="chance")
        ax.set_ylim(0, 1)
        ax.set_xlabel(exp.xlabel)
        ax.set_ylabel(label)
    ax.set_title(f"({exp.number}) {exp.title}\n{summary['model']}", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _replace(path: str, write) -> None:
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def write(folder: str, exp, summary: dict, rows) -> None:
    """``summary.json``, ``table.md`` and ``plot.png`` (derived; rewritten atomically)."""
    def dump(p):
        with open(p, "w") as f:
            json.dump(summary, f, indent=2)

    def table(p):
        with open(p, "w") as f:
            f.write(markdown_table(exp, summary))

    _replace(os.path.join(folder, "summary.json"), dump)
    _replace(os.path.join(folder, "table.md"), table)
    _replace(os.path.join(folder, "plot.png"), lambda p: plot(exp, summary, p))


__all__ = ["METRICS", "attribution_fields", "markdown_table", "mean_ci", "plot", "summarize",
           "write"]
