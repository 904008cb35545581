"""The ``context`` command: run one experiment of the suite on one model, resumably.

    python -m mdlm_jax.main context \\
        --config configs/context/extra_masks.py:model=llada_base,path=/models/LLaDA-8B-Base \\
        --workdir runs/context_llada_base

The model is ``context.model_path`` (``loading.load_model``): a workdir of this project
or a HuggingFace directory, cast to ``context.dtype``.

Outputs under ``WORKDIR/context/<experiment>/``: ``results.jsonl`` (one line per point,
appended and flushed batch by batch; a killed sweep continues where it stopped, and
finished points are never recomputed or rewritten), ``run.json`` (what the results belong
to: another model or seed in the same folder is refused), and, derived from the results
and rewritten at the end of each run, ``summary.json``, ``table.md`` and ``plot.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import jax
import numpy as np

from mdlm_jax.context import experiments, report, scoring, tasks
from mdlm_jax.context.loading import (  # noqa: F401  (re-exported)
    Model,
    config_from_hf_dir,
    is_hf_dir,
    is_workdir,
    load_model,
)


# --------------------------------------------------------------------- encoding
def encode_point(point, model: Model, cx):
    """``(Prompt, Encoded, masks)``: the point's prompt, its token ids and its number of
    mask tokens."""
    tok = model.tokenizer
    prompt = tasks.build_prompt(cx.seed, point.relevant, point.distractor, point.index,
                                point.layout, tasks.word_lists(cx.words))
    slot_id = tok.eos_id if model.causal else model.mask_id
    k = point.extra
    if point.filler == "dot":
        filler = tok.encode(" ." * k)
    else:
        if k < 0:  # masks equal to a share of the input length, the slot included
            n = len(tasks.encode_prompt(prompt, tok, slot_id=slot_id).tokens) - 1
            k = max(1, round(cx.mask_fraction * n)) - 1
        filler = [model.mask_id] * k
    enc = tasks.encode_prompt(prompt, tok, slot_id=slot_id, filler_ids=filler)
    masks = 0 if model.causal else sum(t == model.mask_id for t in enc.tokens)
    return prompt, enc, masks


def check_fits(point, enc, max_length: int, filler_tokens: int) -> None:
    n = len(enc.tokens)
    if n <= max_length:
        return
    over = n - max_length
    lo = point.layout
    if filler_tokens >= over:
        raise ValueError(f"{point.key}: {filler_tokens} extra tokens after the answer slot make "
                         f"a {n}-token prompt, over model.max_length={max_length}; at most "
                         f"{filler_tokens - over} fit: lower the mask counts")
    examples = lo.n_relevant + lo.n_distractors
    per = max(1, (n - filler_tokens) // max(examples + 1, 1))
    fit = max(0, examples - -(-over // per))
    raise ValueError(f"{point.key}: {examples} in-context examples make a {n}-token prompt, "
                     f"over model.max_length={max_length}; about {fit} examples fit: lower "
                     "context.n_relevant / n_distractors")


def _points_for(exp, points, model: Model) -> list:
    """The points ``model`` can score: a causal model has no mask token, so dot_filler
    keeps its ``' .'`` series (and k = 0) for it; other mask experiments are refused."""
    if not model.causal:
        return points
    if exp.name == "dot_filler":
        points = [p for p in points if p.filler == "dot" or p.extra == 0]
    if any(p.method in ("random", "confidence") or (p.filler == "mask" and p.extra != 0)
           for p in points):
        raise ValueError(f"experiment {exp.name!r} puts mask tokens in the prompt, and "
                         f"{model.name} is a causal (AR) model without one; run locality, "
                         "mask_location, attribution or dot_filler on it")
    return points


# -------------------------------------------------------------------- results
def _read_rows(path: str) -> list[dict]:
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: recomputed
                    continue
    return rows


def _claim_folder(folder: str, header: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "run.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = [k for k in header if old.get(k) != header[k]]
        if diff:
            k = diff[0]
            fix = "use another --workdir"
            if k == "step":  # the model was trained further since these results
                fix = f"keep them by moving the folder aside (mv {folder} {folder}.old) or use " \
                      "another --workdir"
            raise ValueError(f"{folder} holds results of another run ({k}: {old.get(k)!r}, now "
                             f"{header[k]!r}); {fix} (nothing was overwritten)")
        return
    with open(path, "x") as f:
        json.dump(header, f, indent=2)


def _append(path: str, rows: list[dict]) -> None:
    with open(path, "a+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():  # finish a line a kill may have cut
            f.seek(f.tell() - 1)
            if f.read(1) != "\n":
                f.write("\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------- batches
def _row_base(point, prompt, enc, masks, model: Model, cx, exp) -> dict:
    lo = point.layout
    return {
        "key": point.key, "experiment": exp.name, "model": model.name,
        "tokenizer": model.tokenizer.name, "seed": cx.seed, "pair": point.pair,
        "relevant": point.relevant, "distractor": point.distractor, "index": point.index,
        "position": lo.position, "location": lo.location, "order_seed": lo.order_seed,
        "n_relevant": lo.n_relevant, "n_distractors": lo.n_distractors,
        "extra": enc.filler[1] - enc.filler[0], "filler": point.filler,
        "method": point.method, "series": point.series, "x": point.x, "masks": int(masks),
        "prompt_tokens": len(enc.tokens), "answer": prompt.letter,
    }


def _pad_right(encs, length, pad_id):
    tokens = np.full((len(encs), length), pad_id, np.int32)
    seg = np.zeros((len(encs), length), np.int32)
    for i, e in enumerate(encs):
        tokens[i, :len(e.tokens)] = e.tokens
        seg[i, :len(e.tokens)] = 1
    return tokens, seg


def _bucket(n: int, multiple: int, max_length: int) -> int:
    return max(n, min(-(-n // max(multiple, 1)) * max(multiple, 1), max_length))


class Runner:
    """Jitted scorers per method, built once and reused across batches."""

    def __init__(self, model: Model, cx, mesh=None, rules=None):
        self.model, self.cx, self.mesh, self.rules = model, cx, mesh, rules
        self.spec = scoring.ScoreSpec(tasks.letter_ids(model.tokenizer), int(model.mask_id),
                                      model.keep_mask, model.causal)
        self.shardings = None
        if mesh is not None:
            from types import SimpleNamespace

            from mdlm_jax.sample import param_shardings_for

            like = SimpleNamespace(model=model.model_cfg, mesh=SimpleNamespace(rules=rules))
            self.shardings = param_shardings_for(model.params, like, mesh)
        self._fns = {}

    def _fn(self, method):
        if method not in self._fns:
            fn = scoring.score if method == "score" else scoring.attribution
            self._fns[method] = scoring.make_fn(fn, self.model.apply, self.spec, mesh=self.mesh,
                                                param_shardings=self.shardings,
                                                rules=self.rules)
        return self._fns[method]

    def run(self, method, items):
        """``items``: [(point, prompt, enc, masks)] -> per item dict of results."""
        m, tok = self.model, self.model.tokenizer
        encs = [it[2] for it in items]
        longest = max(len(e.tokens) for e in encs)
        length = _bucket(longest, self.cx.length_multiple, m.model_cfg.max_length)
        slot = np.asarray([e.slot for e in encs], np.int32)
        if method in ("score", "attribution"):
            tokens, seg = _pad_right(encs, length, tok.eos_id)
            out = jax.device_get(self._fn(method)(m.params, tokens, seg, slot))
            return [{k: v[i] for k, v in out.items()} for i in range(len(items))]
        return self._decode(method, items, length)

    def _decode(self, method, items, length):
        from mdlm_jax.diffusion import sampler

        m = self.model
        encs = [it[2] for it in items]
        region = {len(e.tokens) - e.slot for e in encs}
        if len(region) != 1:
            raise ValueError("a decode batch mixes mask counts")  # grouped by the caller
        gen = region.pop()
        s = sampler.Settings(strategy="confidence", steps=self.cx.decode_steps, gen_length=gen,
                             block_length=gen, temperature=0.0,
                             remasking="random" if method == "random" else "low_confidence",
                             mask_id=int(m.mask_id), max_length=length, seed=self.cx.seed,
                             mask_in_softmax=m.keep_mask)
        key = ("decode", method, gen, length)
        if key not in self._fns:
            self._fns[key] = scoring.make_decode_fn(
                m.apply, s, gen_start=length - gen, mesh=self.mesh,
                param_shardings=self.shardings, rules=self.rules)
        canvas = np.full((len(encs), length), m.tokenizer.eos_id, np.int32)
        seg = np.zeros((len(encs), length), np.int32)
        for i, e in enumerate(encs):
            canvas[i, length - len(e.tokens):] = e.tokens
            seg[i, length - len(e.tokens):] = 1
        digest = hashlib.sha1(items[0][0].key.encode()).digest()
        rng = jax.random.fold_in(jax.random.key(self.cx.seed),
                                 int.from_bytes(digest[:4], "little") & 0x7FFFFFFF)
        tokens = np.asarray(jax.device_get(self._fns[key](m.params, canvas, seg, rng)))
        return [{"pred": tokens[i, length - gen]} for i in range(len(items))]


def _result_fields(method, out, item, model: Model, spec) -> dict:
    point, prompt, enc, _ = item
    pred = int(out["pred"])
    right = spec.letter_ids[prompt.answer]
    r = {"pred_id": pred, "pred_text": model.tokenizer.decode([pred]),
         "correct": bool(pred == right)}
    if "letter_probs" in out:
        probs = [float(p) for p in out["letter_probs"]]
        choice = int(np.argmax(probs))
        r.update(choice=tasks.LETTERS[choice], choice_correct=bool(choice == prompt.answer),
                 p_correct=probs[prompt.answer],
                 **{f"p_{tasks.LETTERS[i]}": probs[i] for i in range(3)})
    if "grad_norm" in out:
        r.update(report.attribution_fields(np.asarray(out["grad_norm"])[:len(enc.tokens)],
                                           enc, prompt, np.asarray(enc.tokens) == model.mask_id
                                           if not model.causal else None))
    return r


# ---------------------------------------------------------------------------- run
def run(config, workdir: str, *, model: Model | None = None, mesh=None,
        folder_name: str | None = None) -> dict:
    """Run ``config.context.experiment``; returns the summary (see the module docstring)."""
    from tqdm import tqdm

    from mdlm_jax.parallel import mesh as mesh_lib

    cx = config.context
    exp = experiments.get(cx.experiment)
    points = exp.points(cx)
    if mesh is None:
        mesh = mesh_lib.make_mesh(config.mesh)
    if model is None:
        model = load_model(config, mesh)
    points = _points_for(exp, points, model)
    runner = Runner(model, cx, mesh, config.mesh.rules)
    folder = os.path.join(workdir, "context", folder_name or exp.name)
    path = os.path.join(folder, "results.jsonl")
    done = {r["key"] for r in _read_rows(path)}
    pending = [p for p in points if p.key not in done]
    items = []
    for p in pending:
        prompt, enc, masks = encode_point(p, model, cx)
        check_fits(p, enc, model.model_cfg.max_length, enc.filler[1] - enc.filler[0])
        items.append((p, prompt, enc, masks))
    header = {"experiment": exp.name, "model": model.name, "model_path": cx.model_path,
              "tokenizer": model.tokenizer.name, "seed": cx.seed, "dtype": cx.dtype,
              "mask_in_softmax": "keep" if model.keep_mask else "drop"}
    if cx.words != "all":  # (absent for every word: folders of earlier runs stay valid)
        header["words"] = cx.words
    if model.step is not None:  # results of a workdir belong to one checkpoint step
        header["step"] = model.step
    if jax.process_index() == 0:
        _claim_folder(folder, header)
    size = cx.batch_size
    if mesh is not None:
        dp = mesh_lib.data_parallel_size(mesh)
        size = -(-size // dp) * dp
    groups = {}
    for it in items:
        p = it[0]
        gkey = (p.method, len(it[2].tokens) - it[2].slot if p.method in ("random", "confidence")
                else 0)
        groups.setdefault(gkey, []).append(it)
    bar = tqdm(total=len(points), initial=len(points) - len(pending), unit="pt",
               disable=not cx.progress_bar or jax.process_index() != 0, file=sys.stderr,
               desc=exp.name)
    for (method, _), group in groups.items():
        group.sort(key=lambda it: len(it[2].tokens))
        for start in range(0, len(group), size):
            chunk = group[start:start + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            outs = runner.run(method, padded)[:len(chunk)]
            rows = [{**_row_base(it[0], it[1], it[2], it[3], model, cx, exp),
                     **_result_fields(method, o, it, model, runner.spec)}
                    for it, o in zip(chunk, outs)]
            if jax.process_index() == 0:
                _append(path, rows)
            bar.update(len(chunk))
    bar.close()
    keys = {p.key for p in points}
    rows = [r for r in _read_rows(path) if r["key"] in keys]
    summary = report.summarize(exp, rows, header)
    if jax.process_index() == 0:
        report.write(folder, exp, summary, rows)
        print(f"context {exp.name}: {len(rows)} points -> {folder}")
        print(report.markdown_table(exp, summary))
    return summary


def check_eval_at_end(config, tokenizer) -> None:
    """Refuse before training what ``context.eval_at_end`` could not run after it."""
    if config.model.causal:
        raise ValueError("context.eval_at_end measures mask sensitivity, which needs a masked "
                         "diffusion model; set --config.context.eval_at_end=False for AR runs")
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.context.experiment = "mask_sensitivity"
    model = Model(None, None, cfg.model, tokenizer, cfg.diffusion.mask_id, "", False)
    tasks.letter_ids(tokenizer)
    for p in experiments.get("mask_sensitivity").points(cfg.context):
        _, enc, _ = encode_point(p, model, cfg.context)
        check_fits(p, enc, cfg.model.max_length, enc.filler[1] - enc.filler[0])


def evaluate_in_training(config, workdir: str, apply, params, step: int, mesh=None) -> dict:
    """Experiment 10 at the end of a training run (``context.eval_at_end``): the
    ``mask_sensitivity`` experiment on the run's own model, in
    ``WORKDIR/context/mask_sensitivity_step{step}/``."""
    from mdlm_jax.data.tokenizers import get_tokenizer
    from mdlm_jax.diffusion.parameterization import resolve_mask_in_softmax

    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.context.experiment = "mask_sensitivity"
        cfg.context.progress_bar = False
        cfg.context.dtype = cfg.model.dtype
    name = f"{os.path.basename(os.path.normpath(workdir))}@{step}"
    model = Model(apply, params, cfg.model, get_tokenizer(cfg.data), cfg.diffusion.mask_id,
                  name, bool(cfg.model.causal), resolve_mask_in_softmax(cfg))
    return run(cfg, workdir, model=model, mesh=mesh,
               folder_name=f"mask_sensitivity_step{step}")


__all__ = ["Model", "check_eval_at_end", "config_from_hf_dir", "evaluate_in_training",
           "is_hf_dir", "is_workdir",
           "load_model", "run"]
