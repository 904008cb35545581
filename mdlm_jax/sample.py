"""The ``sample`` command: restore a model, sample, write JSON lines, print the text.

    python -m mdlm_jax.main sample --config configs/X.py --workdir DIR \\
        --config.sampler.strategy=confidence --config.sampler.steps=64

Results go to ``DIR/samples/samples_step{step}_{strategy}.jsonl`` (an existing file is
never overwritten: ``_1``, ``_2``, ... are appended), one line per sequence, with every
setting used (``extra_masks`` included) and the token ids and decoded text of the
generation region. The same seed gives the same samples whatever the mesh.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.sharding import NamedSharding

from mdlm_jax.diffusion import sample_metrics, sampler
from mdlm_jax.monitoring import unused_path


def param_shardings_for(params, config, mesh):
    """The params' own shardings when they live on ``mesh``, else the config's rules."""
    leaves = jax.tree.leaves(params)
    if all(isinstance(getattr(p, "sharding", None), NamedSharding)
           and p.sharding.mesh == mesh for p in leaves):
        return jax.tree.map(lambda p: p.sharding, params)
    from mdlm_jax import model as model_lib
    from mdlm_jax.parallel import sharding

    _, shapes, axes = model_lib.abstract(config.model)
    return sharding.param_shardings(axes, shapes, config.mesh.rules, mesh)


def settings(config, **overrides) -> sampler.Settings:
    """:class:`sampler.Settings` of ``config`` with ``overrides``; ``sampler.eos_id`` -1
    is the data's EOS id (``tokenizers.eos_id``)."""
    if config.sampler.eos_id < 0:
        from mdlm_jax.data.tokenizers import eos_id

        overrides.setdefault("eos_id", eos_id(config.data))
    return sampler.Settings.from_config(config, **overrides)


def generate_batch(apply, params, config, *, prompt_ids=(), mesh=None, debug=False,
                   **overrides):
    """Sample ``config.sampler.batch_size`` sequences; returns ``(result, settings, start)``.

    ``overrides`` replace :class:`sampler.Settings` fields (e.g. ``strategy='threshold'``).
    """
    s = settings(config, **overrides)
    canvas, gen_start = sampler.build_canvas(prompt_ids, s, config.sampler.batch_size)
    kw = dict(gen_start=gen_start, cached=getattr(apply, "cached", None), debug=debug)
    if mesh is not None:
        kw.update(mesh=mesh, param_shardings=param_shardings_for(params, config, mesh),
                  rules=config.mesh.rules)
    fn = sampler.make_sample_fn(apply, s, **kw)
    out = fn(params, canvas, jax.random.key(s.seed))
    return jax.device_get(out), s, gen_start


def records(out, s, gen_start, tokenizer, *, prompt="", prompt_ids=(), step=None) -> list:
    """One JSON-able dict per sequence: settings, ids and text of the generated region."""
    tokens = np.asarray(out["tokens"])
    region = tokens[:, gen_start:gen_start + s.gen_length]
    rows = []
    for i, ids in enumerate(region.tolist()):
        rows.append({
            "index": i, "step": step, "settings": s.record(),
            "strategy": s.strategy, "steps": s.steps, "block_length": s.block_length,
            "gen_length": s.gen_length, "extra_masks": s.extra_masks, "seed": s.seed,
            "temperature": s.temperature, "prompt": prompt,
            "prompt_ids": [int(t) for t in prompt_ids], "token_ids": ids,
            "text": tokenizer.decode(ids) if tokenizer is not None else None,
            "model_calls": int(out["model_calls"]), "calls_saved": int(out["calls_saved"]),
            "reference_model_calls": sampler.reference_model_calls(out, s),
            "unigram_entropy": sample_metrics.unigram_entropy(ids),
        })
    return rows


def write_jsonl(rows, workdir: str, step, strategy: str) -> str:
    folder = os.path.join(workdir, "samples")
    os.makedirs(folder, exist_ok=True)
    path = unused_path(folder, f"samples_step{step}_{strategy}")
    with open(path, "x") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def _prompt_ids(config, tokenizer):
    if not config.sampler.prompt:
        return []
    if tokenizer is None:
        raise ValueError("sampler.prompt needs a tokenizer (data.tokenizer)")
    return tokenizer.encode(config.sampler.prompt)


def run(config, workdir: str) -> list[dict]:
    """Restore EMA params from ``workdir``, sample, write and print; returns the rows."""
    from mdlm_jax import model_loading
    from mdlm_jax.checkpoint import integrity
    from mdlm_jax.checks import validate_config
    from mdlm_jax.data.tokenizers import get_tokenizer
    from mdlm_jax.parallel import mesh as mesh_lib

    # A config that does not describe the stored model is named first (its own checks,
    # e.g. the canvas against model.max_length, would otherwise speak of the wrong model).
    integrity.check_layout(workdir, config, integrity.PARAM_LAYOUT_KEYS, "sampling")
    validate_config(config, sampling=True)
    mesh = mesh_lib.make_mesh(config.mesh)
    apply, params, step = model_loading.load_model(workdir, config, mesh=mesh, use_ema=True)
    tokenizer = get_tokenizer(config.data)
    prompt_ids = _prompt_ids(config, tokenizer)
    out, s, gen_start = generate_batch(apply, params, config, prompt_ids=prompt_ids,
                                       mesh=mesh)
    rows = records(out, s, gen_start, tokenizer, prompt=config.sampler.prompt,
                   prompt_ids=prompt_ids, step=int(step))
    if config.sampler.eval_model_workdir:
        ar_apply, ar_params, _ = model_loading.load_ar_scorer(
            config.sampler.eval_model_workdir)
        q = sample_metrics.quality_metrics([r["token_ids"] for r in rows],
                                           eval_model=(ar_apply, ar_params))
        for r in rows:
            r["ar_perplexity_all"] = q["ar_perplexity"]
    if jax.process_index() == 0:
        path = write_jsonl(rows, workdir, step, s.strategy)
        for r in rows:
            print(f"[{s.strategy} #{r['index']} extra_masks={s.extra_masks}] {r['text']}")
        print(f"wrote {len(rows)} samples to {path}")
    return rows


def sample_all_strategies(apply, params, config, tokenizer=None, *, mesh=None) -> dict:
    """One sample per strategy (the quickstart's end-of-training look); prints the text."""
    if tokenizer is None:
        from mdlm_jax.data.tokenizers import get_tokenizer

        tokenizer = get_tokenizer(config.data)
    prompt_ids = _prompt_ids(config, tokenizer)
    out_texts = {}
    for strategy in sampler.STRATEGIES:
        cfg = config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.sampler.batch_size = 1  # padded to the data-parallel size by the sampler
        try:
            out, s, gen_start = generate_batch(apply, params, cfg, prompt_ids=prompt_ids,
                                               mesh=mesh, strategy=strategy, kv_cache="none")
        except ValueError as e:  # e.g. steps not a multiple of the number of blocks
            print(f"[sample {strategy}] skipped: {e}")
            continue
        text = records(out, s, gen_start, tokenizer)[0]["text"]
        out_texts[strategy] = text
        print(f"[sample {strategy}, {int(out['model_calls'])} model calls] "
              f"{config.sampler.prompt}{text}")
    return out_texts

