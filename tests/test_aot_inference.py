"""Ahead-of-time compiles of the sampler and the context scorer (``compile --what ...``)."""

import os
import subprocess
import sys

import jax
import numpy as np

from mdlm_jax import aot_inference
from mdlm_jax import model as model_lib
from mdlm_jax.diffusion import sampler
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sampling_config(tiny_config, **overrides):
    c = tiny_config(model__family="llama", model__d_model=64, model__n_heads=2,
                    model__mlp_dim=192, model__vocab_size=64, model__max_length=64,
                    sampler__batch_size=5, sampler__gen_length=32, sampler__block_length=16,
                    sampler__steps=8, sampler__strategy="confidence", diffusion__mask_id=63,
                    **overrides)
    c.lock()
    return c


def test_the_lowered_sampler_is_the_one_the_sample_command_runs(tiny_config):
    """``make_sample_fn(...).lower`` (through ``sharding.jit_on_mesh``) compiles the program
    that calling it runs: the AOT-compiled executable gives the same tokens."""
    config = _sampling_config(tiny_config)
    mesh = mesh_lib.make_mesh(config.mesh)
    lowered, s, batch = aot_inference.lower_sampler(config, mesh)
    assert batch == 8  # 5 rows padded to the data-parallel size, as the sampler pads
    apply, params = model_lib.create(config.model, jax.random.key(0))
    _, _, shardings = aot_inference.abstract_params(config.model, config.mesh.rules, mesh)
    params = jax.device_put(params, shardings)
    canvas, _ = sampler.build_canvas([], s, batch)
    key = jax.random.key(3)
    fn = sampler.make_sample_fn(apply, s, gen_start=0, mesh=mesh, param_shardings=shardings,
                                rules=config.mesh.rules, cached=apply.cached)
    with jax.set_mesh(mesh):
        aot_out = lowered.compile()(params, jax.device_put(canvas,
                                                           mesh_lib.batch_sharding(mesh)), key)
    run_out = fn(params, canvas, key)
    np.testing.assert_array_equal(np.asarray(aot_out["tokens"]), np.asarray(run_out["tokens"]))
    assert isinstance(sharding.jit_on_mesh(lambda x: x, mesh, in_shardings=None,
                                           out_shardings=None), sharding.MeshJitted)


def test_sampler_report_memory_flops_and_tensor_parallel_arguments(tiny_config):
    data = aot_inference.compile_sampler(_sampling_config(tiny_config), name="tiny")[0]
    tensor = aot_inference.compile_sampler(
        _sampling_config(tiny_config, mesh__shape=(1, 1, -1)), name="tiny", flops=False)[0]
    assert data.fits and data.memory.total > 0 and data.batch == 8 and data.length == 32
    # Replicated weights on the data mesh; split over 8 chips under tensor parallelism.
    assert tensor.memory.arguments < 0.5 * data.memory.arguments, (tensor, data)
    # One model call (every layer counted) plus the sampling arithmetic around it.
    assert 0.9 < data.flops_ratio < 1.6, data.lines()
    text = "\n".join(data.lines())
    assert "verdict: fits" in text and "8 calls per sample (confidence)" in text, text


def test_context_report_scores_and_attribution(tiny_config):
    config = tiny_config(model__max_length=64, context__experiment="attribution",
                         context__model_path="", context__batch_size=3,
                         context__dtype="float32")
    config.lock()
    reports = aot_inference.compile_context(config, name="tiny")
    (attr,) = reports  # the attribution experiment scores by attribution only
    assert attr.program == "context attribution" and attr.batch == 8 and attr.length == 64
    assert attr.fits and attr.memory.temporaries > 0
    score = aot_inference.compile_context(
        _with(config, context__experiment="extra_masks"), name="tiny")[0]
    assert score.program == "context score"
    # Attribution: a forward, then a forward and a backward to the embeddings (~3 passes).
    assert 2.0 < attr.xla_flops / score.xla_flops < 4.0, (attr.xla_flops, score.xla_flops)
    assert "model: config.model" in "\n".join(score.lines())


def _with(config, **overrides):
    c = config.copy_and_resolve_references()
    c.unlock()
    for key, value in overrides.items():
        group, leaf = key.split("__")
        c[group][leaf] = value
    c.lock()
    return c


def test_compile_command_sample_and_context_on_cpu_devices(tiny_config, capsys):
    from mdlm_jax import aot

    report = aot.run(_sampling_config(tiny_config), what="sample", name="tiny")
    assert report.program == "sample"
    assert "(sample) for 8 x cpu" in capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "mdlm_jax.main", "compile", "--config",
                        "configs/context/unmasking.py", "--what", "context",
                        "--config.model.max_length=128"], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(context score)" in r.stdout and "verdict: fits" in r.stdout, r.stdout
    assert "run the sampler" in r.stdout, r.stdout
