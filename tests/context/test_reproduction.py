"""The reproduction report (context/reproduction.py) from synthetic arms and results."""

import json
import os
import random
import re

import pytest
from context_support import tiny_model_config

from mdlm_jax.context import experiments, report, reproduction

PAIRS = ("animal/smallest", "verb/largest")
POINTS = 9
X = {"locality": (0, 1, 2), "extra_masks": (0, 4, 8), "mask_sensitivity": (0, 4, 8),
     "dot_filler": (0, 4, 8)}


def _workdir(runs, arm, *, causal=False, lora=0, steps=4):
    wd = os.path.join(runs, arm)
    os.makedirs(os.path.join(wd, "checkpoints", str(steps)))
    c = tiny_model_config(causal)
    c.lora.rank = lora
    c.train.num_steps = steps
    with open(os.path.join(wd, "config.json"), "w") as f:
        f.write(c.to_json_best_effort(indent=2))
    with open(os.path.join(wd, "metrics.jsonl"), "w") as f:
        for step, loss in ((2, 5.5), (4, 4.25)):
            f.write(json.dumps({"step": step, "kind": "train", "loss": loss,
                                "tokens_per_s": 1000.0 * step}) + "\n")
    return wd


def _write_results(wd, arm, exp, p_of, choice_of):
    """Results as the harness writes them; ``p_of(filler, x, question i)`` -> p(correct)."""
    rows, rng = [], random.Random(f"{arm}/{exp}")
    fillers = ("mask", "dot") if exp == "dot_filler" else ("mask",)
    for pair in PAIRS:
        for i in range(POINTS):
            for filler in fillers:
                for x in X[exp]:
                    p = min(1.0, max(0.0, p_of(filler, x, i) + rng.uniform(-0.02, 0.02)))
                    rows.append({
                        "key": f"{pair}/{i}/{filler}/{x}", "experiment": exp, "model": arm,
                        "seed": 0, "pair": pair, "index": i, "order_seed": 0,
                        "position": x if exp == "locality" else -1, "filler": filler,
                        "method": "score", "series": "masks" if filler == "mask" else "dots",
                        "x": x, "masks": 1 + (x if filler == "mask" and exp != "locality"
                                               else 0),
                        "prompt_tokens": 100 + x, "answer": "ABC"[i % 3],
                        "n_relevant": 1, "n_distractors": 2, "p_correct": p,
                        "correct": p > 0.5, "choice_correct": choice_of(i)})
    folder = os.path.join(wd, "context", exp)
    os.makedirs(folder)
    with open(os.path.join(folder, "results.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary = report.summarize(experiments.get(exp), rows, {"model": arm, "seed": 0})
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(summary, f)


def _runs(tmp_path, *, effects: bool):
    runs = str(tmp_path / "runs")
    knows = (lambda i: i % 9 != 0) if effects else (lambda i: i % 3 == 0)  # 8/9 or chance

    def mdlm(drop_per_mask, dot_drop):
        def p_of(filler, x, i):
            if not effects:
                return 0.33 + 0.01 * (i % 2)
            return 0.8 - (drop_per_mask if filler == "mask" else dot_drop) * x
        return p_of

    arms = {"mdlm": (mdlm(0.05, 0.005), {}), "ar": (None, {"causal": True}),
            "mdlm_ma": (mdlm(0.01, 0.005), {"lora": 8})}
    for arm, (p_of, kw) in arms.items():
        wd = _workdir(runs, arm, **kw)
        near = (lambda f, x, i: 0.4 + 0.15 * x) if effects else (lambda f, x, i: 0.33)
        _write_results(wd, arm, "locality", near, knows)
        if p_of is not None:
            for exp in ("extra_masks", "dot_filler", "mask_sensitivity"):
                _write_results(wd, arm, exp, p_of, knows)
    with open(os.path.join(runs, "timings.jsonl"), "w") as f:
        f.write(json.dumps({"arm": "mdlm", "stage": "train", "status": "ran", "seconds": 12.4,
                            "cpu_seconds": 10.2, "start": "2026-12-01T10:00:00Z",
                            "command": "python -m mdlm_jax.main train --config X"}) + "\n")
    return runs


def _verdicts(text):
    return dict(re.findall(r"^\| ([a-z -]+) \| .* \| \*\*([a-z ]+)\*\* \|$", text, re.M))


def test_report_with_effects_reproduces_every_finding(tmp_path):
    runs = _runs(tmp_path, effects=True)
    out = str(tmp_path / "docs" / "REPRODUCTION.md")
    reproduction.write(runs, out, size="cpu", command="bash launch/reproduce.sh cpu")
    with open(out) as f:
        text = f.read()
    assert _verdicts(text) == {"locality": "reproduced", "mask distraction": "reproduced",
                               "dots hurt less": "reproduced",
                               "mask-agnostic fix": "reproduced"}, text
    # the paper's statements beside the measurements, the rule, the arms, the commands
    assert "15.5% -> 7.9%" in text and "~23 points" in text and "no U-shape" in text
    assert "paired" in text and "Student's t" in text
    assert "| `mdlm` |" in text and "| `ar` |" in text and "+ LoRA r8" in text
    assert "12 s (10 s CPU)" in text  # the arm's wall time from RUNS/timings.jsonl
    assert "bash launch/reproduce.sh gpu" in text  # no GPU used: the command to run on one
    # two arms of the five are absent: said at the top
    assert re.search(r"^\*\*Partial report\*\*: .*`mdlm_ce`, `mdlm_from_ar`", text, re.M)
    assert "**Not reproduced.**" not in text and "Next:" not in text
    figures = tmp_path / "docs" / "REPRODUCTION_figures"
    for exp in reproduction.EXPERIMENTS:
        for metric in ("accuracy", "p_correct"):
            png = figures / f"{exp}_{metric}.png"
            assert png.read_bytes()[:4] == b"\x89PNG"
            assert f"](REPRODUCTION_figures/{exp}_{metric}.png)" in text
    # the AR arm ran only the mask-free experiment and has no verdict of its own
    assert re.search(r"\| ar: block next to the question .* \| - \|$", text, re.M)


def test_report_at_chance_is_inconclusive_and_says_what_next(tmp_path):
    runs = _runs(tmp_path, effects=False)
    out = str(tmp_path / "R.md")
    reproduction.write(runs, out, size="smoke")
    with open(out) as f:
        text = f.read()
    assert set(_verdicts(text).values()) == {"inconclusive"}, text
    assert "Smoke size" in text
    assert text.count("**Inconclusive.**") == 4
    assert "has not learned the task" in text or "cannot show an effect" in text
    assert "Next:" in text and "What was tried" in text
    assert "| `mdlm` | +" in text and "| no |" in text


def test_finished_needs_the_last_step(tmp_path):
    wd = _workdir(str(tmp_path), "mdlm", steps=4)
    assert reproduction.finished(wd)
    os.rename(os.path.join(wd, "checkpoints", "4"), os.path.join(wd, "checkpoints", "2"))
    assert not reproduction.finished(wd)
    assert not reproduction.finished(str(tmp_path / "missing"))


def test_report_without_runs_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run launch/reproduce.sh first"):
        reproduction.write(str(tmp_path / "none"), str(tmp_path / "R.md"), size="cpu")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="holds no arm workdir"):
        reproduction.write(str(tmp_path / "empty"), str(tmp_path / "R.md"), size="cpu")
