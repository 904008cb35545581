"""Benchmark requests per second: a GSM8K-shaped generation recipe and a likelihood task.

    python bench/lm_eval_throughput.py --d_model 256 --n_layers 4 --prompt_length 768 \\
        --batch_size 8 --mc_samples 128

- generation: ``--batch_size`` requests of ``--prompt_length`` tokens (a 5-shot GSM8K
  prompt is ~750-1000 tokens with LLaDA's tokenizer) decoded with the recipe
  ``gen_length 256, block 32``: the one-token-per-step baseline (``confidence``, 256 steps)
  and Fast-dLLM's ``threshold 0.9`` with the dual KV cache, through
  ``benchmark.generation.generate_until`` (the lm-eval model's path, without lm-eval's own
  bookkeeping);
- likelihood: LLaDA's estimator with ``--mc_samples`` samples (``--mc_batch_size`` rows per
  model call) on a request of ``--ll_prompt_length`` + ``--answer_length`` tokens.

Times are after one warm-up call (compilation excluded), median of ``--repeats``. The
weights are random, so the threshold decoder commits about one token per step (the
worst case); a trained model commits several. Also prints the model FLOPs of each request
(2 x params x tokens per forward), which the cost estimate in docs/BENCHMARKS.md uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import jax
import numpy as np

from mdlm_jax import model as model_lib
from mdlm_jax.benchmark import generation
from mdlm_jax.benchmark.loading import Loaded
from mdlm_jax.config_base import base_config
from mdlm_jax.data.tokenizers import CharTokenizer
from mdlm_jax.diffusion import likelihood, sampler


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--d_model", type=int, default=256)
    a("--n_layers", type=int, default=4)
    a("--n_heads", type=int, default=4)
    a("--mlp_dim", type=int, default=1024)
    a("--prompt_length", type=int, default=768)
    a("--gen_length", type=int, default=256)
    a("--block_length", type=int, default=32)
    a("--batch_size", type=int, default=8)
    a("--mc_samples", type=int, default=128)
    a("--mc_batch_size", type=int, default=32)
    a("--ll_prompt_length", type=int, default=256)
    a("--answer_length", type=int, default=16)
    a("--repeats", type=int, default=3)
    a("--skip", default="", help="comma list of rows to skip: baseline,threshold_dual,ll")
    return p.parse_args()


def make_loaded(args):
    c = base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads = "llama", args.d_model, args.n_layers, \
        args.n_heads
    m.mlp_dim, m.vocab_size = args.mlp_dim, 258
    m.max_length = args.prompt_length + args.gen_length
    apply, params = model_lib.create(m, jax.random.key(0))
    params = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(jax.random.key(1), x.shape,
                                                                  x.dtype), params)
    return Loaded(jax.jit(apply), params, c, CharTokenizer(), "random", None)


def timed(fn, repeats):
    fn()  # warm-up: compilation
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    args = parse()
    skip = set(filter(None, args.skip.split(",")))
    loaded = make_loaded(args)
    n_params = model_lib.count_params(loaded.params)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 256, args.prompt_length).tolist()
               for _ in range(args.batch_size)]
    base = sampler.Settings.from_config(loaded.config, gen_length=args.gen_length,
                                        block_length=args.block_length, temperature=0.0,
                                        eos_id=256)
    rows = []
    info = {"devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
            "params": n_params, "batch_size": args.batch_size}
    length = args.prompt_length + args.gen_length
    n_blocks = args.gen_length // args.block_length
    for name, s in [("baseline", replace(base, strategy="confidence", steps=args.gen_length)),
                    ("threshold_dual", replace(base, strategy="threshold", steps=n_blocks,
                                               threshold=0.9, kv_cache="dual"))]:
        if name in skip:
            continue
        out = {}

        def run(s=s, out=out):
            out["g"] = generation.generate_until(loaded, prompts, [[]] * len(prompts), s,
                                                 batch_size=args.batch_size,
                                                 stop_at_eos=False)

        sec = timed(run, args.repeats)
        calls = out["g"][0].model_calls
        rows.append({"row": f"generate {name}", "seconds": sec,
                     "requests_per_s": args.batch_size / sec, "model_calls": calls,
                     "canvas": length, **info})
    if "ll" not in skip:
        fn = likelihood.make_mc_fn(loaded.apply, mask_id=loaded.config.diffusion.mask_id,
                                   num_samples=args.mc_samples,
                                   batch_size=min(args.mc_batch_size, args.mc_samples))
        ctx = rng.integers(0, 256, args.ll_prompt_length).tolist()
        ans = rng.integers(0, 256, args.answer_length).tolist()
        keys = iter(range(10_000))
        ll_len = args.ll_prompt_length + args.answer_length

        def run_ll():
            likelihood.mdlm_loglikelihood(fn, loaded.params, ctx, ans,
                                          jax.random.key(next(keys)),
                                          max_length=ll_len + 31)

        sec = timed(run_ll, args.repeats)
        rows.append({"row": f"loglikelihood mc={args.mc_samples}", "seconds": sec,
                     "requests_per_s": 1.0 / sec,
                     "model_calls": args.mc_samples // min(args.mc_batch_size, args.mc_samples),
                     "canvas": likelihood.bucket_length(ll_len, ll_len + 31), **info,
                     "batch_size": min(args.mc_batch_size, args.mc_samples)})
    for r in rows:
        print(json.dumps(r))
    print(f"\n{n_params / 1e6:.1f}M params, {info['devices']} x {info['device_kind']}")
    print("| row | canvas | batch | model calls / request batch | s | requests/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['row']} | {r['canvas']} | {r['batch_size']} | {r['model_calls']} | "
              f"{r['seconds']:.2f} | {r['requests_per_s']:.3f} |")


if __name__ == "__main__":
    main()
