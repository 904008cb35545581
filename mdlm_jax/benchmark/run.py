"""The ``benchmark`` command: one lm-eval run from a recipe config, every setting recorded.

    python -m mdlm_jax.main benchmark --config configs/benchmarks/llada_8b_base.py:gsm8k \\
        --config.benchmark.path=/models/LLaDA-8B-Base

Results go to ``benchmark.output_dir/<tasks>.json`` (an existing file is never
overwritten): lm-eval's metrics, the recipe (``sampler`` and ``benchmark`` groups, its
source and published score), the model's path and config, timings, and one record per
request (decoding settings, the number of extra masks, stop reason, MC standard error),
and lm-eval's per-document samples (the filtered / extracted answer and its metrics).
Standard errors are not bootstrapped (``bootstrap_iters=0``).
"""

from __future__ import annotations

import json
import os
import time

INSTALL_HINT = ("lm-eval is not installed; install the evaluation extra: "
                "pip install -e '.[eval]'  (or: pip install lm-eval)")


def require_lm_eval():
    try:
        import lm_eval  # noqa: F401
    except ImportError as e:
        raise ValueError(INSTALL_HINT) from e


def evaluate(config, *, loaded=None, mesh=None) -> dict:
    """Run ``config.benchmark.tasks`` through lm-eval; returns the result dict (not written)."""
    require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from mdlm_jax.benchmark.harness import MDLMJax

    b = config.benchmark
    tasks = [t.strip() for t in b.tasks.split(",") if t.strip()]
    if not tasks:
        raise ValueError("benchmark.tasks is empty; name lm-eval tasks, e.g. "
                         "--config.benchmark.tasks=gsm8k")
    start = time.perf_counter()
    lm = MDLMJax(config=config, loaded=loaded, mesh=mesh)
    load_s = time.perf_counter() - start
    manager = TaskManager(include_path=b.include_path or None,
                          include_defaults=b.builtin_tasks or not b.include_path)
    start = time.perf_counter()
    out = simple_evaluate(
        model=lm, tasks=tasks, num_fewshot=None if b.num_fewshot < 0 else b.num_fewshot,
        limit=b.limit or None, task_manager=manager, log_samples=True,
        apply_chat_template=bool(b.chat_template), fewshot_as_multiturn=b.fewshot_as_multiturn,
        random_seed=b.seed, numpy_random_seed=b.seed, fewshot_random_seed=b.seed,
        bootstrap_iters=0)
    eval_s = time.perf_counter() - start
    if out is None:  # lm-eval returns None on processes other than the first
        return {}
    return {
        "results": out["results"], "n-shot": out.get("n-shot", {}),
        "recipe": {"sampler": config.sampler.to_dict(), "benchmark": config.benchmark.to_dict(),
                   "source": b.source, "published": b.published},
        "model": {"path": os.path.abspath(b.path) if b.path else None,
                  "kind": lm.loaded.kind, "step": lm.loaded.step,
                  "family": lm.config.model.family, "causal": bool(lm.config.model.causal),
                  "mask_id": int(lm.config.diffusion.mask_id)},
        "timing": {"load_s": load_s, "eval_s": eval_s, "requests": len(lm.records),
                   "requests_per_s": len(lm.records) / max(eval_s, 1e-9)},
        "requests": lm.records,
        # lm-eval's per-document record: the answer each filter extracted, the metrics
        "samples": out.get("samples", {}),
    }


def summary(result: dict) -> str:
    lines = []
    for task, metrics in sorted(result["results"].items()):
        shown = ", ".join(f"{k.split(',')[0]}={v:.4f}" for k, v in metrics.items()
                          if isinstance(v, (int, float)) and not k.startswith("alias")
                          and "stderr" not in k)
        lines.append(f"{task}: {shown}")
    if result["recipe"]["published"]:
        lines.append(f"published: {result['recipe']['published']} "
                     f"({result['recipe']['source']})")
    t = result["timing"]
    lines.append(f"{t['requests']} requests in {t['eval_s']:.1f} s "
                 f"({t['requests_per_s']:.2f} requests/s)")
    return "\n".join(lines)


def run(config) -> dict:
    """Evaluate, write the result file, print the scores beside the published ones."""
    import jax

    from mdlm_jax.parallel import mesh as mesh_lib

    require_lm_eval()
    mesh_lib.maybe_initialize_distributed()
    result = evaluate(config)
    if jax.process_index() != 0 or not result:
        return result
    path = write(result, config)
    print(summary(result))
    print(f"wrote {path}")
    return result


def write(result: dict, config) -> str:
    """``output_dir/<tasks>.json`` (``_1``, ``_2``, ... when taken: nothing is overwritten)."""
    from mdlm_jax.monitoring import unused_path

    folder = config.benchmark.output_dir
    os.makedirs(folder, exist_ok=True)
    name = config.benchmark.tasks.replace(",", "+").replace("/", "_")
    path = unused_path(folder, name, ".json")
    with open(path, "x") as f:
        json.dump(result, f, indent=1, default=str)
    return path
