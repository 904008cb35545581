"""Ahead-of-time compiles of the inference programs: will sampling and the context suite fit?

    python -m mdlm_jax.main compile --config configs/X.py[:arg] --what sample [--topology ...]
    python -m mdlm_jax.main compile --config configs/context/X.py[:arg] --what context ...

``--what sample`` lowers the sampler exactly as the ``sample`` command builds it
(``sampler.make_sample_fn`` on the run's mesh, its loops included) for
``sampler.batch_size`` canvases (padded to the data-parallel size, as the sampler pads)
of ``prompt + gen_length + extra_masks`` tokens. ``--what context`` lowers the
context suite's scorer (``context.scoring.make_fn``) for each scoring method of
``context.experiment`` at ``context.batch_size`` rows (rounded up as the suite rounds) of
``model.max_length`` tokens: the longest prompt bucket the suite can reach. The scored
model is the one ``context.model_path`` names (a workdir's or a HuggingFace directory's
config; only the config is read) or, without one on this host, the config's own ``model``,
in ``context.dtype`` as the suite loads it. Parameters are abstract
(``jax.ShapeDtypeStruct`` with the run's shardings): nothing is allocated or run.

Memory: as for the train step (``aot``), what the compiler checks against the chip.
FLOPs are per model call: XLA counts a loop body once, so the sampler's count is one pass
through its loop (one model call and the sampling arithmetic around it), every layer
counted (``aot.flops_every_layer``), against the analytic forward count
(``monitoring.flops_per_token`` / 3); the uncached sampler makes ``steps`` such calls per
sample (the threshold strategy at most ``gen_length``), a KV cache replaces most of them by
calls on a window. The attribution method costs about three forward passes (a forward,
then a forward and a backward to the input embeddings, no weight gradients).
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp

from mdlm_jax import aot, monitoring
from mdlm_jax import model as model_lib
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding

# Forward-pass equivalents of one call of each program, for the analytic count.
PASSES = {"sample": 1, "score": 1, "attribution": 3}


@dataclasses.dataclass
class ProgramReport(aot.Verdict):
    """One compiled inference program on one target."""

    program: str  # "sample" | "context score" | "context attribution"
    config_name: str
    device_kind: str
    n_devices: int
    mesh: dict
    batch: int
    length: int
    capacity: float | None
    memory: aot.Memory | None
    required: float | None
    xla_flops: float | None  # per call, per chip
    analytic_flops: float  # per call, all chips
    calls: str  # model calls per batch, in words
    compile_s: float
    batch_key: str
    notes: tuple[str, ...] = ()

    def fix(self) -> str:
        return (f"fix: fewer rows per call (--config.{self.batch_key}) or the weights over "
                "more chips (tensor parallelism: --config.mesh.shape='(1,1,-1)')")

    def lines(self) -> list[str]:
        out = [f"compile {self.config_name} ({self.program}) for {self.n_devices} x "
               f"{self.device_kind} (mesh {self.mesh}); batch {self.batch} x {self.length} "
               f"tokens; compiled in {self.compile_s:.1f} s"]
        out += aot.memory_lines(self.memory, self.required, self.capacity)
        out.append(f"  verdict: {'fits' if self.fits else 'does not fit'}")
        if self.xla_flops is not None:
            analytic = self.analytic_flops / self.n_devices
            out.append(f"  FLOPs per model call per chip: XLA {self.xla_flops:.4g}, analytic "
                       f"{analytic:.4g} (ratio {self.flops_ratio:.3f}); {self.calls}")
        out += [f"  {n}" for n in self.notes]
        if not self.fits:
            out.append("  " + self.fix())
        return out


def _target(config, topology, platform):
    devices, plat = aot.target_devices(topology, platform)
    config = aot.for_target(config, plat)
    return config, devices, plat, mesh_lib.make_mesh(config.mesh, devices=devices)


def abstract_params(model_cfg, rules, mesh):
    """``(apply, params, shardings)``: the model's parameters as sharded
    ``ShapeDtypeStruct``s (``config.mesh.rules`` on ``mesh``), as the commands place them."""
    apply, shapes, axes = model_lib.abstract(model_cfg)
    shardings = sharding.param_shardings(axes, shapes, rules, mesh)
    params = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
    return apply, params, shardings


def _rows(n: int, length: int, mesh, dtype=jnp.int32):
    return jax.ShapeDtypeStruct((n, length) if length else (n,), dtype,
                                sharding=mesh_lib.batch_sharding(mesh))


def _forward_flops(model_cfg, n_params: int, length: int, rows: int, passes: int) -> float:
    return monitoring.flops_per_token(model_cfg, n_params, length) / 3 * length * rows * passes


# ----------------------------------------------------------------------- sampler
def sampler_prompt_length(config) -> int:
    """Tokens of ``sampler.prompt`` (the canvas starts with them)."""
    if not config.sampler.prompt:
        return 0
    from mdlm_jax.data.tokenizers import get_tokenizer

    try:
        tokenizer = get_tokenizer(config.data)
    except (OSError, ValueError) as e:
        raise ValueError(f"sampler.prompt is set, and its tokenizer could not be loaded to "
                         f"size the canvas ({e}); give data.tokenizer_path or drop the "
                         "prompt (--config.sampler.prompt='')") from e
    return len(tokenizer.encode(config.sampler.prompt))


def lower_sampler(config, mesh, prompt_length: int = 0, **settings):
    """``(lowered, settings, batch)``: the ``sample`` command's sharded sampler for abstract
    inputs (``settings`` override ``sampler.Settings`` fields)."""
    from mdlm_jax.diffusion import sampler
    from mdlm_jax.sample import settings as sample_settings

    s = sample_settings(config, **settings)
    s.validate(prompt_length)
    apply, params, shardings = abstract_params(config.model, config.mesh.rules, mesh)
    fn = sampler.make_sample_fn(apply, s, gen_start=prompt_length, mesh=mesh,
                                param_shardings=shardings, rules=config.mesh.rules,
                                cached=getattr(apply, "cached", None))
    batch = mesh_lib.padded_batch_size(config.sampler.batch_size, mesh)
    canvas = _rows(batch, prompt_length + s.gen_length + s.extra_masks, mesh)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    return fn.lower(params, canvas, key), s, batch


def compile_sampler(config, *, topology: str = "", platform: str = "", name: str = "",
                    capacity: float | None = None, flops: bool = True) -> list[ProgramReport]:
    config, devices, plat, mesh = _target(config, topology, platform)
    capacity = capacity or aot.device_capacity(devices, plat)
    prompt = sampler_prompt_length(config)
    t0 = time.perf_counter()
    lowered, s, batch = lower_sampler(config, mesh, prompt)
    memory, required = aot.compile_memory(lowered)
    compile_s = time.perf_counter() - t0
    length = prompt + s.gen_length + s.extra_masks
    xla = None
    if flops:  # one uncached pass of the loop (a KV cache mixes full and window calls)
        xla = aot.flops_every_layer(
            config, lambda c: lower_sampler(c, mesh, prompt, kv_cache="none")[0]) / mesh.size
    n_params = model_lib.count_params(model_lib.abstract(config.model)[1])
    calls = (f"at most {s.gen_length} calls per sample (threshold)"
             if s.strategy == "threshold" else f"{s.steps} calls per sample ({s.strategy})")
    if s.kv_cache != "none":
        calls += f"; with the {s.kv_cache} KV cache most calls run on a window instead"
    return [ProgramReport("sample", name, devices[0].device_kind, len(devices),
                          dict(zip(mesh.axis_names, mesh.devices.shape)), batch, length,
                          capacity, memory, required, xla,
                          _forward_flops(config.model, n_params, length, batch, 1), calls,
                          compile_s, "sampler.batch_size")]


# ----------------------------------------------------------------- context suite
def context_model_config(config):
    """``(config, source)``: the config whose ``model`` the suite scores, in
    ``context.dtype`` (see the module docstring)."""
    from mdlm_jax.context import loading

    cx = config.context
    path = cx.model_path
    if path and os.path.isdir(path) and loading.is_workdir(path):
        from mdlm_jax.checkpoint import read_config

        cfg, source = read_config(path), path
    elif path and os.path.isdir(path) and loading.is_hf_dir(path):
        cfg, source = loading.config_from_hf_dir(config, path), path
    else:
        cfg = config.copy_and_resolve_references()
        source = (f"config.model (context.model_path={path!r} is not a model directory "
                  "on this host)" if path else "config.model")
    cfg = cfg.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.lora.rank = 0  # the suite scores merged weights
        cfg.model.dtype = cfg.model.param_dtype = cx.dtype
        cfg.sampler.mask_in_softmax = config.sampler.mask_in_softmax
        cfg.mesh = config.mesh
        cfg.context = config.context
    return cfg, source


def lower_scorer(config, mesh, method: str, rows: int):
    """The suite's jitted scorer (``score`` or ``attribution``) for abstract inputs."""
    from mdlm_jax.context import scoring
    from mdlm_jax.diffusion.parameterization import resolve_mask_in_softmax

    # The option letters' ids are constants of the program, not of its shapes or cost.
    spec = scoring.ScoreSpec((0, 1, 2), int(config.diffusion.mask_id),
                             resolve_mask_in_softmax(config), bool(config.model.causal))
    apply, params, shardings = abstract_params(config.model, config.mesh.rules, mesh)
    fn = scoring.make_fn(getattr(scoring, method), apply, spec, mesh=mesh,
                         param_shardings=shardings, rules=config.mesh.rules)
    length = config.model.max_length
    return fn.lower(params, _rows(rows, length, mesh), _rows(rows, length, mesh),
                    _rows(rows, 0, mesh))


