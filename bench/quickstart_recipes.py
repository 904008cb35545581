"""Quickstart recipes compared: validation bits per character against time on this machine.

Each candidate is the README's train command (train, eval, samples: what
``launch/quickstart.sh`` runs after installing) in a fresh subprocess and a fresh workdir,
with ``--config.key=value`` overrides on top of ``configs/quickstart.py``:

    python bench/quickstart_recipes.py --name base --set train.num_steps=300
    python bench/quickstart_recipes.py --name llama_lr3e-3 --set model.family=llama \\
        --set optimizer.learning_rate=3e-3 --json results.jsonl

Reported per run: steps, wall time, the process's CPU time (user + sys; on a machine
shared with other jobs the CPU time is the steadier figure), the phases read off
``metrics.jsonl`` timestamps (start-up and compile before the first logged step, training,
eval, sampling), the 1-minute load average before and after, the final train loss, the
validation bits per token (= bits per character: the quickstart's tokens are bytes) and
the first line of each strategy's sample. ``--json`` appends one JSON object per run.
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
        "bits_per_char": round(ev["bits_per_token"], 4), "samples": samples,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override (repeatable), e.g. model.family=llama")
    p.add_argument("--workdir", default="", help="default: a fresh temporary directory")
    p.add_argument("--json", default="", help="append the result to this JSON-lines file")
    args = p.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix=f"qs_{args.name}_")
    if os.path.exists(os.path.join(workdir, "checkpoints")):
        raise SystemExit(f"error: {workdir} already holds a run; pass a new --workdir")
    result = run_candidate(args.name, args.set, workdir)
    result["workdir"] = workdir
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
