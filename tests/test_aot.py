"""Ahead-of-time compile reports: memory, FLOPs, verdict and the micro-batch search."""

import importlib.util
import os
import subprocess
import sys

import pytest

from mdlm_jax import aot, monitoring
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.train import make_plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(
    not HAS_LIBTPU, reason="libtpu is not installed (pip install 'jax[tpu]' or the test "
    "extra): TPU topologies cannot be compiled for on this host")


def _locked(c):
    c.lock()
    return c


def test_cpu_report_has_memory_flops_and_a_verdict(tiny_config):
    report = aot.compile_train(_locked(tiny_config()), search=False)
    assert report.memory is not None and report.memory.total > 0
    assert report.memory.temporaries > 0 and report.memory.arguments > 0
    assert report.fits
    text = "\n".join(report.lines())
    assert "verdict: fits" in text and "FLOPs per step" in text
    assert report.xla_flops > 0 and report.analytic_flops > 0


def test_search_finds_the_largest_micro_batch_under_a_capacity(tiny_config):
    config = _locked(tiny_config(data__global_batch_size=64))
    free = aot.compile_train(config, search=False, flops=False)
    # Room for the weights and state plus about a quarter of the batch's activations.
    capacity = free.memory.total - 0.6 * free.memory.temporaries
    report = aot.compile_train(config, flops=False, capacity=capacity)
    assert not report.fits
    assert 8 <= report.largest_micro_batch < 64, report.lines()
    assert report.largest_micro_batch % 8 == 0
    assert "accumulation" in report.fix()
    c = config.copy_and_resolve_references()
    mesh = mesh_lib.make_mesh(c.mesh)
    assert aot.fits(c, mesh, report.largest_micro_batch, capacity)
    assert not aot.fits(c, mesh, report.largest_micro_batch + 8, capacity)


def test_dit_flops_per_token_matches_xla(tiny_config):
    """The DiT's adaLN and time embedding run once per sequence: counting them per token
    overcounted the step. Within 3% of XLA's count at a width where matmuls dominate."""
    config = _locked(tiny_config(model__d_model=256, model__n_heads=4, model__mlp_dim=1024,
                                 model__cond_dim=128, model__time_conditioning=True,
                                 model__vocab_size=64, model__n_layers=2,
                                 data__seq_len=64, data__global_batch_size=8))
    mesh = mesh_lib.make_mesh(config.mesh, devices=__import__("jax").devices()[:1])
    setup = make_plan(config, mesh)
    xla = aot.xla_flops_per_step(config, mesh, 8)
    analytic = aot.analytic_flops_per_step(config, setup)
    assert abs(xla / analytic - 1) < 0.03, (xla, analytic)
    per_token = analytic / (8 * 64)
    per_seq = monitoring.per_sequence_params(config.model)
    assert per_seq > 0.2 * setup.n_params  # the old count would be far off here
    assert per_token < monitoring.flops_per_token(config.model, setup.n_params + per_seq, 64)


@needs_libtpu
def test_compile_command_for_a_tpu_topology():
    r = subprocess.run([sys.executable, "-m", "mdlm_jax.main", "compile", "--config",
                        "configs/quickstart.py:smoke", "--topology", "v5p:2x2x2",
                        "--nosearch"], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "8 x TPU v5" in out, out
    assert "verdict: fits" in out and "GiB per chip" in out and "FLOPs per step" in out, out


def test_unknown_topology_is_one_clear_line():
    r = subprocess.run([sys.executable, "-m", "mdlm_jax.main", "compile", "--config",
                        "configs/quickstart.py", "--topology", "v99:1x1"], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode != 0
    assert "error: --topology 'v99:1x1'" in r.stderr, r.stderr[-2000:]


# Every scale config on the hardware its docstring names. TPU targets compile through
# libtpu on this host; GPU targets need a GPU host (--platform gpu). Compiling a 1B-8B model
# for a pod slice takes minutes on 2 cores: CI compiles the first (representative) case,
# MDLM_COMPILE_ALL=1 compiles them all; docs/BENCHMARKS.md records their reports.
SCALE_TARGETS = [
    ("mdlm_owt_small.py:tpu", "v5p:2x2x2"),
    ("ar_small.py:tpu", "v5p:2x2x2"),
    ("llada_1b.py:fsdp", "v5p:2x2x2"),
    ("llada_8b_pretrain.py", "v5p:4x4x4"),
    ("llada_8b_base_ma.py:ce_tv", "gpu"),
    ("llada_8b_pretrain.py:hw=h200x8", "gpu"),
]


@pytest.mark.parametrize("name,target", SCALE_TARGETS, ids=[n for n, _ in SCALE_TARGETS])
def test_scale_config_fits_its_stated_hardware(name, target):
    import jax

    from mdlm_jax.config_base import load_config_file

    if target == "gpu":
        if jax.default_backend() != "gpu":
            pytest.skip(f"{name} targets GPUs: run on a GPU host (compile --platform gpu)")
    elif not HAS_LIBTPU:
        pytest.skip("libtpu is not installed (pip install 'jax[tpu]'): cannot compile for "
                    f"{target}")
    elif (name, target) != SCALE_TARGETS[0] and not os.environ.get("MDLM_COMPILE_ALL"):
        pytest.skip(f"{name} on {target} compiles for minutes on 2 cores; "
                    "MDLM_COMPILE_ALL=1 runs it (report in docs/BENCHMARKS.md)")
    path, _, arg = name.partition(":")
    config = load_config_file(os.path.join(REPO, "configs", path), arg or None)
    report = aot.compile_train(config, topology="" if target == "gpu" else target,
                               platform="gpu" if target == "gpu" else "", search=False,
                               flops=False, name=name)
    print("\n".join(report.lines()))
    assert report.fits, "\n".join(report.lines())
