"""Training throughput of any config on synthetic batches: tokens/s, step time, MFU, memory.

    python bench/train_throughput.py --config configs/mdlm_owt_small.py --batch 32 --torch
    python bench/train_throughput.py --config configs/llada_1b.py --batch 8 --json llada.json
    python bench/train_throughput.py --config configs/quickstart.py --batch 32 --seq_len 128
    python bench/train_throughput.py --config configs/mdlm_owt_small.py:cpu --dtype float32 \\
        --set model.n_layers=4 --set model.d_model=256 --set model.n_heads=4 \\
        --set model.mlp_dim=1024 --batch 8 --seq_len 256 --torch

The JAX side is the library's own jitted train step (``TrainPlan.jit_train_step``: loss terms of
the config, gradient accumulation, AdamW, clipping, EMA) on the config's mesh, fed random
token batches ``[grad_accum_steps, batch, seq_len]``; no dataset or tokenizer is read. Step
time is the median over ``--steps`` timed steps after ``--warmup`` steps (the first
compiles); the table's ``min_ms`` is the fastest step, a guide on a shared machine. MFU =
``monitoring.flops_per_token`` x tokens/s / (peak FLOP/s x devices); it is
'n/a' where the device's peak is unknown (CPU) unless ``--peak_flops`` gives one.

``--torch`` also times ``bench/torch_mdlm.py`` (MDLM's DiT in PyTorch, on CUDA when present)
at the same size, in a subprocess started before JAX claims the accelerator's memory, and
prints the JAX / PyTorch tokens/s ratio. It needs a DiT config with the ``nelbo`` loss.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402

from mdlm_jax import monitoring  # noqa: E402
from mdlm_jax.checks import is_diffusion  # noqa: E402
from mdlm_jax.config_base import load_config_file, nearest_key  # noqa: E402
from mdlm_jax.model.transformer import validate_model_config  # noqa: E402


# ---------------------------------------------------------------------------- config
def load_config(spec: str):
    """``configs/X.py[:arg]`` -> the locked ConfigDict of its ``get_config(arg)``."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise SystemExit(f"error: config file {path!r} not found")
    return load_config_file(path, arg or None)


def _parse_value(text: str, current):
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    return value


def set_key(config, dotted: str, text: str) -> None:
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not hasattr(node, "keys") or part not in node:
            raise SystemExit(f"error: unknown config key {dotted!r}; did you mean "
                             f"{nearest_key(config, dotted)!r}?")
        node = node[part]
    if not hasattr(node, "keys") or parts[-1] not in node:
        raise SystemExit(f"error: unknown config key {dotted!r}; did you mean "
                         f"{nearest_key(config, dotted)!r}?")
    node[parts[-1]] = _parse_value(text, node[parts[-1]])


def apply_overrides(config, args) -> None:
    with config.unlocked():
        for item in args.set:
            key, eq, value = item.partition("=")
            if not eq:
                raise SystemExit(f"error: --set takes key=value, got {item!r}")
            set_key(config, key, value)
        if args.batch:
            config.data.global_batch_size = args.batch
        if args.seq_len:
            config.data.seq_len = args.seq_len
            config.model.max_length = max(config.model.max_length, args.seq_len)
        if args.accum:
            config.optimizer.grad_accum_steps = args.accum
        if args.dtype:
            config.model.dtype = args.dtype
        if args.attention:
            config.model.attention_impl = args.attention
        if args.remat:
            config.model.remat_policy = args.remat
        if args.peak_flops:
            config.train.peak_flops_per_device = args.peak_flops
        config.train.num_steps = max(config.train.num_steps, args.warmup + args.steps + 1)


# ------------------------------------------------------------------------------- jax
def synthetic_batch(config, rng: np.random.Generator) -> dict:
    """Random ids below the mask id (diffusion) or the vocabulary size, all valid."""
    accum = config.optimizer.grad_accum_steps
    b, length = config.data.global_batch_size, config.data.seq_len
    high = config.diffusion.mask_id if is_diffusion(config) else config.model.vocab_size
    tokens = rng.integers(0, high, size=(accum, b, length), dtype=np.int32)
    return {"tokens": tokens, "valid": np.ones((accum, b, length), bool)}


def peak_memory() -> tuple[int | None, str]:
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # some backends do not implement it
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "max RSS (process)"


