"""Quickstart recipes compared: validation bits per character against time on this machine.

Each candidate is the README's train command (train, eval, samples: what
``launch/quickstart.sh`` runs after installing) in a fresh subprocess and a fresh workdir,
with ``--config.key=value`` overrides on top of ``configs/quickstart.py``: a named
candidate of :data:`CANDIDATES` (the ones compared in docs/BENCHMARKS.md, "Quickstart
recipe"), ad-hoc ``--set`` overrides, or both (``--set`` applied last)::

    python bench/quickstart_recipes.py --list
    python bench/quickstart_recipes.py --candidate B64x800 --json results.jsonl
    python bench/quickstart_recipes.py --name lr1e-2 --set optimizer.learning_rate=1e-2

Reported per run: steps, wall time, the process's CPU time (user + sys; on a machine
shared with other jobs the CPU time is the steadier figure), the phases read off
``metrics.jsonl`` timestamps (start-up and compile before the first logged step, training,
eval, sampling), the 1-minute load average before and after, the final train loss, the
validation bits per token and bits per character (``evaluate``: total nats over the
characters the scored tokens spell; equal on byte tokens of ASCII text) and the first
line of each strategy's sample. ``--json`` appends one JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mdlm_jax import monitoring  # noqa: E402

# Every candidate spells out the whole recipe (not only its difference from the current
# config), so a row stays reproducible when configs/quickstart.py changes.
_LLAMA_L32 = {"model.family": "llama", "model.time_conditioning": "False",
              "model.d_model": "128", "model.n_layers": "4", "model.mlp_dim": "384",
              "data.seq_len": "32", "data.global_batch_size": "128",
              "optimizer.warmup_steps": "20", "optimizer.ema_decay": "0.0",
              "eval.batch_size": "32", "eval.num_batches": "16", "train.num_steps": "400"}
_COSINE = {"optimizer.learning_rate": "3e-3", "optimizer.decay": "cosine",
           "optimizer.min_lr_ratio": "0.1", "optimizer.b2": "0.999"}
_LINEAR_TO_0 = {"optimizer.learning_rate": "6e-3", "optimizer.decay": "linear",
                "optimizer.min_lr_ratio": "0.0", "optimizer.b2": "0.95"}
_CHAR = {"data.tokenizer": "char", "model.vocab_size": "258", "diffusion.mask_id": "257"}
_BPE2048 = {"data.tokenizer": "kjv_bpe", "model.vocab_size": "2049",
            "diffusion.mask_id": "2048"}


def _recipe(*parts: dict, **changes: str) -> tuple[str, ...]:
    merged = {k: v for part in parts for k, v in part.items()}
    merged.update({k.replace("__", "."): v for k, v in changes.items()})
    return tuple(f"{k}={v}" for k, v in merged.items())


CANDIDATES = {
    # the recipe of 3d26bea: 4 x 128 llama, 128 x 32 characters, LR 3e-3 cosine to 3e-4
    "L32_B128_cos": _recipe(_LLAMA_L32, _COSINE, _CHAR),
    # LR 6e-3 decaying linearly to 0, Adam b2 0.95
    "L32_B128_lin0": _recipe(_LLAMA_L32, _LINEAR_TO_0, _CHAR),
    # the same tokens in twice the steps of half the batch
    "B64x800": _recipe(_LLAMA_L32, _LINEAR_TO_0, _CHAR, data__global_batch_size="64",
                       train__num_steps="800"),
    # half the depth (half the cost per token), twice the steps
    "2L_x800": _recipe(_LLAMA_L32, _LINEAR_TO_0, _CHAR, model__n_layers="2",
                       train__num_steps="800"),
    # both: a quarter of the model cost per step, four times the steps
    "2L_B64x1600": _recipe(_LLAMA_L32, _LINEAR_TO_0, _CHAR, model__n_layers="2",
                           data__global_batch_size="64", train__num_steps="1600",
                           train__log_every="20"),
    # third round: the same model and schedule on the kjv_bpe tokens (2048 ids, 3.8
    # characters per token), 32 tokens per sequence
    "BPE2048_L32_B128": _recipe(_LLAMA_L32, _COSINE, _BPE2048),
    # half the steps on 2048 ids
    "BPE2048_L32_B128x200": _recipe(_LLAMA_L32, _COSINE, _BPE2048, train__num_steps="200"),
    # longer sequences, half the batch: the same tokens per step
    "BPE2048_L64_B64": _recipe(_LLAMA_L32, _COSINE, _BPE2048, data__seq_len="64",
                               data__global_batch_size="64", eval__batch_size="16"),
}


def run_candidate(name: str, overrides: list[str], workdir: str) -> dict:
    cmd = [sys.executable, "-m", "mdlm_jax.main", "train", "--config",
           os.path.join(ROOT, "configs/quickstart.py"), "--workdir", workdir,
           "--config.train.progress_bar=False", *(f"--config.{o}" for o in overrides)]
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, cwd=ROOT)
    t1 = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{out[-3000:]}")
    train = monitoring.read_metrics(workdir, "train")
    ev = monitoring.read_metrics(workdir, "eval")[-1]
    samples = {m.group(1): m.group(2).strip()[:160]
               for m in re.finditer(r"\[sample (\w+), \d+ model calls\] (.*)", out)}
    return {
        "name": name, "overrides": overrides, "steps": train[-1]["step"],
        "wall_s": round(t1 - t0, 1), "cpu_s": round(cpu_s, 1),
        "startup_compile_s": round(train[0]["time"] - t0, 1),
        "train_s": round(train[-1]["time"] - train[0]["time"], 1),
        "eval_s": round(ev["time"] - train[-1]["time"], 1),
        "sample_s": round(t1 - ev["time"], 1),
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
        "final_loss": round(train[-1]["loss"], 4),
        "bits_per_token": round(ev["bits_per_token"], 4),
        "bits_per_char": round(ev["bits_per_character"], 4), "samples": samples,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--candidate", default="", choices=["", *CANDIDATES],
                   help="a named recipe of CANDIDATES (its overrides come first)")
    p.add_argument("--name", default="", help="the run's label (default: the candidate)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override (repeatable), e.g. model.family=llama")
    p.add_argument("--list", action="store_true", help="print the candidates and exit")
    p.add_argument("--workdir", default="", help="default: a fresh temporary directory")
    p.add_argument("--json", default="", help="append the result to this JSON-lines file")
    args = p.parse_args()
    if args.list:
        for name, overrides in CANDIDATES.items():
            print(f"{name}: {' '.join(overrides)}")
        return
    name = args.name or args.candidate
    if not name:
        raise SystemExit("error: pass --candidate NAME (see --list) or --name LABEL")
    overrides = [*CANDIDATES.get(args.candidate, ()), *args.set]
    workdir = args.workdir or tempfile.mkdtemp(prefix=f"qs_{name}_")
    if os.path.exists(os.path.join(workdir, "checkpoints")):
        raise SystemExit(f"error: {workdir} already holds a run; pass a new --workdir")
    result = run_candidate(name, overrides, workdir)
    result["workdir"] = workdir
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
