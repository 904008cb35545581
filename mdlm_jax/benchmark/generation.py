"""Batched, sharded ``generate_until`` through ``diffusion.sampler``.

Requests are sorted by prompt length and decoded ``batch_size`` at a time on one canvas per
batch: ``[left padding | prompt | gen_length masks | extra_masks]``. The left padding is a
separate attention segment (it changes nothing for the real tokens) and is never decoded.
The block KV caches (the model's cached forward, ``apply.cached``) take no segment ids,
so with ``sampler.kv_cache`` != none a batch holds prompts of one length only (no padding).

After decoding, the text is cut at the first EOS token (the tokenizer's EOS and the other
end-of-text tokens of ``tokenizers.EOS_NAMES`` in its vocabulary) and then at the first
stop sequence. Each result records every decoding setting, the number of extra masks
included, the number of model calls and why the text stopped.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mdlm_jax.diffusion import guidance, sampler
from mdlm_jax.diffusion.categorical import filter_logits, sample_x0
from mdlm_jax.diffusion.likelihood import bucket_length


@dataclasses.dataclass
class Generated:
    text: str
    token_ids: list
    stopped_by: str  # "eos" | "stop:<sequence>" | "length"
    model_calls: int
    settings: dict


def end_token_ids(tokenizer) -> list[int]:
    """The tokenizer's EOS and every other end-of-text token of its vocabulary."""
    from mdlm_jax.data.tokenizers import EOS_NAMES

    ids = {int(tokenizer.eos_id)}
    inner = getattr(tokenizer, "_tok", None)
    if inner is not None and hasattr(inner, "token_to_id"):
        for name in EOS_NAMES:
            i = inner.token_to_id(name)
            if i is not None:
                ids.add(int(i))
    return sorted(ids)


def cut(ids, tokenizer, until, *, end_ids, stop_at_eos: bool):
    """``(text, kept_ids, stopped_by)``: ids up to the first end token, text up to the
    first stop sequence (the earliest in the text wins)."""
    ids = [int(i) for i in ids]
    stopped = "length"
    if stop_at_eos:
        first = next((j for j, i in enumerate(ids) if i in end_ids), None)
        if first is not None:
            ids, stopped = ids[:first], "eos"
    text = tokenizer.decode(ids)
    hits = [(text.find(s), s) for s in until if s and s in text]
    if hits:
        at, seq = min(hits)
        text, stopped = text[:at], f"stop:{seq}"
    return text, ids, stopped


def ar_generate(apply, params, canvas_BxL, rng, s: sampler.Settings, *, gen_start: int):
    """Next-token decoding of a causal model over the same canvas (``gen_length`` calls,
    no cache): position ``gen_start + i`` is drawn from the logits at ``gen_start + i - 1``
    with the sampler's temperature / top-k / top-p."""
    def body(i, x):
        logits = jax.lax.dynamic_index_in_dim(apply(params, x, None), gen_start + i - 1,
                                              axis=1, keepdims=True)
        nxt = sample_x0(filter_logits(logits, s), jax.random.fold_in(rng, i), s)[:, 0]
        return jax.lax.dynamic_update_index_in_dim(x, nxt, gen_start + i, axis=1)

    x = jax.lax.fori_loop(0, s.gen_length, body, canvas_BxL.astype(jnp.int32))
    step = jnp.arange(x.shape[1])[None, :] - gen_start
    region = (step >= 0) & (step < s.gen_length)
    return {"tokens": x, "commit_step": jnp.broadcast_to(jnp.where(region, step, -1), x.shape),
            "model_calls": jnp.asarray(s.gen_length, jnp.int32),
            "calls_saved": jnp.zeros((), jnp.int32),
            "first_call_blocks": jnp.zeros((), jnp.int32)}  # the sampler's result layout


