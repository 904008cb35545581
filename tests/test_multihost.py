"""Two local processes x 4 CPU devices train, checkpoint and resume like one 8-device process.

Each process reads only its share of every global batch (the pipeline slices by process
index); the global arrays are assembled with ``jax.make_array_from_process_local_data``.
"""

import json
import os
import sys

import pytest

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import monitoring, train

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
N = 4
TIMEOUT_S = 240


def config(num_steps, **overrides):
    from conftest import make_tiny_config

    return make_tiny_config(train__num_steps=num_steps, checkpoint__every_steps=N,
                            optimizer__decay="constant", optimizer__warmup_steps=2,
                            **overrides)


def launch(cfg, workdir, tmp, tag):
    """Start both processes, wait, return ``(results, failures)``."""
    from conftest import run_two_processes

    cfg_dir = tmp / f"cfg_{tag}"
    ckpt.write_config(str(cfg_dir), cfg)
    outs = [tmp / f"{tag}_{i}.json" for i in range(2)]
    failures = run_two_processes(
        lambda i: [sys.executable, os.path.join(HERE, "multihost_worker.py"), str(cfg_dir),
                   str(workdir), str(outs[i])],
        timeout_s=TIMEOUT_S)
    results = []
    for out in outs:
        if out.exists():
            with open(out) as f:
                results.append(json.load(f))
    return results, [f"{tag}: {f}" for f in failures]


def test_two_processes_train_resume_and_match_one_process(tmp_path):
    ref_dir = tmp_path / "single"
    # single process, 8 devices (also builds the dataset before the workers read it)
    train.run(config(2 * N), str(ref_dir))
    ref = {r["step"]: r["loss"] for r in monitoring.read_metrics(str(ref_dir), "train")}

    work = tmp_path / "multi"
    # the end-of-training evaluation is exercised by the second half
    first, failed = launch(config(N, train__eval_at_end=False), work, tmp_path, "first")
    if failed:
        pytest.fail("\n\n".join(failed))
    for i, r in enumerate(first):
        assert (r["process_index"], r["process_count"]) == (i, 2)
        assert (r["device_count"], r["local_device_count"]) == (8, 4)
        assert (r["start_step"], r["end_step"]) == (0, N)
    assert ckpt.latest_step(str(work)) == N

    # this half ends with the end-of-training evaluation, run by both processes
    second, failed = launch(config(2 * N), work, tmp_path, "second")
    multi = {r["step"]: r["loss"] for r in monitoring.read_metrics(str(work), "train")}
    assert sorted(multi) == sorted(ref) == list(range(1, 2 * N + 1))
    for step in ref:
        assert multi[step] == pytest.approx(ref[step], rel=1e-5, abs=1e-5), (
            f"step {step}: 2 processes {multi[step]} vs 1 process {ref[step]}")
    if failed:  # checked after the losses, which are written before the final evaluation
        pytest.fail("\n\n".join(failed))
    for r in second:
        assert (r["start_step"], r["end_step"]) == (N, 2 * N), "the 2-process run did not resume"
    # the losses each process saw are the global ones, identical on both processes
    assert second[0]["losses"] == second[1]["losses"]
