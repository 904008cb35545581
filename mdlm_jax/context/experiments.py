"""Experiments 1-10 of PAPER.md section 4, each a list of points from ``config.context``.

A point is one prompt scored one way; its :attr:`Point.key` names it in the results file,
so a resumed sweep skips finished points. Every experiment also names its plot axes: each
point carries the plotted ``series`` and ``x``. ``extra`` is the number of tokens after the
answer slot: masks (``filler='mask'``), the string ``" ."`` repeated (``'dot'``; its tokens
are what the tokenizer makes of it), or ``-1`` for "masks equal to ``mask_fraction`` of the
input length" (experiment 5). Every result records the number of mask tokens in its input
(experiment 10: the paper's guideline).

=================  =========================================================================
locality           (1) contiguous relevant block at ``positions``; question at the end
mask_location      (2) the same sweep with the question at the left / middle / right
attribution        (3) mixed at random (``order_seeds`` x ``attribution_points``); gradient
                   of the predicted answer's logit w.r.t. the input embeddings, per example
extra_masks        (4) mixed; ``Answer:[`` + slot + k masks, k in ``mask_counts``; one step,
                   only the first mask (the slot) scored
context_length     (5) ``distractor_counts`` distractors, with ``fixed_masks`` masks or masks
                   equal to ``mask_fraction`` of the input
dot_filler         (6) (4) with the k masks and with ``" ."`` repeated k times instead
unmasking          (7) (4) with the slot and the k masks decoded by the sampler in
                   ``decode_steps`` steps, random or confidence unmasking, vs one step
locality_masks     (8) (1) with ``locality_mask_counts`` extra masks
attribution_split  (9) (3) with ``attribution_masks`` masks appended: gradient on the mask
                   tokens vs the last 50 non-mask tokens vs all non-mask tokens
mask_sensitivity   (10) the short standard evaluation: ``sensitivity_counts`` extra masks,
                   ``sensitivity_points`` points per task pair
=================  =========================================================================
"""

from __future__ import annotations

import dataclasses

from mdlm_jax.context import tasks

METHODS = ("score", "attribution", "random", "confidence")  # the last two: the sampler


@dataclasses.dataclass(frozen=True)
class Point:
    relevant: str
    distractor: str
    index: int
    layout: tasks.Layout
    extra: int = 0
    filler: str = "mask"  # mask | dot
    method: str = "score"
    series: str = ""
    x: float = 0.0

    @property
    def pair(self) -> str:
        return f"{self.relevant}/{self.distractor}"

    @property
    def key(self) -> str:
        lo = self.layout
        return (f"{self.pair}/{self.index}/r{lo.n_relevant}d{lo.n_distractors}/p{lo.position}"
                f"/o{lo.order_seed}/{lo.location}/k{self.extra}/{self.filler}/{self.method}")


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    number: int
    title: str
    xlabel: str
    conditions: object  # cx -> [(layout kwargs, extra, filler, method, series, x)]
    per_point: object = None  # cx -> [(index, order_seed)]; None: range(cx.points), seed 0

    def points(self, cx) -> list[Point]:
        pairs = tasks.task_pairs(cx.relevant_tasks, cx.distractor_tasks)
        idx = self.per_point(cx) if self.per_point else [(i, 0) for i in range(cx.points)]
        out = []
        for rel, dis in pairs:
            for i, order in idx:
                for lay, extra, filler, method, series, x in self.conditions(cx):
                    layout = tasks.Layout(**{"n_relevant": cx.n_relevant,
                                             "n_distractors": cx.n_distractors,
                                             "order_seed": order, **lay}).check()
                    out.append(Point(rel, dis, i, layout, extra, filler, method, series, x))
        return out


def _locality(cx):
    return [(dict(position=p), 0, "mask", "score", "question at the end", p)
            for p in cx.positions]


def _mask_location(cx):
    return [(dict(position=p, location=loc), 0, "mask", "score", f"question {loc}", p)
            for loc in cx.locations for p in cx.positions]


def _attribution(cx):
    return [({}, 0, "mask", "attribution", "mixed", 0)]


def _attribution_split(cx):
    k = cx.attribution_masks
    return [({}, k, "mask", "attribution", f"{k} extra masks", k)]


def _attribution_points(cx):
    return [(i, o) for i in range(cx.attribution_points) for o in range(cx.order_seeds)]


def _extra_masks(cx):
    return [({}, k, "mask", "score", "masks", k) for k in cx.mask_counts]


def _context_length(cx):
    out = []
    for nd in cx.distractor_counts:
        out.append((dict(n_distractors=nd), cx.fixed_masks - 1, "mask", "score",
                    f"{cx.fixed_masks} masks", nd))
        out.append((dict(n_distractors=nd), -1, "mask", "score",
                    f"masks = {cx.mask_fraction:g} x input", nd))
    return out


def _dot_filler(cx):
    return [({}, k, f, "score", {"mask": "masks", "dot": "' .' repeated"}[f], k)
            for f in ("mask", "dot") for k in cx.mask_counts]


def _unmasking(cx):
    names = {"score": "one step", "random": f"{cx.decode_steps} steps, random",
             "confidence": f"{cx.decode_steps} steps, confidence"}
    return [({}, k, "mask", m, names[m], k) for m in ("score", "random", "confidence")
            for k in cx.mask_counts]


def _locality_masks(cx):
    return [(dict(position=p), k, "mask", "score", f"{k} extra masks", p)
            for k in cx.locality_mask_counts for p in cx.positions]


def _sensitivity(cx):
    return [({}, k, "mask", "score", "masks", k) for k in cx.sensitivity_counts]


def _sensitivity_points(cx):
    return [(i, 0) for i in range(cx.sensitivity_points)]


EXPERIMENTS = {e.name: e for e in [
    Experiment("locality", 1, "Locality: relevant block position", "relevant block position",
               _locality),
    Experiment("mask_location", 2, "Mask location", "relevant block position", _mask_location),
    Experiment("attribution", 3, "Gradient attribution per example position",
               "example position", _attribution, _attribution_points),
    Experiment("extra_masks", 4, "Extra masks (one decoding step)", "extra masks k",
               _extra_masks),
    Experiment("context_length", 5, "Context length", "distractor examples",
               _context_length),
    Experiment("dot_filler", 6, "Masks vs ' .' filler", "extra tokens k", _dot_filler),
    Experiment("unmasking", 7, "Unmasking ablation", "extra masks k", _unmasking),
    Experiment("locality_masks", 8, "Locality under extra masks", "relevant block position",
               _locality_masks),
    Experiment("attribution_split", 9, "Attribution split with extra masks", "extra masks",
               _attribution_split, _attribution_points),
    Experiment("mask_sensitivity", 10, "Mask sensitivity", "extra masks k", _sensitivity,
               _sensitivity_points),
]}


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"context.experiment={name!r} is unknown; valid: "
                         f"{', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


__all__ = ["EXPERIMENTS", "METHODS", "Experiment", "Point", "get"]