def run_jax(config, *, steps: int, warmup: int, n_devices: int = 0, seed: int = 0) -> dict:
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding
    from mdlm_jax.train_state import TrainPlan

    devices = jax.devices()[:n_devices] if n_devices else jax.devices()
    mesh = mesh_lib.make_mesh(config.mesh, devices=devices)
    mesh_lib.check_batch(config.data.global_batch_size, mesh, what="--batch")
    setup = TrainPlan(config, mesh)
    key = jax.random.key(seed)
    state = setup.init_state(setup.random_params(key))
    step_fn = setup.jit_train_step()
    host = synthetic_batch(config, np.random.default_rng(seed))
    batch = {k: jax.device_put(v, setup.batch_sharding) for k, v in host.items()}
    times, losses = [], []
    with jax.set_mesh(mesh), sharding.logical_rules(config.mesh.rules):
        start = time.perf_counter()
        compiled = step_fn.lower(state, batch, None, key).compile()
        compile_s = time.perf_counter() - start
        for i in range(warmup + steps):
            start = time.perf_counter()
            state, metrics = compiled(state, batch, None, key)
            jax.block_until_ready((state, metrics))
            if i >= warmup:
                times.append(time.perf_counter() - start)
            losses.append(metrics["loss"])
    losses = [float(x) for x in jax.device_get(losses)]
    if not all(np.isfinite(losses)):
        raise SystemExit(f"error: non-finite loss in the benchmark steps: {losses}")
    step_time = statistics.median(times)
    accum, b, length = host["tokens"].shape
    tokens_per_step = accum * b * length
    tokens_per_s = tokens_per_step / step_time
    from mdlm_jax.diffusion.losses import forward_passes

    passes = forward_passes(config)
    fpt = monitoring.flops_per_token(config.model, setup.n_params, length,
                                     forward_passes=passes,
                                     n_frozen=setup.n_params - setup.n_trainable)
    peak = monitoring.peak_flops_per_device(override=config.train.peak_flops_per_device)
    mfu = fpt * tokens_per_s / (peak * mesh.devices.size) if peak else None
    mem, mem_source = peak_memory()
    return {
        "framework": "jax", "jax": jax.__version__,
        "device": f"{devices[0].device_kind} x {mesh.devices.size}",
        "mesh": dict(zip(mesh.axis_names, (int(s) for s in mesh.devices.shape))),
        "dtype": config.model.dtype, "attention": config.model.attention_impl,
        "remat": config.model.remat_policy, "batch": b, "accum": accum, "seq_len": length,
        "n_params": setup.n_params, "flops_per_token": fpt, "peak_flops_per_device": peak,
        "compile_s": compile_s, "step_time_s": step_time, "step_times_s": times,
        "tokens_per_s": tokens_per_s, "mfu": mfu, "peak_memory_bytes": mem,
        "memory_source": mem_source, "loss_first": losses[0], "loss_last": losses[-1],
    }


# ----------------------------------------------------------------------------- torch
def torch_command(config, args, out_json: str) -> list[str]:
    m, d = config.model, config.diffusion
    if m.family != "dit" or m.causal or set(config.loss.terms) != {"nelbo"} \
            or d.schedule != "loglinear":
        raise SystemExit("error: --torch compares against MDLM's DiT: it needs model.family="
                         "'dit', a bidirectional model, loss.terms={'nelbo': 1} and the "
                         "loglinear schedule")
    if m.head_dim and m.head_dim * m.n_heads != m.d_model:
        raise SystemExit("error: --torch needs model.head_dim == d_model / n_heads")
    cmd = [sys.executable, os.path.join(ROOT, "bench", "torch_mdlm.py"),
           "--vocab_size", str(m.vocab_size), "--d_model", str(m.d_model),
           "--n_layers", str(m.n_layers), "--n_heads", str(m.n_heads),
           "--mlp_dim", str(m.mlp_dim), "--cond_dim", str(m.cond_dim),
           "--rope_theta", str(m.rope_theta), "--norm_eps", str(m.norm_eps),
           "--mask_id", str(d.mask_id),
           "--batch", str(config.data.global_batch_size * config.optimizer.grad_accum_steps),
           "--seq_len", str(config.data.seq_len), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--dtype", m.dtype, "--device", args.torch_device,
           "--json", out_json]
    if m.time_conditioning:
        cmd.append("--time_conditioning")
    if args.torch_compile:
        cmd.append("--compile")
    return cmd


def run_torch(config, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "torch.json")
        cmd = torch_command(config, args, out)
        env = dict(os.environ)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: the PyTorch benchmark failed:\n{' '.join(cmd)}\n"
                             f"{proc.stderr[-4000:]}")
        with open(out) as f:
            result = json.load(f)
    result["command"] = " ".join(cmd)
    return result


