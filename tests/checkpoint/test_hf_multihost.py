"""Sharded HF load across two local processes (4 CPU devices each) equals a plain load."""

import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import test_hf_fixtures as fx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sharded_load_matches_plain_load(tmp_path):
    src = str(tmp_path / "llama")
    fx.torch_model("llama").save_pretrained(src, safe_serialization=True)
    port = free_port()
    procs = []
    for i in range(2):
        env = dict(os.environ)
        env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                   MDLM_COORDINATOR=f"127.0.0.1:{port}", MDLM_NUM_PROCESSES="2",
                   MDLM_PROCESS_ID=str(i),
                   PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""))
        out = tmp_path / f"out_{i}.json"
        procs.append((subprocess.Popen(
            [sys.executable, os.path.join(HERE, "hf_multihost_worker.py"), src, str(out)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            out))
    results = []
    for i, (p, out) in enumerate(procs):
        try:
            _, stderr = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q, _ in procs:
                q.kill()
            pytest.fail(f"process {i} timed out after {TIMEOUT_S}s")
        assert p.returncode == 0, f"process {i} failed:\n{stderr[-6000:]}"
        with open(out) as f:
            results.append(json.load(f))
    assert sorted(r["process_index"] for r in results) == [0, 1]
    for r in results:
        assert r["devices"] == 8
        assert r["split_params"] > 0, "nothing was sharded: the test would prove nothing"
        assert r["shards"] > 0 and r["max_shard_diff"] == 0.0, r
        assert r["max_logit_diff"] < 1e-4, r