def make_generate_fn(apply, s: sampler.Settings, *, gen_start: int, cfg_scale: float,
                     causal: bool, mesh=None, param_shardings=None, rules=()):
    """Jitted ``fn(params, canvas_BxL, pad_B, rng) -> sampler result``; ``causal``: next-token
    decoding (:func:`ar_generate`) instead of the diffusion sampler."""
    if cfg_scale and s.kv_cache != "none":
        raise ValueError("classifier-free guidance needs sampler.kv_cache=none (the KV caches "
                         "run the model without the unconditional pass)")
    cached = getattr(apply, "cached", None)

    def fn(params, canvas, pad_B, rng):
        length = canvas.shape[1]
        seg = jnp.where(jnp.arange(length)[None, :] < pad_B[:, None], 1, 0).astype(jnp.int32)
        model = guidance.guided(apply, scale=cfg_scale, mask_id=s.mask_id,
                                prompt_end=gen_start, prompt_start=pad_B)

        def padded(params, tokens, t=None, *, segment_ids_BxL=None, embeds_BxLxD=None):
            return model(params, tokens, t, segment_ids_BxL=seg)

        if causal:
            return ar_generate(padded, params, canvas, rng, s, gen_start=gen_start)
        return sampler.generate(padded, params, canvas, rng, s, gen_start=gen_start,
                                cached=cached)

    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    if mesh is None:
        return jax.jit(fn)
    batch = mesh_lib.batch_sharding(mesh)
    return sharding.jit_on_mesh(
        fn, mesh, in_shardings=(param_shardings, batch, batch, mesh_lib.replicated(mesh)),
        out_shardings=sampler.result_shardings(mesh), rules=rules)


def batches(prompt_lengths, batch_size: int, *, same_length: bool):
    """Index lists: longest prompts first; ``same_length`` keeps one length per batch."""
    order = sorted(range(len(prompt_lengths)), key=lambda i: -prompt_lengths[i])
    out, cur = [], []
    for i in order:
        if cur and (len(cur) == batch_size
                    or (same_length and prompt_lengths[i] != prompt_lengths[cur[0]])):
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


def generate_until(loaded, prompts_ids, untils, s: sampler.Settings, *, batch_size: int,
                   cfg_scale: float = 0.0, stop_at_eos: bool = True, mesh=None,
                   seed: int = 0, progress=None) -> list[Generated]:
    """Decode every prompt with settings ``s``; one :class:`Generated` per prompt, in order."""
    from mdlm_jax.sample import param_shardings_for

    cfg, tok = loaded.config, loaded.tokenizer
    if mesh is not None:
        from mdlm_jax.parallel import mesh as mesh_lib

        mesh_lib.check_batch(batch_size, mesh, "benchmark.batch_size")
    end_ids = end_token_ids(tok)
    shard_kw = {}
    if mesh is not None:
        shard_kw = dict(mesh=mesh, param_shardings=param_shardings_for(loaded.params, cfg, mesh),
                        rules=cfg.mesh.rules)
    lengths = [len(p) for p in prompts_ids]
    fns, results = {}, [None] * len(prompts_ids)
    tail = s.gen_length + s.extra_masks
    for n_batch, idx in enumerate(batches(lengths, batch_size,
                                          same_length=s.kv_cache != "none")):
        longest = lengths[idx[0]]
        s.validate(longest)
        start = longest if s.kv_cache != "none" else max(
            longest, min(bucket_length(longest, s.max_length - tail), s.max_length - tail))
        canvas = np.full((batch_size, start + tail), s.mask_id, np.int32)
        pad = np.zeros((batch_size,), np.int32)
        for r in range(batch_size):
            ids = prompts_ids[idx[min(r, len(idx) - 1)]]  # short batches repeat a row
            pad[r] = start - len(ids)
            canvas[r, :pad[r]] = tok.eos_id
            canvas[r, pad[r]:start] = ids
        if start not in fns:
            fns[start] = make_generate_fn(loaded.apply, s, gen_start=start, cfg_scale=cfg_scale,
                                          causal=cfg.model.causal, **shard_kw)
        out = jax.device_get(fns[start](loaded.params, canvas, pad,
                                        jax.random.fold_in(jax.random.key(seed), n_batch)))
        region = np.asarray(out["tokens"])[:, start:start + s.gen_length]
        for r, i in enumerate(idx):
            text, ids, why = cut(region[r], tok, untils[i], end_ids=end_ids,
                                 stop_at_eos=stop_at_eos)
            results[i] = Generated(text, ids, why, int(out["model_calls"]),
                                   dict(s.record(), cfg_scale=cfg_scale,
                                        stop_at_eos=stop_at_eos, batch_size=batch_size,
                                        prompt_tokens=lengths[i]))
        if progress is not None:
            progress(len(idx))
    return results
