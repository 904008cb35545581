"""Paired statistics, the verdict rule and the findings' contrasts (context/findings.py).

The numbers are computed by hand (Student's t with 3 degrees of freedom: 3.182446)."""

import random

import pytest

from mdlm_jax.context import findings
from mdlm_jax.context.findings import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

T3 = 3.182446  # t(0.975, 3)


def test_paired_mean_se_and_ci_by_hand():
    p = findings.paired([0.1, 0.2, 0.3, 0.4])
    # mean 0.25; sd = sqrt(0.05 / 3) = 0.1290994; se = sd / 2
    assert p.n == 4 and p.mean == pytest.approx(0.25)
    assert p.se == pytest.approx(0.0645497, abs=1e-7)
    assert p.ci == pytest.approx((0.25 - T3 * 0.0645497, 0.25 + T3 * 0.0645497), abs=1e-6)
    assert p.ci[0] == pytest.approx(0.044574, abs=1e-6)
    assert findings.verdict(p) == REPRODUCED


def test_a_ci_that_includes_zero_is_inconclusive():
    p = findings.paired([0.3, -0.1, 0.2, -0.2])
    # mean 0.05; sd = sqrt(0.17 / 3) = 0.2380476; se 0.1190238; half width 0.378787
    assert p.mean == pytest.approx(0.05)
    assert p.se == pytest.approx(0.1190238, abs=1e-7)
    assert p.ci == pytest.approx((0.05 - 0.378787, 0.05 + 0.378787), abs=1e-5)
    assert findings.verdict(p) == INCONCLUSIVE


def test_verdict_rule():
    up, down = findings.paired([0.1, 0.2, 0.3, 0.4]), findings.paired([-0.1, -0.2, -0.3, -0.4])
    flat = findings.paired([0.3, -0.1, 0.2, -0.2])
    assert findings.verdict(down) == NOT_REPRODUCED
    assert findings.verdict(up, flat) == REPRODUCED  # accuracy not significant: fine
    assert findings.verdict(up, down) == INCONCLUSIVE  # the two measures disagree
    assert findings.verdict(up, capable=False) == INCONCLUSIVE  # a model at chance
    assert findings.verdict(findings.paired([0.5])) == INCONCLUSIVE  # one question: no CI
    assert findings.verdict(findings.paired([])) == INCONCLUSIVE


def _row(pair, index, x, p, *, filler="mask", correct=None, choice=None):
    return {"pair": pair, "index": index, "order_seed": 0, "filler": filler, "x": x,
            "method": "score", "series": filler, "p_correct": p,
            "correct": p > 0.5 if correct is None else correct,
            "choice_correct": p > 0.3 if choice is None else choice, "answer": "ABC"[index % 3]}


def test_contrasts_pair_by_question_not_by_row_order():
    # Questions differ a lot in difficulty; each gains exactly 0.01 * (i + 1) from the masks
    # being absent. Paired, the gain is clear; unpaired (difference of two means with their
    # own spreads) it would be lost in the spread between questions.
    base = [0.1, 0.5, 0.9, 0.3]
    near = [_row("animal/smallest", i, 0.0, b + 0.01 * (i + 1)) for i, b in enumerate(base)]
    far = [_row("animal/smallest", i, 8.0, b) for i, b in enumerate(base)]
    random.Random(0).shuffle(far)
    index = findings.index_results({"mdlm": {"extra_masks": near + far}})
    rows = [c.evaluate(index) for c in findings.contrasts(index, ["mdlm"])]
    assert [r["label"] for r in rows] == ["mdlm: 0 extra masks - 8 extra masks (extra_masks)"]
    p = rows[0]["p_correct"]
    assert p.mean == pytest.approx(0.025) and p.se == pytest.approx(0.00645497, abs=1e-7)
    assert p.ci[0] == pytest.approx(0.025 - T3 * 0.00645497, abs=1e-6)
    assert rows[0]["verdict"] == REPRODUCED
    # Only questions present in every condition are paired.
    index = findings.index_results({"mdlm": {"extra_masks": near + far[:2]}})
    assert findings.contrasts(index, ["mdlm"])[0].evaluate(index)["p_correct"].n == 2


