"""Ahead-of-time compilation: will a config fit its hardware, and how many FLOPs per step?

    python -m mdlm_jax.main compile --config configs/X.py[:arg] [--topology v5p:4x4x4]
        [--platform gpu] [--what train|sample|context]

The configured train step (the sampler and the context suite's scorer:
``aot_inference``) is lowered on abstract inputs only
(``jax.ShapeDtypeStruct`` with the run's shardings: no parameter is allocated) and compiled
for the target: a TPU topology through libtpu on any host (``--topology``), or the local
devices (``--platform`` picks a backend). Nothing runs.

Memory is what the compiler itself checks against the chip's memory: a compile that does
not fit fails with ``RESOURCE_EXHAUSTED`` (the verdict and its figure come from that
message); one that fits reports ``memory_analysis()``: arguments + outputs - aliased
(donated) + temporaries + generated code. The chip's capacity is the compiler's own number
(a TPU compile of an oversized buffer reports it; a GPU reports ``bytes_limit``).

FLOPs: XLA's HLO cost analysis of the lowered program (:func:`program_flops`: the whole
program before the backend rewrites it; the TPU compiler's own per-chip count undercounts
its rewritten matmuls), divided by the chips. Cost analysis counts a ``lax.scan`` body
once, so the per-layer cost is taken from two unrolled lowerings (1 and 2 layers, same
micro-batch, XLA attention: a Pallas kernel is opaque to cost analysis; the output head
unchunked and no random-crop branch, as loops and branches are counted once) and the
step's count is ``F(1) + (n_layers - 1) * (F(2) - F(1))``, times the accumulation steps.
The analytic count is ``monitoring.flops_per_token`` (no recomputation); the report states
what the remat policy adds to it (``monitoring.remat_flops_per_token``), so XLA / analytic
should read 1 + that share, plus a little elementwise work (norms, softmaxes, the loss).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time

import jax
import jax.numpy as jnp

from mdlm_jax import monitoring
from mdlm_jax.model.layers import resolve_attention
from mdlm_jax.model.transformer import dtype_of
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding

GiB = 1024**3
WHAT = ("train", "sample", "context")
_CAPACITY_RE = re.compile(r"exceeds available HBM \(([\d.]+)([KMGT])\)")
_REQUIRED_RE = re.compile(r"required for HLO temporaries \(([\d.]+)([KMGT])\)")
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class DoesNotFit(Exception):
    """The compiler refused the program: it needs more memory than a chip has."""

    def __init__(self, message: str):
        super().__init__(message)
        self.required = _parse_bytes(_REQUIRED_RE, message)


def _parse_bytes(pattern, message):
    m = pattern.search(message)
    return None if m is None else float(m.group(1)) * _UNITS[m.group(2)]


# ------------------------------------------------------------------------- targets
def target_devices(topology: str = "", platform: str = ""):
    """``(devices, platform)``: a TPU topology's devices (libtpu), or local devices."""
    if topology:
        try:
            from jax.experimental import topologies

            desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
        except Exception as e:  # libtpu missing, or a name it does not know
            raise ValueError(f"--topology {topology!r} could not be described by libtpu "
                             f"({str(e).splitlines()[0][:200]}); install it with "
                             "pip install 'jax[tpu]' and use names like v5p:2x2x2") from e
        return list(desc.devices), "tpu"
    try:
        devices = jax.devices(platform) if platform else jax.devices()
    except RuntimeError as e:
        raise ValueError(f"--platform {platform!r}: no such devices here ({e})") from e
    return devices, devices[0].platform


def device_capacity(devices, platform: str) -> float | None:
    """Bytes of memory per chip, as the compiler / runtime states it."""
    if platform == "tpu":
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(devices[:1], ("x",))
        huge = jax.ShapeDtypeStruct((1 << 17, 1 << 20), jnp.float32,
                                    sharding=NamedSharding(mesh, PartitionSpec()))
        try:
            jax.jit(lambda a: a * 2).lower(huge).compile()
        except Exception as e:  # the compiler names the chip's capacity when refusing
            return _parse_bytes(_CAPACITY_RE, str(e))
        return None
    stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return float(stats["bytes_limit"])
    if platform == "cpu":
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return None


def for_target(config, platform: str, **model_overrides):
    """A copy of ``config`` with attention resolved for ``platform`` (and model overrides)."""
    c = config.copy_and_resolve_references()
    c.unlock()
    c.model.attention_impl = resolve_attention(c.model.attention_impl, platform,
                                               dtype_of(c.model.dtype))
    for k, v in model_overrides.items():
        c.model[k] = v
    c.lock()
    return c


