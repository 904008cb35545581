"""Validation NELBO with K Monte Carlo time samples per sequence.

Reported as nats/token, bits/token, the perplexity upper bound exp(nats/token) and bits per
character: the same total nats over the characters the scored tokens spell (each row's
scored ids decoded together, EOS counted as one character), so models on different
tokenizers compare; on byte tokens of ASCII text it equals bits/token.
A single sample of t per sequence is a known source of irreproducible perplexities, so
``eval.mc_samples`` samples are averaged (antithetic over the batch within each).
Causal models (``ar_nll`` without a diffusion term) get their exact NLL instead.
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mdlm_jax.checks import check_batch_tokens, is_diffusion, validate_config
from mdlm_jax.data import pipeline
from mdlm_jax.diffusion import forward, losses, schedules
from mdlm_jax.monitoring import require_finite, unused_path
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding


def _nelbo_sums(apply, params, tokens, valid, maskable, rng, *, config):
    dcfg = config.diffusion
    schedule = schedules.from_config(dcfg)
    b = tokens.shape[0]

    def one(carry, key):
        k_t, k_m = jax.random.split(key)
        t = forward.sample_times(k_t, b, eps=dcfg.time_eps, antithetic=dcfg.antithetic)
        xt, _ = forward.mask_tokens(k_m, tokens, schedule.mask_prob(t), dcfg.mask_id, maskable)
        logits = apply(params, xt, t, segment_ids_BxL=segments)
        return carry + losses.masked_nelbo(logits, tokens, xt, t, schedule, dcfg.mask_id), None

    segments = losses.padding_segments(valid, config)
    keys = jax.random.split(rng, config.eval.mc_samples)
    total, _ = jax.lax.scan(one, jnp.zeros((b,), jnp.float32), keys)
    return total / config.eval.mc_samples, jnp.sum(maskable, axis=-1)


def _ar_sums(apply, params, tokens, valid, maskable, rng, *, config):
    del rng, maskable
    logits = apply(params, tokens, None, segment_ids_BxL=losses.padding_segments(valid, config))
    return losses.next_token_sums(losses.ar_nll_per_token(logits, tokens), valid)


def scored_characters(tokenizer, tokens_BxL, scored_BxL) -> int:
    """Characters spelt by the scored tokens: each row's scored ids decoded together (a
    character split over several byte tokens counts once), each EOS as one character."""
    n = 0
    for row, keep in zip(np.asarray(tokens_BxL), np.asarray(scored_BxL, bool)):
        ids = row[keep]
        eos = ids == tokenizer.eos_id
        n += int(np.sum(eos)) + len(tokenizer.decode(ids[~eos]))
    return n


def _scored_BxL(tokens, valid, maskable, config):
    """``(tokens, scored)`` of the positions the loss sums over: the maskable ones for a
    diffusion model, the next-token targets (both ends valid) for a causal one."""
    if is_diffusion(config):
        return tokens, maskable
    return tokens[:, 1:], valid[:, 1:] & valid[:, :-1]


def _pad_rows(x, rows: int):
    """``x`` with zero rows appended up to ``rows`` (False for masks: nothing scored)."""
    pad = rows - x.shape[0]
    return x if pad <= 0 else np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])


def evaluate(apply, params, config, mesh, *, num_batches: int | None = None) -> dict:
    ecfg = config.eval
    # padded to the data-parallel size with rows that score nothing (valid all False)
    local_rows = mesh_lib.padded_batch_size(ecfg.batch_size, mesh) // jax.process_count()
    num_batches = ecfg.num_batches if num_batches is None else num_batches
    fn = _nelbo_sums if is_diffusion(config) else _ar_sums
    batch_sh = mesh_lib.batch_sharding(mesh)
    with jax.set_mesh(mesh), sharding.logical_rules(config.mesh.rules):
        step = jax.jit(functools.partial(fn, apply, config=config),
                       in_shardings=(None, batch_sh, batch_sh, batch_sh, None),
                       out_shardings=NamedSharding(mesh, PartitionSpec()))
        it = pipeline.make_eval_iterator(config.data, global_batch_size=ecfg.batch_size)
        from mdlm_jax.data.tokenizers import get_tokenizer

        tokenizer = get_tokenizer(config.data)
        nats, tokens, seqs, chars = 0.0, 0, 0, 0
        key = jax.random.key(config.seed + 1)
        for i, batch in enumerate(it):
            if num_batches and i >= num_batches:
                break
            if config.train.check_token_ids:
                check_batch_tokens(batch["tokens"], config, batch.get("valid"))
            valid, maskable = losses.batch_masks(batch)
            chars += scored_characters(tokenizer, *_scored_BxL(
                np.asarray(batch["tokens"]), np.asarray(valid), np.asarray(maskable), config))
            tok, val, msk = (jax.make_array_from_process_local_data(
                batch_sh, _pad_rows(np.asarray(x), local_rows))
                for x in (batch["tokens"], valid, maskable))
            per_seq, count = step(params, tok, val, msk, jax.random.fold_in(key, i))
            per_seq, count = jax.device_get((per_seq, count))
            nats += float(np.sum(per_seq, dtype=np.float64))
            tokens += int(np.sum(count))
            seqs += int(np.sum(np.asarray(count) > 0))
    if tokens == 0:
        raise ValueError(f"the {config.data.eval_split!r} split gave no tokens to evaluate")
    npt = nats / tokens
    result = {"nats_per_token": npt, "bits_per_token": npt / math.log(2),
              "perplexity": math.exp(min(npt, 700.0)), "tokens": tokens, "sequences": seqs,
              "bits_per_character": nats / max(chars, 1) / math.log(2), "characters": chars,
              "mc_samples": ecfg.mc_samples if is_diffusion(config) else 0}
    return require_finite(result, "the evaluation", "The parameters or the data hold values "
                          "the model cannot score: check the workdir's training (its loss) "
                          "and that data.tokenizer is the one the model was trained with")


def format_result(result: dict, config) -> str:
    bound = "<= " if is_diffusion(config) else ""
    return (f"eval [{config.data.eval_split}]: {result['nats_per_token']:.4f} nats/token, "
            f"{result['bits_per_token']:.4f} bits/token, perplexity {bound}"
            f"{result['perplexity']:.3f} over {result['tokens']:,} tokens; "
            f"{result['bits_per_character']:.4f} bits/character over "
            f"{result['characters']:,} characters "
            f"({result['mc_samples']} MC time samples per sequence)")


def run(config, workdir: str) -> dict:
    """The ``eval`` command: the latest checkpoint of ``workdir`` (EMA when present)."""
    from mdlm_jax import model_loading
    from mdlm_jax.checkpoint import integrity

    # A config that does not describe the stored model is named before its own checks.
    integrity.check_layout(workdir, config, integrity.PARAM_LAYOUT_KEYS, "evaluating")
    validate_config(config)
    mesh_lib.maybe_initialize_distributed()
    mesh = mesh_lib.make_mesh(config.mesh)
    apply, params, step = model_loading.load_model(workdir, config, mesh=mesh,
                                                   use_ema=config.eval.use_ema)
    result = evaluate(apply, params, config, mesh)
    result["step"] = step
    print(format_result(result, config))
    if jax.process_index() == 0:
        path = unused_path(workdir, f"eval_step{step}", ".json")
        with open(path, "x") as f:
            json.dump(result, f, indent=2)
    return result
