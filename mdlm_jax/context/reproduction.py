"""The miniature reproduction (``launch/reproduce.sh``): evaluate the arms, write the report.

    python -m mdlm_jax.context.reproduction finished WORKDIR        # exit 0: run complete
    python -m mdlm_jax.context.reproduction evaluate --workdir W \\
        --config configs/context/locality.py:model=repro_cpu,path=W [--config ...]
    python -m mdlm_jax.context.reproduction report --runs runs/repro_cpu \\
        --out docs/REPRODUCTION.md --size cpu

``evaluate`` runs several experiments of the suite on one model in one process: each is
exactly ``python -m mdlm_jax.main context --config SPEC --workdir W`` (``harness.run``, the
same files, resumable), with the model loaded once. ``report`` reads each arm's
``RUNS/<arm>/context/<experiment>/results.jsonl`` and ``summary.json``, the arms'
``config.json`` and ``metrics.jsonl`` and the script's ``RUNS/timings.jsonl``, and writes
the markdown report with its figures in ``<report name>_figures/`` next to it: the arms
overlaid per experiment (``report.plot``), the paper's statements (PAPER.md) beside the
measured contrasts, and a verdict per finding by the rule of ``findings``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

from mdlm_jax.context import findings

ARMS = {  # the arms of configs/repro/, in training order
    "mdlm": "MDLM from scratch (LLaDA-style, linear schedule)",
    "ar": "AR from scratch (the same network, causal)",
    "mdlm_ma": "MDLM + mask-agnostic fine-tune (CE + TV, LoRA)",
    "mdlm_ce": "MDLM + CE-only fine-tune (LoRA)",
    "mdlm_from_ar": "AR-initialised MDLM (logits shifted, every weight trained)",
}
EXPERIMENTS = ("locality", "extra_masks", "dot_filler", "mask_sensitivity")
PAPER = {  # quoted from /work/shared/PAPER.md, sections 3-5
    "locality": "10 relevant + 40 distractor examples, block position 0..40: \"MDLM accuracy "
                "falls steadily as the block moves away from the mask (no U-shape); AR models "
                "show the usual U-shape.\"",
    "mask distraction": "k = 0..200 extra masks, one decoding step: \"LLaDA Base loses ~23 "
                        "points and Instruct ~27; Dream loses 6-8 points by ~20 masks.\"",
    "dots hurt less": "the k masks replaced by \" .\" repeated: \"LLaDA then loses at most 3 / "
                      "10 points: the mask tokens themselves distract.\"",
    "mask-agnostic fix": "\"CE+TV flattens accuracy vs mask count; relative degradation (max - "
                         "min) / max averaged over 2/4/6 decoding steps goes 15.5% -> 7.9% "
                         "(LLaDA-Base) and 27.5% -> 17.0% (LLaDA-Instruct); CE alone does not "
                         "help; locality bias of LLaDA-Base is reduced.\"",
}
FINDINGS = ("locality", "mask distraction", "dots hurt less", "mask-agnostic fix")


# ------------------------------------------------------------------ workdirs
def finished(workdir: str) -> bool:
    """True when ``workdir`` holds a checkpoint at its config's ``train.num_steps``."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            steps = int(json.load(f)["train"]["num_steps"])
        names = os.listdir(os.path.join(workdir, "checkpoints"))
    except (OSError, KeyError, ValueError):
        return False
    done = [int(n) for n in names if n.isdigit()]
    return bool(done) and max(done) >= steps


def _read_json(path: str):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _read_jsonl(path: str) -> list[dict]:
    from mdlm_jax.context.harness import _read_rows

    return _read_rows(path)


def arm_names(runs: str) -> list[str]:
    """The arms under ``runs`` with a ``config.json``: the known ones in training order."""
    if not os.path.isdir(runs):
        raise FileNotFoundError(f"{runs} does not exist: run launch/reproduce.sh first, or pass "
                                "--runs the folder it wrote")
    found = [d for d in sorted(os.listdir(runs))
             if os.path.isfile(os.path.join(runs, d, "config.json"))]
    return [a for a in ARMS if a in found] + [a for a in found if a not in ARMS]