# --------------------------------------------------------------------- compiling
def abstract_batch(config, setup, micro_batch: int):
    """The train step's batch as ShapeDtypeStructs: [accum, micro_batch, seq_len] fields,
    the prompt / answer masks included where the data provides them."""
    shape = (config.optimizer.grad_accum_steps, micro_batch, config.data.seq_len)
    from mdlm_jax.data import registry

    fields = registry.dataset(config.data.name).batch_fields
    return {k: jax.ShapeDtypeStruct(shape, jnp.int32 if k == "tokens" else jnp.bool_,
                                    sharding=setup.batch_sharding) for k in fields}


def lower_train_step(config, mesh, micro_batch: int):
    """``(lowered, setup)`` of the train step at a global micro-batch of ``micro_batch``."""
    from mdlm_jax.train import make_plan

    setup = make_plan(config, mesh)
    frozen = (jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                           setup.frozen_shapes, setup.frozen_shardings)
              if setup.frozen_shapes else None)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    with jax.set_mesh(mesh), sharding.logical_rules(config.mesh.rules):
        lowered = setup.jit_train_step().lower(
            setup.abstract_state(), abstract_batch(config, setup, micro_batch), frozen, key)
    return lowered, setup


def compile_lowered(lowered):
    try:
        return lowered.compile()
    except Exception as e:
        if "RESOURCE_EXHAUSTED" in str(e) or "Ran out of memory" in str(e):
            raise DoesNotFit(str(e).splitlines()[0]) from e
        raise


@dataclasses.dataclass
class Memory:
    arguments: float
    outputs: float
    aliased: float
    temporaries: float
    code: float

    @property
    def total(self) -> float:
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code

    @classmethod
    def of(cls, compiled) -> Memory:
        m = compiled.memory_analysis()
        return cls(m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes,
                   m.temp_size_in_bytes, m.generated_code_size_in_bytes)


def program_flops(lowered) -> float:
    """XLA's FLOPs of the program as lowered, over all chips: ``HloCostAnalysis`` of the
    HLO before any backend rewrites it (remat recomputation included: it is in the
    program). Not the compiled executable's ``cost_analysis()``: the TPU compiler turns
    batched matmuls (attention over heads) and FSDP's collective matmuls into windowed /
    dilated convolutions that its per-chip count undercounts (0.79x for one LLaDA-1B
    layer and the head on v5p:2x2x2, 0.62x for a layer: the 0.68 ratio once printed for
    ``llada_1b.py:fsdp``); the lowered module is counted with the host's CPU cost model,
    which counts every dot in full."""
    import jax.extend as jex
    from jax._src.lib import _jax  # HloCostAnalysis of an HLO module on a given backend

    module = lowered.compiler_ir("hlo").as_hlo_module()
    return float(_jax.hlo_module_cost_analysis(jex.backend.get_backend("cpu"),
                                               module)["flops"])


def flops_every_layer(config, lower) -> float:
    """XLA's FLOPs (all chips) of the program ``lower(config)`` lowers, every layer
    counted: HLO cost analysis counts a loop body or a branch once, so ``lower`` is lowered
    for a 1-layer and a 2-layer unrolled copy of ``config`` with XLA's attention (the same
    maths; a Pallas kernel is a custom call that cost analysis does not see into), the
    output head in one piece (not chunked by ``lax.map``) and no random-crop branch, and
    the difference is the cost of one layer: ``F(1) + (n_layers - 1) * (F(2) - F(1))``."""
    f = []
    for n in (1, 2):
        c = for_target(config, "", n_layers=n, scan_layers=False, attention_impl="xla")
        c.unlock()
        c.loss.logits_chunk = 0
        c.diffusion.random_crop_prob = 0.0
        c.lock()
        f.append(program_flops(lower(c)))
    return f[0] + (config.model.n_layers - 1) * (f[1] - f[0])


def xla_flops_per_step(config, mesh, micro_batch: int) -> float:
    """XLA's FLOPs per chip for one optimizer step (:func:`flops_every_layer` of one
    micro-batch over the chips, times the accumulation steps)."""
    one = config.copy_and_resolve_references()
    one.unlock()
    one.optimizer.grad_accum_steps = 1
    one.lock()
    per_micro = flops_every_layer(one, lambda c: lower_train_step(c, mesh, micro_batch)[0])
    return per_micro / mesh.size * config.optimizer.grad_accum_steps


