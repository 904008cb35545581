"""Sharded HF load across two local processes (4 CPU devices each) equals a plain load."""

import json
import os
import sys

import pytest

torch = pytest.importorskip("torch")

import test_hf_fixtures as fx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TIMEOUT_S = 240


def test_two_process_sharded_load_matches_plain_load(tmp_path):
    src = str(tmp_path / "llama")
    fx.torch_model("llama").save_pretrained(src, safe_serialization=True)
    from conftest import run_two_processes

    outs = [tmp_path / f"out_{i}.json" for i in range(2)]
    failures = run_two_processes(
        lambda i: [sys.executable, os.path.join(HERE, "hf_multihost_worker.py"), src,
                   str(outs[i])], timeout_s=TIMEOUT_S)
    assert not failures, "\n\n".join(failures)
    results = []
    for out in outs:
        with open(out) as f:
            results.append(json.load(f))
    assert sorted(r["process_index"] for r in results) == [0, 1]
    for r in results:
        assert r["devices"] == 8
        assert r["split_params"] > 0, "nothing was sharded: the test would prove nothing"
        assert r["shards"] > 0 and r["max_shard_diff"] == 0.0, r
        assert r["max_logit_diff"] < 1e-4, r