def load_arm(runs: str, arm: str) -> dict:
    wd = os.path.join(runs, arm)
    config = _read_json(os.path.join(wd, "config.json"))
    out = {"name": arm, "workdir": wd, "config": config, "finished": finished(wd),
           "causal": bool(config["model"]["causal"]), "results": {}, "summaries": {}}
    for exp in EXPERIMENTS:
        folder = os.path.join(wd, "context", exp)
        rows = _read_jsonl(os.path.join(folder, "results.jsonl"))
        summary = _read_json(os.path.join(folder, "summary.json"))
        if rows and summary:
            out["results"][exp], out["summaries"][exp] = rows, summary
            run = _read_json(os.path.join(folder, "run.json")) or {}
            out["words"] = run.get("words", "all")
    metrics = _read_jsonl(os.path.join(wd, "metrics.jsonl"))
    train = [m for m in metrics if m.get("kind") == "train"]
    speed = [m["tokens_per_s"] for m in train if "tokens_per_s" in m][1:]  # first: compile
    timed = [m for m in train if "step_time_s" in m]
    step_seconds = sum(m["step_time_s"] * (m["step"] - prev["step"])
                       for prev, m in zip(timed, timed[1:]) if m["step"] > prev["step"])
    evals = [m for m in metrics if m.get("kind") == "eval"]
    out["train"] = {"steps": train[-1]["step"] if train else None,
                    "loss_first": train[0]["loss"] if train else None,
                    "loss_last": train[-1]["loss"] if train else None,
                    "tokens_per_s": sum(speed) / len(speed) if speed else None,
                    "mfu": next((m["mfu"] for m in reversed(train) if "mfu" in m), None),
                    "step_seconds": step_seconds if len(timed) > 1 else None,
                    "eval_nats": evals[-1].get("nats_per_token") if evals else None}
    return out


def parameter_count(config: dict) -> int:
    """Parameters of the arm's network (without LoRA adapters)."""
    import math

    import jax

    from mdlm_jax import model as model_lib
    from mdlm_jax.config_base import base_config

    cfg = base_config().model
    cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items()
                if k in cfg})
    _, shapes, _ = model_lib.abstract(cfg)
    return int(sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)))


# ------------------------------------------------------------------ evaluate
def evaluate(workdir: str, specs: list[str]) -> None:
    """Each ``SPEC`` (``configs/context/X.py[:ARG]``) as the ``context`` command would run
    it on ``workdir``, the model loaded once for all."""
    from mdlm_jax.config_base import load_config_file
    from mdlm_jax.context import harness
    from mdlm_jax.parallel import mesh as mesh_lib

    mesh, model, loaded_for = None, None, None
    for spec in specs:
        path, _, arg = spec.partition(":")
        config = load_config_file(path, arg or None)
        cx = config.context
        key = (cx.model_path, cx.dtype, cx.model_name, config.sampler.mask_in_softmax)
        if mesh is None:
            mesh = mesh_lib.make_mesh(config.mesh)
        if key != loaded_for:
            model, loaded_for = harness.load_model(config, mesh), key
        harness.run(config, workdir, model=model, mesh=mesh)


# -------------------------------------------------------------------- figures
def merged_summary(arms: list[dict], exp: str) -> dict | None:
    """One summary whose series are the arms' (``arm`` or ``arm: series``)."""
    conds, title = [], None
    for arm in arms:
        s = arm["summaries"].get(exp)
        if s is None:
            continue
        title = s
        many = len({c["series"] for c in s["conditions"]}) > 1
        for c in s["conditions"]:
            conds.append({**c, "series": f"{arm['name']}: {c['series']}" if many
                          else arm["name"]})
    if title is None:
        return None
    return {**title, "model": "arms: " + ", ".join(a["name"] for a in arms
                                                     if exp in a["summaries"]),
            "conditions": conds}


