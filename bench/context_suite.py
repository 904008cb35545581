"""Context-suite throughput: points/s of the extra-mask sweep (experiment 4).

    python bench/context_suite.py --config configs/quickstart.py --n_distractors 18 \\
        --mask_counts 0,10,100 --points 4 --batch 8

    # an LLaDA-8B-shaped model with random weights, ~1,000-token prompts, on a GPU:
    python bench/context_suite.py --config configs/llada_8b_base_ma.py --n_distractors 40 \\
        --batch 32 --points 16

The model is the config's architecture with random weights (throughput does not depend on
them) in ``--dtype``; prompts are the suite's own (char tokenizer: each option letter is
one token), so prompt lengths are real. The first pass over each shape compiles and is not
timed. Prints points/s, prompt tokens/s, the forward MFU where the device's peak is known,
and what the full paper sweep (16 task pairs x 1000 points x the mask counts) would cost
at that rate.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from mdlm_jax import model as model_lib
from mdlm_jax.config_base import load_config_file
from mdlm_jax.context import experiments, harness
from mdlm_jax.data.tokenizers import CharTokenizer
from mdlm_jax.monitoring import flops_per_token, peak_flops_per_device
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--config", default="configs/quickstart.py", help="a config whose model is benchmarked")
    a("--n_relevant", type=int, default=10)
    a("--n_distractors", type=int, default=40)
    a("--mask_counts", default="0,10,100")
    a("--paper_mask_counts", type=int, default=11, help="mask counts of the full sweep")
    a("--points", type=int, default=4, help="points per task pair (16 pairs)")
    a("--batch", type=int, default=8)
    a("--dtype", default="bfloat16")
    a("--max_length", type=int, default=0, help="override model.max_length (0: keep)")
    return p.parse_args()


def main():
    args = parse()
    config = load_config_file(args.config)
    config.unlock()
    if args.max_length:
        config.model.max_length = args.max_length
    config.model.dtype = config.model.param_dtype = args.dtype
    cx = config.context
    cx.update(experiment="extra_masks", n_relevant=args.n_relevant,
              n_distractors=args.n_distractors, points=args.points, batch_size=args.batch,
              mask_counts=tuple(int(k) for k in args.mask_counts.split(",")), dtype=args.dtype,
              progress_bar=False)
    mesh = mesh_lib.make_mesh(config.mesh)
    apply, shapes, axes = model_lib.abstract(config.model)
    shard = sharding.param_shardings(axes, shapes, config.mesh.rules, mesh)
    with jax.set_mesh(mesh), sharding.logical_rules(config.mesh.rules):
        params = jax.jit(model_lib.init_fn(config.model), out_shardings=shard)(
            jax.random.key(0))
    n_params = model_lib.count_params(params)
    model = harness.Model(apply, params, config.model, CharTokenizer(),
                          config.diffusion.mask_id, "random", bool(config.model.causal))
    points = experiments.get("extra_masks").points(cx)
    runner = harness.Runner(model, cx, mesh, config.mesh.rules)
    size = -(-args.batch // mesh_lib.data_parallel_size(mesh)) * mesh_lib.data_parallel_size(mesh)
    by_k = {}
    for p in points:
        by_k.setdefault(p.extra, []).append((p, *harness.encode_point(p, model, cx)))
    total_pts, total_s, total_tok, total_flops = 0, 0.0, 0, 0.0
    for k, items in sorted(by_k.items()):
        items.sort(key=lambda it: len(it[2].tokens))
        batches = [items[i:i + size] for i in range(0, len(items), size)]
        batches = [b + [b[-1]] * (size - len(b)) for b in batches]
        for b in batches:  # compile every shape first
            runner.run("score", b)
        t0 = time.perf_counter()
        for b in batches:
            runner.run("score", b)
        dt = time.perf_counter() - t0
        n = sum(len(b) for b in batches)
        lengths = [len(it[2].tokens) for b in batches for it in b]
        seq = int(np.mean(lengths))
        tok = sum(lengths)
        flops = flops_per_token(config.model, n_params, seq) / 3 * tok  # forward only
        total_pts, total_s, total_tok, total_flops = (total_pts + n, total_s + dt,
                                                      total_tok + tok, total_flops + flops)
        print(f"k={k:4d}: {n / dt:8.2f} points/s, prompt ~{seq} tokens, "
              f"{tok / dt:10.0f} tokens/s")
    rate = total_pts / total_s
    peak = peak_flops_per_device()
    mfu = (f", forward MFU {100 * total_flops / total_s / (peak * jax.device_count()):.1f}%"
           if peak else "")
    print(f"model {n_params / 1e6:.1f}M params ({args.dtype}) on {jax.device_count()} x "
          f"{jax.devices()[0].device_kind}: {rate:.2f} points/s overall{mfu}")
    full = 16 * 1000 * args.paper_mask_counts
    print(f"full paper sweep (16 pairs x 1000 points x {args.paper_mask_counts} mask counts = "
          f"{full} points) at this rate: {full / rate / 3600:.1f} h")


if __name__ == "__main__":
    main()
