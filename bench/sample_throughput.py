"""Sampler throughput: generated tokens/s and model calls per generated token.

    python bench/sample_throughput.py --d_model 64 --n_layers 2 --gen_length 64 \\
        --block_length 16 --steps 64 --batch_sizes 1,8 --python_loop --torch

For each strategy (and KV-cache mode) and batch size: the jitted loop's throughput.
``--python_loop`` also times a step-by-step Python loop calling a jitted model and a
jitted per-step update (the ``confidence`` strategy, same maths), and prints the ratio.
``--torch`` also times ``bench/torch_llada_sampler.py`` (LLaDA's loop in PyTorch, weights
copied from the same params) and prints the JAX / PyTorch ratio and the share of equal
tokens at temperature 0. Parameters are random: throughput does not depend on them.
"published calls/token" counts the model calls the published loop makes for the same run
(``sampler.reference_model_calls``: Fast-dLLM's KV-cache loops call once more in a block
that its first call decoded whole); ``--mask_in_softmax keep`` samples as the published
code does (the default, drop, is this project's SUBS).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mdlm_jax import model
from mdlm_jax.config_base import base_config
from mdlm_jax.diffusion import categorical, sampler


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--family", default="llama")
    a("--d_model", type=int, default=64)
    a("--n_layers", type=int, default=2)
    a("--n_heads", type=int, default=4)
    a("--mlp_dim", type=int, default=256)
    a("--vocab_size", type=int, default=258)
    a("--prompt_length", type=int, default=16)
    a("--gen_length", type=int, default=64)
    a("--block_length", type=int, default=16)
    a("--steps", type=int, default=64)
    a("--extra_masks", type=int, default=0)
    a("--temperature", type=float, default=0.0)
    a("--threshold", type=float, default=0.9)
    a("--strategies", default="ancestral,confidence,threshold")
    a("--kv_caches", default="none,dual", help="for confidence/threshold (llama only)")
    a("--batch_sizes", default="1,8")
    a("--repeats", type=int, default=3)
    a("--python_loop", action="store_true")
    a("--torch", action="store_true")
    a("--mask_in_softmax", default="drop", choices=("keep", "drop"),
      help="keep: the published LLaDA / Fast-dLLM softmax (the torch loop follows it)")
    return p.parse_args()


def make_config(args):
    c = base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads = args.family, args.d_model, args.n_layers, \
        args.n_heads
    m.mlp_dim, m.vocab_size = args.mlp_dim, args.vocab_size
    m.max_length = args.prompt_length + args.gen_length + args.extra_masks
    c.diffusion.mask_id = args.vocab_size - 1
    s = c.sampler
    s.gen_length, s.block_length, s.steps = args.gen_length, args.block_length, args.steps
    s.extra_masks, s.temperature, s.threshold = args.extra_masks, args.temperature, \
        args.threshold
    s.mask_in_softmax = args.mask_in_softmax
    return c


def random_params(model_cfg, seed=0):
    apply, shapes, _ = model.abstract(model_cfg)
    rng = np.random.default_rng(seed)
    return apply, jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0, 0.2, s.shape).astype(np.float32)), shapes)


def timed(fn, repeats):
    out = jax.block_until_ready(fn())  # compile + warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best, out


def python_loop_sampler(apply, params, s: sampler.Settings, gen_start, jit_update):
    """The ``confidence`` strategy as a Python loop calling a jitted model.

    The per-step update (same maths as the jitted loop) runs op by op in eager JAX, as a
    direct port of LLaDA's loop would, or as one jitted function with ``jit_update``.
    """
    model_fn = jax.jit(lambda p, x: apply(p, x, None))

    def update(logits, x, key, count_B, lo):
        pos = jnp.arange(x.shape[1])
        in_block = (pos >= lo) & (pos < lo + s.block_length)
        k_x0, k_conf = jax.random.split(key)
        logits = categorical.filter_logits(logits, s)
        x0 = categorical.sample_x0(logits, k_x0, s)
        cand = (x == s.mask_id) & in_block[None]
        score = jnp.where(cand, categorical.confidence(logits, x0, k_conf, s), -jnp.inf)
        return jnp.where(sampler.select_top(score, count_B) & cand, x0, x)

    if jit_update:
        update = jax.jit(update)

    def run(canvas, rng):
        x, step = canvas, 0
        spb = s.steps // s.num_blocks
        for blk in range(s.num_blocks):
            lo = gen_start + blk * s.block_length
            masked = jnp.sum(x[:, lo:lo + s.block_length] == s.mask_id, -1)
            counts = sampler.num_transfer_tokens(masked, spb)
            for j in range(spb):
                x = update(model_fn(params, x), x, jax.random.fold_in(rng, step),
                           counts[:, j], lo)
                step += 1
        return x

    return run


def main():
    args = parse()
    c = make_config(args)
    apply, params = random_params(c.model)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}; "
          f"model {args.family} d={args.d_model} layers={args.n_layers} "
          f"params={model.count_params(params):,}; prompt {args.prompt_length}, "
          f"gen {args.gen_length}, block {args.block_length}, steps {args.steps}, "
          f"extra_masks {args.extra_masks}, T={args.temperature}")
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, args.vocab_size - 1, args.prompt_length).tolist()
    print(f"{'strategy':<22}{'batch':>6}{'tokens/s':>12}{'calls/token':>13}"
          f"{'published calls/token':>23}{'seconds':>10}")
    jax_conf = {}
    for b in map(int, args.batch_sizes.split(",")):
        for strategy in args.strategies.split(","):
            caches = ["none"] if strategy == "ancestral" or args.family != "llama" \
                else args.kv_caches.split(",")
            for kv in caches:
                s = sampler.Settings.from_config(c, strategy=strategy, kv_cache=kv)
                canvas, start = sampler.build_canvas(prompt, s, b)
                fn = sampler.make_sample_fn(apply, s, gen_start=start, cached=apply.cached)
                sec, out = timed(lambda fn=fn, canvas=canvas: fn(params, canvas,
                                                                 jax.random.key(0)),
                                 args.repeats)
                name = strategy + ("" if kv == "none" else f"+{kv}")
                calls = int(out["model_calls"]) / args.gen_length
                ref = sampler.reference_model_calls(out, s) / args.gen_length
                print(f"{name:<22}{b:>6}{b * args.gen_length / sec:>12.1f}{calls:>13.3f}"
                      f"{ref:>23.3f}{sec:>10.4f}")
                if strategy == "confidence" and kv == "none":
                    jax_conf[b] = (sec, np.asarray(out["tokens"]), canvas, start, s)
    for b, (sec, tokens, canvas, start, s) in jax_conf.items():
        for jit_update in ([False, True] if args.python_loop else []):
            loop = python_loop_sampler(apply, params, s, start, jit_update)
            psec, ptoks = timed(lambda loop=loop, canvas=canvas: loop(canvas,
                                                                      jax.random.key(0)),
                                args.repeats)
            what = "jitted model + jitted update" if jit_update else "jitted model, eager update"
            print(f"python loop ({what}, confidence) batch {b}: "
                  f"{b * args.gen_length / psec:.1f} tokens/s; jitted loop is "
                  f"{psec / sec:.2f}x faster; same tokens: "
                  f"{np.mean(np.asarray(ptoks) == tokens):.3f}")
        if args.torch:
            torch_compare(params, c, s, canvas, start, tokens, sec, b, args)


def torch_compare(params, c, s, canvas, start, tokens, sec, b, args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch
    import torch_llada_sampler as tls

    tmodel = tls.TorchLlama.from_jax(jax.device_get(params), c.model)
    prompt = torch.from_numpy(np.array(canvas[:, :start])).long()
    kw = dict(steps=s.steps, gen_length=s.gen_length, block_length=s.block_length,
              temperature=s.temperature, mask_id=s.mask_id, extra_masks=s.extra_masks,
              suppress_mask=not s.mask_in_softmax)
    tls.generate(tmodel, prompt, **kw)  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        x, _ = tls.generate(tmodel, prompt, **kw)
        best = min(best, time.perf_counter() - t)
    same = np.mean(x.numpy()[:, start:start + s.gen_length]
                   == tokens[:, start:start + s.gen_length])
    print(f"torch LLaDA loop (confidence) batch {b}: {b * args.gen_length / best:.1f} "
          f"tokens/s (torch {torch.__version__}, {torch.get_num_threads()} threads); "
          f"jax / torch speed ratio {best / sec:.2f}; same tokens: {same:.3f}")


if __name__ == "__main__":
    main()