def write_figures(arms: list[dict], folder: str) -> dict:
    """``{experiment: (accuracy png, p_correct png)}`` written into ``folder``."""
    from mdlm_jax.context import experiments, report

    os.makedirs(folder, exist_ok=True)
    out = {}
    for exp in EXPERIMENTS:
        merged = merged_summary(arms, exp)
        if merged is None:
            continue
        paths = []
        for metric in ("accuracy", "p_correct"):
            path = os.path.join(folder, f"{exp}_{metric}.png")
            report.plot(experiments.get(exp), merged, path + ".tmp", metric=metric)
            os.replace(path + ".tmp", path)
            paths.append(path)
        out[exp] = tuple(paths)
    return out


# --------------------------------------------------------------------- report
def hardware() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{len(devices)} x {'/'.join(kinds)} ({jax.default_backend()}); host CPU {cpu}, "
            f"{os.cpu_count()} cores (load average at report time {load}); jax "
            f"{jax.__version__}, Python {platform.python_version()}")


def _timings(runs: str) -> list[dict]:
    return _read_jsonl(os.path.join(runs, "timings.jsonl"))


def _seconds(timings, arm, stage) -> str:
    """Wall (and CPU) seconds of an arm's stage, summed over the runs that did it."""
    ran = [t for t in timings
           if t.get("arm") == arm and t.get("stage") == stage and t.get("status") == "ran"]
    if not ran:
        return "-"
    wall = sum(float(t["seconds"]) for t in ran)
    cpu = [float(t["cpu_seconds"]) for t in ran if t.get("cpu_seconds", 0) > 0]
    return f"{wall:.0f} s" + (f" ({sum(cpu):.0f} s CPU)" if len(cpu) == len(ran) else "")


