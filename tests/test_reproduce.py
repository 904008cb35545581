"""launch/reproduce.sh: its dry run, and the whole pipeline at the smoke size (every arm of
configs/repro trains a few steps, every experiment writes its results, the report is
written), then resumption (a second run trains nothing again)."""

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = ["mdlm", "ar", "mdlm_ma", "mdlm_ce", "mdlm_from_ar"]
EXPERIMENTS = ["locality", "extra_masks", "dot_filler", "mask_sensitivity"]
AR_EXPERIMENTS = ["locality", "dot_filler"]  # no mask token: no mask experiments


def reproduce(tmp_path, *args, timeout=1800, **env):
    full = dict(os.environ, VIRTUAL_ENV=sys.prefix, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
                XLA_FLAGS="",  # one CPU device: the script as a user runs it
                PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                RUNS=str(tmp_path / "runs"), **env)
    return subprocess.run(["bash", "launch/reproduce.sh", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=timeout)


def commands(out):
    return [ln[2:] for ln in out.splitlines() if ln.startswith("+ ")]


def test_dry_run_prints_every_command_in_order_and_runs_nothing(tmp_path):
    r = reproduce(tmp_path, "gpu", DRY_RUN="1")
    assert r.returncode == 0, r.stderr
    runs = tmp_path / "runs"
    assert not runs.exists()
    cmds = commands(r.stdout)
    train = [c for c in cmds if "mdlm_jax.main train" in c]
    evaluate = [c for c in cmds if "reproduction evaluate" in c]
    assert train == [
        f"python -m mdlm_jax.main train --config configs/repro/mdlm.py:gpu --workdir {runs}/mdlm",
        f"python -m mdlm_jax.main train --config configs/repro/ar.py:gpu --workdir {runs}/ar",
        f"python -m mdlm_jax.main train --config configs/repro/mdlm_ma.py:gpu,from={runs}/mdlm "
        f"--workdir {runs}/mdlm_ma",
        f"python -m mdlm_jax.main train --config configs/repro/mdlm_ce.py:gpu,from={runs}/mdlm "
        f"--workdir {runs}/mdlm_ce",
        f"python -m mdlm_jax.main train --config configs/repro/mdlm_from_ar.py:gpu,"
        f"from={runs}/ar --workdir {runs}/mdlm_from_ar"]
    assert len(evaluate) == 5
    for arm, cmd in zip(ARMS, evaluate):
        exps = re.findall(r"configs/context/(\w+)\.py:model=repro_gpu,path=" + f"{runs}/{arm}"
                          + r"(?: |$)", cmd)
        assert exps == (AR_EXPERIMENTS if arm == "ar" else EXPERIMENTS), cmd
    # each arm is evaluated right after it is trained; the report comes last
    order = [c.split()[3] for c in cmds]
    assert order[:4] == ["train", "evaluate", "train", "evaluate"] and "report" in cmds[-1]
    assert "--out docs/REPRODUCTION.md --size gpu" in cmds[-1]


def test_an_unknown_size_is_one_clear_error(tmp_path):
    r = reproduce(tmp_path, "tpu", DRY_RUN="1")
    assert r.returncode == 2 and "unknown size 'tpu'" in r.stderr


def test_smoke_end_to_end_then_resume(tmp_path):
    runs = tmp_path / "runs"
    out = tmp_path / "REPRODUCTION.md"
    r = reproduce(tmp_path, "smoke", OUT=str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for arm in ARMS:
        assert (runs / arm / "config.json").exists(), arm
        for exp in EXPERIMENTS:
            folder = runs / arm / "context" / exp
            if arm == "ar" and exp not in AR_EXPERIMENTS:
                assert not folder.exists()  # AR: no mask token, no mask experiments
                continue
            with open(folder / "results.jsonl") as f:
                rows = [json.loads(line) for line in f]
            assert rows and all("p_correct" in r and "correct" in r for r in rows), (arm, exp)
            assert (folder / "summary.json").exists()
    with open(runs / "timings.jsonl") as f:
        timings = [json.loads(line) for line in f]
    assert [(t["arm"], t["stage"]) for t in timings] == (
        [(a, s) for a in ARMS for s in ("train", "evaluate")] + [("report", "report")])
    assert all(t["status"] == "ran" and t["seconds"] > 0 for t in timings)
    text = out.read_text()
    for finding in ("locality", "mask distraction", "dots hurt less", "mask-agnostic fix"):
        assert re.search(rf"^\| {finding} \| .* \| \*\*(reproduced|not reproduced|"
                         r"inconclusive)\*\* \|$", text, re.M), finding
    assert "Smoke size" in text and (tmp_path / "REPRODUCTION_figures").is_dir()
    for arm in ARMS:
        assert f"| `{arm}` |" in text

    # Run again: every arm holds its last step, so nothing is trained again.
    again = reproduce(tmp_path, "smoke", OUT=str(out), DRY_RUN="1")
    assert again.returncode == 0, again.stderr
    assert not [c for c in commands(again.stdout) if "main train" in c], again.stdout
    assert again.stdout.count("holds a finished run; not trained again") == 5
