"""Load time and peak host memory of ``checkpoint.hf.load`` on a LLaDA-layout checkpoint.

    python bench/load_checkpoint.py                    # 1B-shaped, bf16, in a temp dir
    python bench/load_checkpoint.py --size small       # 0.2B-shaped (quick)
    python bench/load_checkpoint.py --dir /data/ck --keep   # write (or reuse) it there

A random checkpoint is written first (streamed, one tensor at a time); the load is then
measured in a fresh subprocess so the writer's memory is not counted. Peak memory is the
loader's ``ru_maxrss`` (resident pages, memory-mapped file pages included) minus what the
process held before loading (Python + jax). The target: under the per-host share of the
model plus twice the largest tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = {  # LLaDA-style configs (d_model, n_layers, n_heads, mlp, vocab)
    "8b": (4096, 32, 32, 12288, 126464),  # LLaDA-8B
    "1b": (2048, 22, 16, 5632, 32000),
    "small": (1024, 12, 16, 2816, 32000),
}


def write_checkpoint(folder: str, size: str) -> None:
    import ml_dtypes

    from mdlm_jax.checkpoint import hf_io

    d, n_layers, n_heads, mlp, vocab = SIZES[size]
    os.makedirs(folder, exist_ok=True)
    cfg = {"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": d,
           "n_heads": n_heads, "n_kv_heads": n_heads, "n_layers": n_layers,
           "mlp_hidden_size": mlp, "vocab_size": vocab, "embedding_size": vocab,
           "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_sequence_length": 4096,
           "weight_tying": False, "include_bias": False, "mask_token_id": vocab - 1,
           "torch_dtype": "bfloat16"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    t, b = "model.transformer.", "model.transformer.blocks.{i}."
    shapes = {t + "wte.weight": (vocab, d), t + "ln_f.weight": (d,),
              t + "ff_out.weight": (vocab, d)}
    per_layer = {"attn_norm.weight": (d,), "ff_norm.weight": (d,), "q_proj.weight": (d, d),
                 "k_proj.weight": (d, d), "v_proj.weight": (d, d), "attn_out.weight": (d, d),
                 "ff_proj.weight": (mlp, d), "up_proj.weight": (mlp, d),
                 "ff_out.weight": (d, mlp)}
    for i in range(n_layers):
        shapes.update({(b + k).format(i=i): s for k, s in per_layer.items()})
    bf16 = np.dtype(ml_dtypes.bfloat16)
    plan = [(k, s, bf16) for k, s in shapes.items()]
    rng = np.random.default_rng(0)

    def produce(name):
        return (0.02 * rng.standard_normal(shapes[name], np.float32)).astype(bf16)

    hf_io.write_files(folder, plan, produce, max_shard_bytes=1 << 30)


def measure(folder: str) -> dict:
    import jax

    from mdlm_jax.checkpoint import hf, hf_io

    jax.numpy.zeros(1).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    refs = hf_io.tensor_refs(folder)
    sizes = [int(np.prod(r.shape)) * r.dtype.itemsize for r in refs.values()]
    start = time.perf_counter()
    cfg, params, _ = hf.load(folder)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model_bytes, largest = sum(sizes), max(sizes)
    return {"params": sum(x.size for x in jax.tree.leaves(params)), "dtype": cfg.param_dtype,
            "model_gb": model_bytes / 1e9, "largest_tensor_gb": largest / 1e9,
            "load_seconds": round(seconds, 2), "load_gb_per_s": model_bytes / 1e9 / seconds,
            "baseline_rss_gb": before / 1e9, "peak_rss_gb": peak / 1e9,
            "peak_minus_baseline_gb": (peak - before) / 1e9,
            "target_gb": (model_bytes / jax.process_count() + 2 * largest) / 1e9,
            "within_target": peak - before < model_bytes / jax.process_count() + 2 * largest,
            "devices": jax.device_count()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="1b")
    ap.add_argument("--dir", default="", help="where the checkpoint is (written if absent)")
    ap.add_argument("--keep", action="store_true", help="keep the written checkpoint")
    ap.add_argument("--measure", default="", help=argparse.SUPPRESS)  # the subprocess
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    folder = args.dir or tempfile.mkdtemp(prefix="mdlm_bench_ckpt_")
    try:
        if not os.path.isfile(os.path.join(folder, "config.json")):
            start = time.perf_counter()
            write_checkpoint(folder, args.size)
            print(f"wrote {args.size} checkpoint to {folder} in "
                  f"{time.perf_counter() - start:.1f}s", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--measure", folder], check=True,
                             capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["size"] = args.size
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