def test_the_mask_agnostic_contrast_is_a_difference_of_drops():
    rows = {"mdlm": [], "mdlm_ma": []}
    for i in range(6):
        rows["mdlm"] += [_row("verb/largest", i, 0.0, 0.8), _row("verb/largest", i, 4.0,
                                                                  0.4 + 0.01 * i)]
        rows["mdlm_ma"] += [_row("verb/largest", i, 0.0, 0.7), _row("verb/largest", i, 4.0,
                                                                     0.6)]
    index = findings.index_results({a: {"extra_masks": r} for a, r in rows.items()})
    fix = [c for c in findings.contrasts(index, ["mdlm", "mdlm_ma"])
           if c.finding == "mask-agnostic fix"]
    assert len(fix) == 1 and fix[0].headline and fix[0].arms == ("mdlm", "mdlm_ma")
    r = fix[0].evaluate(index)
    # drop of mdlm: 0.4 - 0.01 i; drop of mdlm_ma: 0.1  ->  mean 0.3 - 0.025 = 0.275
    assert r["p_correct"].mean == pytest.approx(0.275)
    assert r["verdict"] == REPRODUCED
    assert fix[0].evaluate(index, {"mdlm": True, "mdlm_ma": False})["verdict"] == INCONCLUSIVE


def test_locality_contrast_uses_nearest_and_farthest_block_and_ar_has_no_verdict():
    res = {}
    for arm in ("mdlm", "ar"):
        res[arm] = {"locality": [_row("fruit/smallest", i, x, 0.2 + 0.1 * x + 0.01 * i)
                                 for i in range(3) for x in (0.0, 1.0, 2.0)]}
    index = findings.index_results(res)
    rows = [c.evaluate(index) for c in findings.contrasts(index, ["mdlm", "ar"],
                                                          causal=("ar",))]
    assert [r["label"].split(":")[0] for r in rows] == ["mdlm", "ar"]
    assert "(position 2) - farthest (position 0)" in rows[0]["label"]
    assert rows[0]["p_correct"].mean == pytest.approx(0.2)
    assert rows[0]["p_correct"].se == pytest.approx(0.0, abs=1e-12)  # identical differences
    assert rows[0]["verdict"] == REPRODUCED and rows[0]["headline"]
    assert rows[1]["verdict"] == "-" and not rows[1]["headline"]


def test_does_task_against_the_best_constant_letter():
    # 4 questions with answers A, B, C, A: always saying "A" scores 1/2, not 1/3.
    rows = [_row("animal/smallest", i, 1.0, 0.5, choice=i % 3 == 0) for i in range(4)]
    index = findings.index_results({"m": {"locality": rows}})
    assert findings.chance_level(rows) == 0.5
    assert findings.above_chance(index, "m").mean == pytest.approx(0.0)
    assert not findings.does_task(index, "m")
    good = [_row("animal/smallest", i, 1.0, 0.9, choice=True) for i in range(9)]
    good[0]["choice_correct"] = False
    index = findings.index_results({"m": {"locality": good}})
    assert findings.does_task(index, "m")


def test_a_question_twice_in_one_condition_is_refused():
    r = _row("animal/smallest", 0, 0.0, 0.5)
    with pytest.raises(ValueError, match="appears twice"):
        findings.index_results({"mdlm": {"extra_masks": [r, dict(r)]}})


def test_relative_degradation_as_the_paper_defines_it():
    s = {"conditions": [{"series": "masks", "accuracy": a} for a in (0.8, 0.6, 0.7)]}
    assert findings.relative_degradation(s) == pytest.approx(0.25)
    assert findings.relative_degradation({"conditions": [{"series": "m", "accuracy": 0.0}]}) \
        is None
