"""The paper's three findings as paired contrasts between conditions, and the verdict rule.

Every experiment of the suite scores the same questions under every condition: a test
point is ``(task pair, index, order seed)`` (``tasks.build_prompt``: the question and its
examples depend on these only, not on the block position or the number of masks), and the
arms of a reproduction are scored with the same context settings, so on the same points. A
contrast is a signed sum of conditions evaluated question by question, e.g. locality =
p(correct | relevant block next to the question) - p(correct | block farthest away) for
each question, then averaged over the questions present in every condition. Its standard
error is the paired one, sd(differences) / sqrt(n), and its 95% confidence interval is
Student's t over the n differences (``report.mean_ci``).

The rule, declared before any result is read (:data:`RULE`; the report prints it):

- the primary measure is p(correct), the probability of the right letter at the answer
  slot (fine-grained: at small scale accuracy is too coarse); accuracy (the greedy token
  is the right letter) is the secondary measure;
- **reproduced**: the 95% CI of the p(correct) contrast lies entirely on the side the paper
  predicts (above zero), and the accuracy contrast's CI does not lie entirely below zero;
- **not reproduced**: the p(correct) CI lies entirely below zero (the opposite effect);
- **inconclusive**: otherwise: the CI includes zero, fewer than two questions are paired,
  or the two measures disagree (p(correct) up, accuracy significantly down);
- and in any case **inconclusive** when a model in the contrast does not do the task: its
  restricted accuracy (argmax over A / B / C) with the relevant examples next to the
  question is not above chance (the 95% CI of restricted accuracy minus the best constant
  letter's score, 1/3 with balanced answers, is not above zero; :func:`does_task`): the
  differences of a model at chance say nothing about its use of the context.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mdlm_jax.context.report import mean_ci

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MEASURES = (("p_correct", "p(correct)"), ("correct", "accuracy"))
CHANCE = 1 / 3
RULE = (
    "Each contrast is computed per test question (task pair, index, order seed), since every "
    "condition and every arm scores the same questions, and averaged over the questions "
    "present in all its conditions; standard errors are paired (sd of the per-question "
    "differences / sqrt(n)) and 95% confidence intervals are Student's t over those "
    "differences. Primary measure: p(correct), the probability of the right letter at the "
    "answer slot; secondary: accuracy (the greedy token is the right letter). **Reproduced**: "
    "the p(correct) CI lies entirely above zero (the direction the paper reports) and the "
    "accuracy CI does not lie entirely below zero. **Not reproduced**: the p(correct) CI lies "
    "entirely below zero. **Inconclusive**: otherwise (the CI includes zero, fewer than two "
    "paired questions, or accuracy significantly contradicts p(correct)); and in any case "
    "**inconclusive** when a model in the contrast does not do the task: its restricted "
    "accuracy (argmax over A / B / C) with the relevant examples next to the question, no "
    "extra masks, is not above chance (the 95% CI of restricted accuracy minus the score of "
    "the best constant letter, 1/3 with balanced answers, does not lie above zero). The "
    "headline "
    "verdict of each finding is that of its first contrast (the from-scratch MDLM); the other "
    "rows are shown with the same rule. The evaluation settings are the context presets as "
    "committed, fixed before the runs; nothing is chosen after seeing results.")


# ------------------------------------------------------------------ statistics
@dataclasses.dataclass(frozen=True)
class Paired:
    """Mean of per-question differences with its paired standard error and 95% CI."""

    n: int
    mean: float | None
    se: float | None
    ci: tuple[float, float] | None

    def fmt(self, digits: int = 4) -> str:
        if self.mean is None:
            return "-"
        if self.ci is None:
            return f"{self.mean:+.{digits}f} (n={self.n})"
        return (f"{self.mean:+.{digits}f} [{self.ci[0]:+.{digits}f}, {self.ci[1]:+.{digits}f}] "
                f"(SE {self.se:.{digits}f}, n={self.n})")


def paired(differences) -> Paired:
    """:class:`Paired` of per-question differences (already paired by the caller)."""
    d = np.asarray(list(differences), np.float64)
    if len(d) == 0:
        return Paired(0, None, None, None)
    mean, half = mean_ci(d)
    if half is None:
        return Paired(len(d), mean, None, None)
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    return Paired(len(d), mean, se, (mean - half, mean + half))


def verdict(primary: Paired, secondary: Paired | None = None, *, capable: bool = True) -> str:
    """The rule of the module docstring; ``primary`` p(correct), ``secondary`` accuracy,
    ``capable`` whether every model of the contrast does the task above chance."""
    if primary.ci is None or not capable:
        return INCONCLUSIVE
    lo, hi = primary.ci
    if hi < 0:
        return NOT_REPRODUCED
    if lo > 0:
        if secondary is not None and secondary.ci is not None and secondary.ci[1] < 0:
            return INCONCLUSIVE
        return REPRODUCED
    return INCONCLUSIVE


# ------------------------------------------------------------------ conditions
def question(row: dict) -> tuple:
    """The test question a result row belongs to (the pairing unit)."""
    return (row["pair"], int(row["index"]), int(row.get("order_seed", 0)))


def index_results(results: dict) -> dict:
    """``{arm: {experiment: rows}}`` -> ``{(arm, experiment, filler, x): {question: row}}``
    (rows scored one greedy step; a question twice in one condition is an error)."""
    out = {}
    for arm, by_exp in results.items():
        for exp, rows in by_exp.items():
            for r in rows:
                if r.get("method", "score") != "score" or r.get("p_correct") is None:
                    continue
                cond = out.setdefault((arm, exp, r.get("filler", "mask"), float(r["x"])), {})
                q = question(r)
                if q in cond:
                    raise ValueError(f"{arm}/{exp}: question {q} appears twice at "
                                     f"{r.get('filler')} x={r['x']} (mixed result files?)")
                cond[q] = r
    return out


@dataclasses.dataclass(frozen=True)
class Contrast:
    """``sum(coef * measure at condition)`` per question; the paper predicts > 0."""

    finding: str
    label: str
    terms: tuple  # ((coef, (arm, experiment, filler, x)), ...)
    headline: bool = False
    paper_direction: bool = True  # False: shown for reference, no verdict

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c[0] for _, c in self.terms))

    def evaluate(self, index: dict, capable: dict | None = None) -> dict:
        """p(correct) and accuracy :class:`Paired` and the verdict; ``capable``: arm ->
        :func:`does_task` (missing arms count as not doing it)."""
        conds = [index.get(c, {}) for _, c in self.terms]
        common = set(conds[0]).intersection(*conds[1:]) if conds else set()
        out = {"finding": self.finding, "label": self.label, "headline": self.headline,
               "arms": self.arms}
        for field, _ in MEASURES:
            diffs = [sum(coef * float(cond[q][field]) for (coef, _), cond in
                         zip(self.terms, conds)) for q in sorted(common)]
            out[field] = paired(diffs)
        ok = capable is None or all(capable.get(a, False) for a in self.arms)
        out["does_task"] = ok
        out["verdict"] = (verdict(out["p_correct"], out["correct"], capable=ok)
                          if self.paper_direction else "-")
        return out


def _xs(index, arm, exp, filler) -> list[float]:
    return sorted(x for (a, e, f, x) in index if (a, e, f) == (arm, exp, filler))


def _drop(arm, exp, k, sign=1.0):
    """``sign * (measure at 0 extra masks - measure at k)``."""
    return ((sign, (arm, exp, "mask", 0.0)), (-sign, (arm, exp, "mask", k)))


def contrasts(index: dict, arms, *, base="mdlm", fixed="mdlm_ma", ce="mdlm_ce",
              causal=()) -> list[Contrast]:
    """The contrasts of the three findings for the arms whose results are in ``index``
    (``causal``: the AR arms, shown for reference in the locality finding)."""
    out = []
    for arm in arms:  # (1) locality: block next to the question (largest position) vs farthest
        xs = _xs(index, arm, "locality", "mask")
        if len(xs) >= 2:
            out.append(Contrast(
                "locality", f"{arm}: block next to the question (position {xs[-1]:g}) - "
                f"farthest (position {xs[0]:g})",
                ((1.0, (arm, "locality", "mask", xs[-1])), (-1.0, (arm, "locality", "mask",
                                                                   xs[0]))),
                headline=arm == base, paper_direction=arm not in causal))
    for arm in arms:  # (2) mask distraction
        if arm in causal:
            continue
        xs = _xs(index, arm, "extra_masks", "mask")
        if len(xs) >= 2 and xs[0] == 0:
            out.append(Contrast("mask distraction", f"{arm}: 0 extra masks - {xs[-1]:g} extra "
                                "masks (extra_masks)", _drop(arm, "extra_masks", xs[-1]),
                                headline=arm == base))
        xs = _xs(index, arm, "mask_sensitivity", "mask")
        if len(xs) >= 2 and xs[0] == 0:
            out.append(Contrast("mask distraction", f"{arm}: 0 extra masks - {xs[-1]:g} extra "
                                "masks (mask_sensitivity)", _drop(arm, "mask_sensitivity",
                                                                  xs[-1])))
        ks = sorted(set(_xs(index, arm, "dot_filler", "mask"))
                    & set(_xs(index, arm, "dot_filler", "dot")))
        if ks and ks[-1] > 0:
            k = ks[-1]
            out.append(Contrast("dots hurt less", f"{arm}: {k:g} x ' .' - {k:g} extra masks "
                                "(dot_filler)", ((1.0, (arm, "dot_filler", "dot", k)),
                                                 (-1.0, (arm, "dot_filler", "mask", k))),
                                headline=arm == base))
    xs = _xs(index, base, "extra_masks", "mask")
    if len(xs) >= 2 and xs[0] == 0:
        k = xs[-1]
        for arm, head in ((fixed, True), (ce, False)):
            if k in _xs(index, arm, "extra_masks", "mask"):
                out.append(Contrast(
                    "mask-agnostic fix", f"drop of {base} - drop of {arm} (0 -> {k:g} extra "
                    "masks)", _drop(base, "extra_masks", k) + _drop(arm, "extra_masks", k, -1.0),
                    headline=head))
    loc_base, loc_fixed = (_xs(index, a, "locality", "mask") for a in (base, fixed))
    if len(loc_base) >= 2 and loc_base == loc_fixed:
        near, far = loc_base[-1], loc_base[0]
        out.append(Contrast(
            "mask-agnostic fix", f"locality of {base} - locality of {fixed} (position "
            f"{near:g} - {far:g})",
            ((1.0, (base, "locality", "mask", near)), (-1.0, (base, "locality", "mask", far)),
             (-1.0, (fixed, "locality", "mask", near)), (1.0, (fixed, "locality", "mask", far)))))
    return out


def baseline(index: dict, arm: str):
    """The arm's easiest condition: locality with the relevant block next to the question
    (no extra masks; AR arms too), else 0 extra masks of experiment 4; None if neither."""
    xs = _xs(index, arm, "locality", "mask")
    if xs:
        return (arm, "locality", "mask", xs[-1])
    if 0.0 in _xs(index, arm, "extra_masks", "mask"):
        return (arm, "extra_masks", "mask", 0.0)
    return None


def chance_level(rows) -> float:
    """What the best constant letter scores on ``rows``: 1/3 when the answers are balanced
    (``index % 3``), more when the points per task pair are not a multiple of 3."""
    letters = [r["answer"] for r in rows]
    return max(letters.count(x) for x in set(letters)) / len(letters) if letters else CHANCE


def above_chance(index: dict, arm: str) -> Paired:
    """Restricted accuracy (argmax over A/B/C) minus :func:`chance_level` at the arm's
    :func:`baseline` (not paired: one condition, the questions as the sample)."""
    rows = [r for r in index.get(baseline(index, arm), {}).values()
            if r.get("choice_correct") is not None]
    level = chance_level(rows)
    return paired(float(r["choice_correct"]) - level for r in rows)


def does_task(index: dict, arm: str) -> bool:
    """The model chooses the right letter above chance: the CI of :func:`above_chance`
    lies above zero."""
    p = above_chance(index, arm)
    return p.ci is not None and p.ci[0] > 0


def relative_degradation(summary: dict, series=None) -> float | None:
    """The paper's (max - min) / max of mean accuracy over the mask counts of a summary."""
    acc = [c["accuracy"] for c in summary["conditions"]
           if series is None or c["series"] == series]
    if not acc or max(acc) <= 0:
        return None
    return (max(acc) - min(acc)) / max(acc)


__all__ = ["CHANCE", "INCONCLUSIVE", "MEASURES", "NOT_REPRODUCED", "REPRODUCED", "RULE",
           "Contrast", "Paired", "above_chance", "baseline", "chance_level", "contrasts",
           "does_task", "index_results", "paired", "question", "relative_degradation",
           "verdict"]