def _num(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _points(p: findings.Paired) -> str:
    """An accuracy contrast in points (the paper's unit)."""
    if p.mean is None:
        return "-"
    if p.ci is None:
        return f"{100 * p.mean:+.1f} points (n={p.n})"
    return f"{100 * p.mean:+.1f} points [{100 * p.ci[0]:+.1f}, {100 * p.ci[1]:+.1f}]"


def _next_step(finding: str, row: dict | None, chance: dict, headline: dict) -> str:
    """What the report says when a finding is not reproduced (see ``_markdown``)."""
    if row is None:
        return ("Not measured: the arm or experiment this finding needs has no results; run "
                "the script again (it resumes) and check its log.")
    if not row["does_task"]:
        weak = [a for a in row["arms"] if a not in chance or chance[a].ci is None
                or chance[a].ci[0] <= 0]
        said = "; ".join(f"`{a}`: {chance[a].fmt() if a in chance else 'not measured'}"
                         for a in weak)
        return ("Not every model of the contrast chooses the right letter above chance "
                f"(restricted accuracy - chance, {said}): a model that has not learned the task "
                "cannot show an effect of the layout or of masks. Next: train longer or larger "
                "(the `gpu` size), then evaluate again with the same declared settings.")
    if finding == "mask-agnostic fix" and headline.get("mask distraction") != \
            findings.REPRODUCED:
        return ("The base MDLM is not measurably distracted by extra masks here, so there is "
                "no drop for the fine-tune to reduce. Next: first reproduce the distraction "
                "(a larger model, longer contexts), then compare the fine-tunes.")
    p = row["p_correct"]
    if row["verdict"] == findings.NOT_REPRODUCED:
        return ("The measured effect goes the other way at this size. Next: check whether it "
                "persists at the `gpu` size and with longer training before reading it as a "
                "contradiction of the paper.")
    if p.ci is not None and p.mean:
        half = p.ci[1] - p.mean
        need = int(p.n * (half / abs(p.mean)) ** 2) + 1
        return (f"The 95% CI (± {half:.3f}, n={p.n} paired questions) includes zero. An "
                f"effect of the measured size ({p.mean:+.3f}) would need about {need} "
                "questions to resolve (more `points` per task pair). Next: more points, then "
                "the `gpu` size.")
    return "Too few paired questions for an interval. Next: more points per task pair."


def _arms_table(arms, timings) -> list[str]:
    lines = ["| arm | what | parameters | steps | batch x length | "
             "loss first -> last (nats/token) | train wall time | of which in steps | "
             "evaluation wall time | tokens/s | MFU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        c, t = a["config"], a["train"]
        lora = f" + LoRA r{c['lora']['rank']}" if c["lora"]["rank"] else ""
        loss = (f"{t['loss_first']:.3f} -> {t['loss_last']:.3f}" if t["loss_first"] is not None
                else "-")
        if t["eval_nats"] is not None:
            loss += f" (validation {t['eval_nats']:.3f})"
        steps = t["steps"] if t["steps"] is not None else "-"
        if not a["finished"]:
            steps = f"{steps} of {c['train']['num_steps']} (not finished)"
        lines.append(
            f"| `{a['name']}` | {ARMS.get(a['name'], '')} | {parameter_count(c):,}{lora} | "
            f"{steps} | "
            f"{c['data']['global_batch_size']} x {c['data']['seq_len']} | {loss} | "
            f"{_seconds(timings, a['name'], 'train')} | "
            f"{_num(t['step_seconds'], '{:.0f} s')} | "
            f"{_seconds(timings, a['name'], 'evaluate')} | "
            f"{_num(t['tokens_per_s'], '{:,.0f}')} | {_pct(t['mfu'])} |")
    return lines


def _tried(arms) -> list[str]:
    out = []
    for a in arms:
        c = a["config"]
        m, d, o = c["model"], c["data"], c["optimizer"]
        terms = ", ".join(f"{k} {v:g}" for k, v in c["loss"]["terms"].items())
        extra = ""
        if d["name"] == "context_tasks":
            ct = d["context_tasks"]
            extra = (f"; corpus: {ct['fraction']:.0%} task documents ({ct['documents']} "
                     f"documents, 1-{ct['max_relevant']} relevant, 0-{ct['max_distractors']} "
                     f"distractors, 1-{ct['max_filler']} masks or ' .' fillers)")
        elif d["name"] == "prompt_answer":
            extra = f"; data: prompt/answer pairs from {d['files']!r}"
        kind = "causal" if m["causal"] else "bidirectional"
        out.append(f"- `{a['name']}`: {m['family']} {m['n_layers']} layers x width "
                   f"{m['d_model']}, {m['n_heads']} heads, {kind}"
                   f"{', logits shifted' if m['logit_shift'] else ''}; loss {terms}; "
                   f"{c['train']['num_steps']} steps of {d['global_batch_size']} x "
                   f"{d['seq_len']} tokens, lr {o['learning_rate']:g} ({o['decay']})"
                   f"{extra}.")
    rows = [r for a in arms for r in a["results"].get("extra_masks", a["results"].get(
        "locality", []))]
    if rows:
        r = rows[0]
        pairs = len({x["pair"] for x in rows})
        out.append(f"- Task difficulty (evaluation): {r['n_relevant']} relevant and "
                   f"{r['n_distractors']} distractor in-context example(s), {pairs} task pairs, "
                   f"prompts of about {sum(x['prompt_tokens'] for x in rows) / len(rows):.0f} "
                   "tokens; per experiment the conditions and points of the tables below.")
    words = sorted({a["words"] for a in arms if "words" in a})
    if words == ["heldout"]:
        out.append("- Evaluation words: the held-out quarter of each category's list, never in "
                   "a training document. The answer needs the category of a word the model "
                   "has only met, if at all, in the ordinary text; an arm at chance here may "
                   "still do the task on its training words (rerun the experiments with "
                   "`--config.context.words=train`, new questions from the training words, to "
                   "tell format learning from word knowledge).")
    elif words:
        out.append(f"- Evaluation words: {', '.join(words)} (`context.words`).")
    return out


def _markdown(runs, out, size, command, arms, rows, figs, timings) -> str:
    rel = os.path.relpath(os.path.dirname(os.path.abspath(out)) or ".")
    head = {r["finding"]: r for r in rows if r["headline"]}
    verdicts = {f: head[f]["verdict"] if f in head else findings.INCONCLUSIVE
                for f in FINDINGS}
    index = findings.index_results({a["name"]: a["results"] for a in arms})
    chance = {a["name"]: findings.above_chance(index, a["name"]) for a in arms
              if findings.baseline(index, a["name"]) is not None}
    L = ["# Reproduction in miniature: locality bias, mask distraction, the mask-agnostic fix",
         "",
         f"The runs of `{command or 'bash launch/reproduce.sh ' + size}` in `{runs}` (size "
         f"`{size}`; the dates of each command are at the end); report written {now_utc()}. "
         f"Hardware: {hardware()}.", ""]
    if size == "smoke":
        L += ["**Smoke size: every arm trains a few steps to check the pipeline; these numbers "
              "mean nothing about the findings.**", ""]
    partial = [a["name"] for a in arms if not a["finished"] or not a["summaries"]]
    missing = [a for a in ARMS if a not in {x["name"] for x in arms}]
    if partial or missing:
        L += [f"**Partial report**: not finished or not evaluated: "
              f"{', '.join(f'`{a}`' for a in partial + missing)}. Findings that need them are "
              "inconclusive (not measured); the same command resumes the run.", ""]
    if size != "gpu":
        L += ["No GPU was used for this report. On one GPU (sized for about 8 minutes of "
              "training on an H200): `bash launch/reproduce.sh gpu` (runs in `runs/repro_gpu`, "
              "report in `docs/REPRODUCTION.md`).", ""]
    L += ["## Verdicts", "",
          "| finding | the paper (PAPER.md) | measured: p(correct) contrast, 95% CI | "
          "accuracy contrast | verdict |", "|---|---|---|---|---|"]
    for f in FINDINGS:
        r = head.get(f)
        L.append(f"| {f} | {PAPER[f]} | {r['label'] + ': ' + r['p_correct'].fmt() if r else '-'}"
                 f" | {_points(r['correct']) if r else '-'} | **{verdicts[f]}** |")
    L += ["", "### The rule (declared before the runs)", "", findings.RULE, "",
          "### Does each arm do the task at all?", "",
          "Restricted accuracy (the argmax over A / B / C) minus chance (the score of the best "
          "constant letter: 1/3 when the answers are balanced), with the "
          "relevant examples next to the question and no extra masks (locality, largest "
          "position); a model at chance cannot show a context effect, and its contrasts are "
          "inconclusive by the rule.", "",
          "| arm | restricted accuracy - chance (95% CI) | does the task |", "|---|---|---|"]
    L += [f"| `{k}` | {v.fmt()} | {'yes' if v.ci and v.ci[0] > 0 else 'no'} |"
          for k, v in chance.items()]
    L += ["", "## The arms", ""] + _arms_table(arms, timings) + [
        "", "Train wall time sums the train commands recorded in `timings.jsonl` (a command "
        "stopped before it could record its time, e.g. killed, is missing; its resumption is "
        "counted); \"of which in steps\" sums the step times logged in the arm's "
        "`metrics.jsonl` over all its runs."]
    sections = (("locality", "1. Locality bias", ("locality",)),
                ("mask distraction", "2. Mask distraction", ("extra_masks", "mask_sensitivity")),
                ("dots hurt less", "2b. Masks vs ' .' filler", ("dot_filler",)),
                ("mask-agnostic fix", "3. The mask-agnostic fix", ()))
    for f, title, exps in sections:
        L += ["", f"## {title}", "", f"The paper: {PAPER[f]}", ""]
        for exp in exps:
            if exp in figs:
                a, p = (os.path.relpath(x, rel) for x in figs[exp])
                L += [f"| {exp}: accuracy | {exp}: p(correct) |", "|---|---|",
                      f"| ![{exp} accuracy]({a}) | ![{exp} p(correct)]({p}) |", ""]
        L += ["| contrast | p(correct), 95% CI | accuracy | verdict |", "|---|---|---|---|"]
        L += [f"| {r['label']}{' (headline)' if r['headline'] else ''} | {r['p_correct'].fmt()}"
              f" | {_points(r['correct'])} | {r['verdict']} |" for r in rows if r["finding"] == f]
        if f == "mask-agnostic fix":
            L += ["", "Relative degradation (max - min) / max over the extra-mask counts "
                  "(experiment 4, one decoding step; the paper averages 2 / 4 / 6 steps):", "",
                  "| arm | accuracy | p(correct) |", "|---|---|---|"]
            for a in arms:
                s = a["summaries"].get("extra_masks")
                if s:
                    pc = {"conditions": [{"accuracy": c.get("p_correct", 0.0)}
                                         for c in s["conditions"]]}
                    L.append(f"| `{a['name']}` | {_pct(findings.relative_degradation(s))} | "
                             f"{_pct(findings.relative_degradation(pc))} |")
        if verdicts[f] != findings.REPRODUCED:
            L += ["", f"**{verdicts[f].capitalize()}.** "
                  + _next_step(f, head.get(f), chance, verdicts)]
    L += ["", "## What was tried", ""] + _tried(arms)
    L += ["", "## Per-arm tables", ""]
    from mdlm_jax.context import experiments, report

    for a in arms:
        for exp, s in a["summaries"].items():
            L += [f"<details><summary>{a['name']}: {exp}</summary>", "",
                  report.markdown_table(experiments.get(exp), s), "</details>", ""]
    L += ["## Commands and wall times", "", "```", command or f"bash launch/reproduce.sh {size}",
          "```", "", "Wall time is elapsed time (start-up, data generation, compilation, training, "
          "evaluation at the end); \"of which in steps\" sums the logged step times of "
          "`metrics.jsonl`; CPU time is user + system time of the command's processes (the "
          "steadier measure on a shared machine; 0 or missing: not recorded).", "",
          "| started | arm | stage | status | wall time | CPU time | command |",
          "|---|---|---|---|---|---|---|"]
    L += [f"| {t.get('start', '-')} | {t.get('arm', '-')} | {t.get('stage', '-')} | "
          f"{t.get('status', '-')} | {_num(t.get('seconds'), '{:.0f} s')} | "
          f"{_num(t.get('cpu_seconds') or None, '{:.0f} s')} | `{t.get('command', '')}` |"
          for t in timings]
    L += ["", "Each arm's resolved config is `" + runs + "/<arm>/config.json`; its metrics "
          "`metrics.jsonl`; each experiment's per-question results "
          "`context/<experiment>/results.jsonl`.", ""]
    return "\n".join(L)


def write(runs: str, out: str, *, size: str, command: str = "") -> str:
    """Write the report ``out`` (and its figures) from the arms under ``runs``."""
    names = arm_names(runs)
    if not names:
        raise ValueError(f"{runs} holds no arm workdir (<arm>/config.json); run "
                         "launch/reproduce.sh first")
    arms = [load_arm(runs, a) for a in names]
    index = findings.index_results({a["name"]: a["results"] for a in arms})
    causal = tuple(a["name"] for a in arms if a["causal"])
    capable = {a: findings.does_task(index, a) for a in names}
    rows = [c.evaluate(index, capable)
            for c in findings.contrasts(index, names, causal=causal)]
    figs = write_figures(arms, os.path.splitext(out)[0] + "_figures")
    text = _markdown(runs, out, size, command, arms, rows, figs, _timings(runs))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        f.write(text)
    os.replace(out + ".tmp", out)
    said = ", ".join(f"{r['finding']}: {r['verdict']}" for r in rows if r["headline"])
    print(f"reproduction report: {out} ({said})")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m mdlm_jax.context.reproduction")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("finished", help="exit 0 when WORKDIR holds its last step")
    f.add_argument("workdir")
    e = sub.add_parser("evaluate", help="several context experiments on one workdir")
    e.add_argument("--workdir", required=True)
    e.add_argument("--config", action="append", required=True)
    r = sub.add_parser("report", help="write the reproduction report")
    r.add_argument("--runs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--size", required=True)
    r.add_argument("--command", default="")
    args = p.parse_args(argv)
    if args.command == "finished":
        sys.exit(0 if finished(args.workdir) else 1)
    from mdlm_jax import command_line

    if args.command == "evaluate":
        command_line.run(evaluate, args.workdir, args.config)
    else:
        command_line.run(write, args.runs, args.out, size=args.size, command=args.command)


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["ARMS", "EXPERIMENTS", "FINDINGS", "PAPER", "arm_names", "evaluate",
           "finished", "hardware", "load_arm", "main", "merged_summary", "now_utc",
           "parameter_count", "write_figures"]

if __name__ == "__main__":
    main()