def compile_context(config, *, topology: str = "", platform: str = "", name: str = "",
                    capacity: float | None = None, flops: bool = True) -> list[ProgramReport]:
    from mdlm_jax.context import experiments

    cx = config.context
    methods = {point.method for point in experiments.get(cx.experiment).points(cx)}
    model_config, source = context_model_config(config)
    model_config, devices, plat, mesh = _target(model_config, topology, platform)
    capacity = capacity or aot.device_capacity(devices, plat)
    rows = -(-cx.batch_size // mesh_lib.data_parallel_size(mesh)) \
        * mesh_lib.data_parallel_size(mesh)
    n_params = model_lib.count_params(model_lib.abstract(model_config.model)[1])
    notes = [f"model: {source}; {cx.dtype}"]
    decoding = sorted(methods - set(PASSES))
    if decoding:
        notes.append(f"the {', '.join(decoding)} method(s) of {cx.experiment} run the "
                     "sampler: compile --what sample")
    reports = []
    for method in ("score", "attribution"):
        if method not in methods:
            continue
        t0 = time.perf_counter()
        memory, required = aot.compile_memory(lower_scorer(model_config, mesh, method, rows))
        compile_s = time.perf_counter() - t0
        xla = (aot.flops_every_layer(model_config,
                                     lambda c, m=method: lower_scorer(c, mesh, m, rows))
               / mesh.size if flops else None)
        length = model_config.model.max_length
        reports.append(ProgramReport(
            f"context {method}", name, devices[0].device_kind, len(devices),
            dict(zip(mesh.axis_names, mesh.devices.shape)), rows, length, capacity, memory,
            required, xla, _forward_flops(model_config.model, n_params, length, rows,
                                          PASSES[method]),
            f"one call per {rows} points", compile_s, "context.batch_size", tuple(notes)))
    if not reports:
        raise ValueError(f"context.experiment={cx.experiment!r} only decodes "
                         f"({', '.join(decoding)}): compile it with --what sample")
    return reports


__all__ = ["ProgramReport", "abstract_params", "compile_context", "compile_sampler",
           "context_model_config", "lower_sampler", "lower_scorer", "sampler_prompt_length"]