# ----------------------------------------------------------------------------- table
def _fmt_bytes(n) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def table(rows: list[dict]) -> str:
    cols = ["framework", "device", "dtype", "batch", "seq_len", "params", "step_ms",
            "min_ms", "tokens/s", "MFU", "peak_mem", "loss"]
    lines = []
    for r in rows:
        mfu = r.get("mfu")
        lines.append([
            r["framework"], r["device"], r["dtype"],
            str(r["batch"] * r.get("accum", 1)), str(r["seq_len"]),
            f"{r['n_params'] / 1e6:.1f}M", f"{r['step_time_s'] * 1e3:.1f}",
            f"{min(r['step_times_s']) * 1e3:.1f}",
            f"{r['tokens_per_s']:,.0f}", "n/a" if mfu is None else f"{mfu:.1%}",
            f"{_fmt_bytes(r['peak_memory_bytes'])} ({r['memory_source']})",
            f"{r['loss_first']:.3f}->{r['loss_last']:.3f}"])
    widths = [max(len(c), *(len(row[i]) for row in lines)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*row) for row in lines])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/X.py[:arg]")
    p.add_argument("--batch", type=int, default=0, help="data.global_batch_size (0: config)")
    p.add_argument("--seq_len", type=int, default=0, help="data.seq_len (0: config)")
    p.add_argument("--accum", type=int, default=0, help="grad_accum_steps (0: config)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--dtype", default="", help="model.dtype (compute), e.g. float32")
    p.add_argument("--attention", default="", help="model.attention_impl: xla | cudnn")
    p.add_argument("--remat", default="", help="model.remat_policy")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config override, e.g. --set model.n_layers=4 (repeatable)")
    p.add_argument("--peak_flops", type=float, default=0.0,
                   help="peak FLOP/s per device for MFU (0: look up by device kind)")
    p.add_argument("--devices", type=int, default=0,
                   help="use the first N devices (0: all; 1 with --torch, which uses one GPU)")
    p.add_argument("--torch", action="store_true",
                   help="also time bench/torch_mdlm.py at the same size (DiT configs)")
    p.add_argument("--torch_device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--torch_compile", action="store_true", help="torch.compile the model")
    p.add_argument("--json", default="", help="write all results to this file")
    args = p.parse_args(argv)

    config = load_config(args.config)
    apply_overrides(config, args)
    validate_model_config(config.model)
    if config.data.seq_len > config.model.max_length:
        raise SystemExit("error: seq_len exceeds model.max_length")
    if args.steps < 1:
        raise SystemExit("error: --steps must be >= 1")

    rows = []
    torch_result = None
    if args.torch:  # first: JAX would otherwise hold most of the GPU's memory
        torch_result = run_torch(config, args)
    n_devices = args.devices or (1 if args.torch else 0)
    if n_devices and config.mesh.shape.count(-1) == 0 and \
            int(np.prod(config.mesh.shape)) != n_devices:
        raise SystemExit(f"error: mesh.shape={tuple(config.mesh.shape)} does not fit "
                         f"{n_devices} device(s); pass --set 'mesh.shape=(-1,1,1)'")
    jax_result = run_jax(config, steps=args.steps, warmup=args.warmup, n_devices=n_devices)
    rows.append(jax_result)
    if torch_result is not None:
        rows.append(torch_result)
    m = config.model
    print(f"config {args.config}: {m.family} {m.n_layers} x {m.d_model} ({m.n_heads} heads, "
          f"mlp {m.mlp_dim}, vocab {m.vocab_size}), loss {dict(config.loss.terms)}, "
          f"attention {m.attention_impl}, remat {m.remat_policy}; "
          f"compile {jax_result['compile_s']:.1f}s; median of {args.steps} steps after "
          f"{args.warmup} warm-up")
    print(table(rows))
    summary = {"config": args.config, "argv": sys.argv[1:] if argv is None else list(argv),
               "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
               "cpu_count": os.cpu_count(), "jax": jax_result}
    if torch_result is not None:
        ratio = jax_result["tokens_per_s"] / torch_result["tokens_per_s"]
        summary["torch"] = torch_result
        summary["jax_over_torch"] = ratio
        print(f"JAX / PyTorch tokens/s: {ratio:.2f}x")
        if torch_result["device"].startswith("cpu") != (jax.devices()[0].platform == "cpu"):
            print("warning: JAX and PyTorch ran on different kinds of device; the ratio "
                  "compares hardware, not implementations (is torch built with CUDA?)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