def analytic_flops_per_step(config, setup) -> float:
    from mdlm_jax.diffusion.losses import forward_passes

    fpt = monitoring.flops_per_token(config.model, setup.n_params, config.data.seq_len,
                                     forward_passes=forward_passes(config),
                                     n_frozen=setup.n_params - setup.n_trainable)
    return fpt * config.data.global_batch_size * config.optimizer.grad_accum_steps \
        * config.data.seq_len


def remat_flops_per_step(config) -> float | None:
    """What the remat policy recomputes per optimizer step (all chips), or None."""
    from mdlm_jax.diffusion.losses import forward_passes

    per_token = monitoring.remat_flops_per_token(config.model, config.data.seq_len,
                                                 forward_passes=forward_passes(config),
                                                 lora_cfg=config.lora)
    if per_token is None:
        return None
    return per_token * config.data.global_batch_size * config.optimizer.grad_accum_steps \
        * config.data.seq_len


def fits(config, mesh, micro_batch: int, capacity: float | None) -> bool:
    try:
        compiled = compile_lowered(lower_train_step(config, mesh, micro_batch)[0])
    except DoesNotFit:
        return False
    return capacity is None or Memory.of(compiled).total <= capacity


def largest_micro_batch(config, mesh, start: int, fitted: bool, capacity: float | None,
                        max_compiles: int = 6):
    """The largest global micro-batch (a multiple of the data-parallel size) that compiles
    within memory: doubling from ``start``, then bisection. ``(batch, exact)``."""
    dp = mesh_lib.data_parallel_size(mesh)
    lo, hi = (start // dp, None) if fitted else (0, start // dp)
    n = 0
    while n < max_compiles and (hi is None or hi - lo > 1):
        k = lo * 2 if hi is None else (lo + hi) // 2
        k = max(k, 1)
        n += 1
        if fits(config, mesh, k * dp, capacity):
            lo = k
        else:
            hi = k
    return lo * dp, hi is not None and hi - lo <= 1


# ------------------------------------------------------------------------ report
def gib(x) -> str:
    if x is None:
        return "n/a"
    return f"{x / GiB:.2f} GiB" if x >= 0.1 * GiB else f"{x / 1024**2:.2f} MiB"


def compile_memory(lowered):
    """``(Memory, None)`` of a program that compiled, ``(None, bytes required)`` of one the
    compiler refused for memory."""
    try:
        return Memory.of(compile_lowered(lowered)), None
    except DoesNotFit as e:
        return None, e.required


def memory_lines(memory, required, capacity) -> list[str]:
    if memory is None:
        return [f"  the compiler needs {gib(required)} of temporaries; "
                f"{gib(capacity)} per chip"]
    m = memory
    return [f"  per chip: arguments {gib(m.arguments)}, outputs {gib(m.outputs)} "
            f"({gib(m.aliased)} aliased to donated arguments), temporaries "
            f"{gib(m.temporaries)}, code {gib(m.code)}",
            f"  total {gib(m.total)} of {gib(capacity)} per chip"]


class Verdict:
    """What a compile report derives from its fields ``memory``, ``capacity``, ``xla_flops``
    (per chip), ``n_devices`` and ``analytic_flops`` (all chips): the fit and the FLOPs ratio."""

    @property
    def fits(self) -> bool:
        return self.memory is not None and (self.capacity is None
                                            or self.memory.total <= self.capacity)

    @property
    def flops_ratio(self) -> float | None:
        """XLA / analytic FLOPs (remat recomputation is in XLA's count only)."""
        if self.xla_flops is None:
            return None
        return self.xla_flops * self.n_devices / self.analytic_flops


@dataclasses.dataclass
class Report(Verdict):
    config_name: str
    device_kind: str
    n_devices: int
    mesh: dict
    micro_batch: int
    accum: int
    seq_len: int
    capacity: float | None
    memory: Memory | None
    required: float | None
    xla_flops: float | None
    analytic_flops: float
    remat_flops: float | None
    largest_micro_batch: int | None
    search_exact: bool
    compile_s: float

    @property
    def expected_ratio(self) -> float | None:
        """1 + the share the remat policy recomputes (None: policy not modelled)."""
        if self.remat_flops is None:
            return None
        return 1 + self.remat_flops / self.analytic_flops

    def fix(self) -> str:
        per_chip = self.micro_batch // max(self.mesh.get("data", 1) * self.mesh.get("fsdp", 1),
                                           1)
        if self.largest_micro_batch:
            k = max(self.micro_batch // self.largest_micro_batch, 1)
            return (f"fix: micro-batch {self.largest_micro_batch} with "
                    f"{self.accum * k} accumulation steps keeps the optimizer batch "
                    f"(--config.data.global_batch_size={self.largest_micro_batch} "
                    f"--config.optimizer.grad_accum_steps={self.accum * k})")
        if per_chip > 1:
            return ("fix: a smaller micro-batch with more accumulation "
                    "(--config.optimizer.grad_accum_steps)")
        return ("fix: shard the parameters and optimizer state (FSDP: "
                "--config.mesh.shape='(1,-1,1)') or recompute more in the backward pass "
                "(--config.model.remat_policy=full)")

    def lines(self) -> list[str]:
        out = [f"compile {self.config_name} for {self.n_devices} x {self.device_kind} "
               f"(mesh {self.mesh}); micro-batch {self.micro_batch} x {self.accum} "
               f"accumulation x {self.seq_len} tokens; compiled in {self.compile_s:.1f} s"]
        out += memory_lines(self.memory, self.required, self.capacity)
        out.append(f"  verdict: {'fits' if self.fits else 'does not fit'}")
        if self.xla_flops is not None:
            analytic = self.analytic_flops / self.n_devices
            why = ("the remat policy's recomputation is not modelled"
                   if self.expected_ratio is None else
                   f"{self.expected_ratio:.3f} expected: the remat policy recomputes "
                   f"{self.expected_ratio - 1:.1%} more; the rest is elementwise work")
            out.append(f"  FLOPs per step per chip: XLA {self.xla_flops:.4g}, analytic "
                       f"{analytic:.4g} (ratio {self.flops_ratio:.3f}; {why})")
        if self.largest_micro_batch is not None:
            bound = "" if self.search_exact else " (at least; search stopped)"
            out.append(f"  largest micro-batch that fits: {self.largest_micro_batch}{bound}")
        if not self.fits:
            out.append("  " + self.fix())
        return out


def compile_train(config, *, topology: str = "", platform: str = "", search: bool = True,
                  flops: bool = True, name: str = "", capacity: float | None = None) -> Report:
    """Compile the train step for the target; ``capacity`` (bytes per chip) overrides the
    device's own figure (e.g. to ask whether a CPU-compiled program fits a smaller chip)."""
    devices, plat = target_devices(topology, platform)
    config = for_target(config, plat)
    mesh = mesh_lib.make_mesh(config.mesh, devices=devices)
    micro = config.data.global_batch_size
    mesh_lib.check_batch(micro, mesh)
    capacity = capacity or device_capacity(devices, plat)
    t0 = time.perf_counter()
    lowered, setup = lower_train_step(config, mesh, micro)
    memory, required = compile_memory(lowered)
    compile_s = time.perf_counter() - t0
    fitted = memory is not None and (capacity is None or memory.total <= capacity)
    xla = xla_flops_per_step(config, mesh, micro) if flops else None
    largest, exact = (None, False)
    if search:
        largest, exact = largest_micro_batch(config, mesh, micro, fitted, capacity)
    return Report(name, devices[0].device_kind, len(devices),
                  dict(zip(mesh.axis_names, mesh.devices.shape)), micro,
                  config.optimizer.grad_accum_steps, config.data.seq_len, capacity, memory,
                  required, xla, analytic_flops_per_step(config, setup),
                  remat_flops_per_step(config), largest, exact, compile_s)


def run(config, *, topology: str = "", platform: str = "", what: str = "train",
        search: bool = True, name: str = "", memory_gib: float = 0.0) -> Report:
    """The ``compile`` command: prints the report(s) and returns the first."""
    if what not in WHAT:
        raise ValueError(f"--what={what!r} is unknown; use one of {', '.join(WHAT)}")
    if memory_gib < 0:
        raise ValueError(f"--memory_gib={memory_gib} must be >= 0 (0: the device's own)")
    capacity = memory_gib * GiB or None
    if what == "train":
        reports = [compile_train(config, topology=topology, platform=platform,
                                 search=search, name=name, capacity=capacity)]
    else:
        from mdlm_jax import aot_inference

        compile_fn = (aot_inference.compile_sampler if what == "sample"
                      else aot_inference.compile_context)
        reports = compile_fn(config, topology=topology, platform=platform, name=name,
                             capacity=capacity)
    for report in reports:
        print("\n".join(report.lines()))
    return reports[0]


__all__ = ["DoesNotFit", "Memory", "Report", "compile_memory", "compile_train",
           "device_capacity", "flops_every_layer", "for_target", "largest_micro_batch",
           "lower_train_step", "memory_lines", "run", "target_devices", "xla_flops_per_step"]
