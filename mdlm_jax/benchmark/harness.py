"""The lm-evaluation-harness model ``mdlm_jax`` (needs ``pip install -e .[eval]``).

    python -m mdlm_jax.benchmark run --model mdlm_jax \\
        --model_args path=DIR,strategy=confidence,steps=256,gen_length=256,block_length=32 \\
        --tasks gsm8k --num_fewshot 5

``model_args`` names fields of ``config.sampler`` and ``config.benchmark`` (``path``,
``mc_samples``, ``cfg_scale``, ``steps``, ``gen_length``, ``block_length``, ``threshold``,
``kv_cache``, ...); an unknown name is an error naming the nearest one.

- ``loglikelihood``: MDLMs, LLaDA's Monte Carlo estimator (``diffusion.likelihood``) with
  ``mc_samples`` samples and optional guidance; causal models, the exact value;
- ``loglikelihood_rolling``: exact for causal models, the negative NELBO (a bound) for MDLMs;
- ``generate_until``: ``benchmark.generation`` (the project's samplers, stop sequences,
  EOS handling).

Every request's settings (the number of extra masks included) are kept in ``records`` and
written to ``benchmark.output_dir`` by the ``benchmark`` command (or to ``record_path``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import jax
import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from mdlm_jax import sample
from mdlm_jax.benchmark import generation, loading
from mdlm_jax.config_base import base_config, nearest_key
from mdlm_jax.diffusion import likelihood


def settings_config(config=None, **model_args):
    """``config`` (default: the base config) with ``model_args`` set on its ``sampler`` /
    ``benchmark`` fields (strings from lm-eval's command line are converted)."""
    config = (base_config() if config is None else config).copy_and_resolve_references()
    for key, value in model_args.items():
        group = next((g for g in ("benchmark", "sampler") if key in config[g]), None)
        if group is None:
            near = nearest_key(base_config(), f"benchmark.{key}")
            raise ValueError(f"model_args {key!r} is not a benchmark or sampler setting; did "
                             f"you mean {near.split('.', 1)[1]!r}?")
        config[group][key] = _convert(value, config[group][key], key)
    return config


def _convert(value, like, key):
    if not isinstance(value, str) or isinstance(like, str):
        return type(like)(value) if like is not None and not isinstance(like, tuple) else value
    if isinstance(like, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"model_args {key}={value!r} must be true or false")
        return value.lower() in ("true", "1")
    return type(like)(value)


@register_model("mdlm_jax")
class MDLMJax(LM):
    """lm-eval ``LM`` over a workdir or HF directory (``path``), MDLM or AR."""

    def __init__(self, path: str = "", *, config=None, loaded=None, mesh=None, **model_args):
        super().__init__()
        for unused in ("device", "max_batch_size", "trust_remote_code"):  # lm-eval's extras
            model_args.pop(unused, None)
        if "batch_size" in model_args and model_args["batch_size"] in ("auto", None):
            model_args.pop("batch_size")
        if path:
            model_args["path"] = path
        self.record_path = model_args.pop("record_path", "")
        bench = settings_config(config, **model_args)
        if loaded is None:
            from mdlm_jax.parallel import mesh as mesh_lib

            mesh = mesh_lib.make_mesh(bench.mesh) if mesh is None else mesh
            loaded = loading.load(bench.benchmark.path, mesh=mesh, dtype=bench.benchmark.dtype)
        cfg = loaded.config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.sampler, cfg.benchmark = bench.sampler, bench.benchmark
        self.loaded, self.config, self.mesh = loaded, cfg, mesh
        self.b, self.tok = cfg.benchmark, loaded.tokenizer
        self.causal = bool(cfg.model.causal)
        if self.causal and self.b.cfg_scale:
            raise ValueError("benchmark.cfg_scale applies to diffusion models; use 0 for a "
                             "causal (AR) model")
        self.sampling = sample.settings(cfg)
        self.records: list[dict] = []
        self._mc_fn = self._rolling_fn = self._ar_fn = None
        self._rng = jax.random.key(self.b.seed)
        self._calls = 0

    # ------------------------------------------------------------------ helpers
    @property
    def tokenizer_name(self) -> str:
        return f"{self.tok.name}:{self.b.chat_template or 'plain'}"

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        """The ``llada`` chat format (LLaDA / Llama-3 headers), or plain text."""
        from mdlm_jax.data import prompt_answer

        if self.b.chat_template not in prompt_answer.TEMPLATES:
            raise ValueError(f"benchmark.chat_template={self.b.chat_template!r} is unknown; "
                             f"use one of {prompt_answer.TEMPLATES}")
        if not self.b.chat_template:
            return "\n\n".join(m["content"] for m in chat_history)
        text = prompt_answer.LLADA_BOS + "".join(
            prompt_answer._llada_turn(m["role"], m["content"]) for m in chat_history)
        if add_generation_prompt:
            text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
        return text

    def _on_mesh(self):
        """The mesh and logical rules (activations sharded over the data axes), if any."""
        import contextlib

        if self.mesh is None:
            return contextlib.nullcontext()
        from mdlm_jax.parallel import sharding

        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(sharding.logical_rules(self.config.mesh.rules))
        return stack

    def _key(self):
        self._calls += 1
        return jax.random.fold_in(self._rng, self._calls)

    def encode_pair(self, context: str, continuation: str):
        """``(context_ids, continuation_ids)``: trailing spaces of the context move to the
        continuation; the continuation is what the whole text adds to the context."""
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = self.tok.encode(context + continuation)
        ctx = self.tok.encode(context)
        if whole[:len(ctx)] != ctx:  # a merge across the boundary: encode separately
            return ctx, self.tok.encode(continuation)
        return ctx, whole[len(ctx):]

    def _record(self, kind, request, **fields):
        row = {"request_type": kind, "task": request.task_name, "doc_id": request.doc_id,
               **fields}
        self.records.append(row)
        if self.record_path and jax.process_index() == 0:
            with open(self.record_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    # --------------------------------------------------------------- requests
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        pairs = []
        for req in requests:
            ctx, cont = self.encode_pair(*req.args)
            pairs.append((ctx or [int(self.tok.eos_id)], cont))
        if self.causal:
            results = self._ar_loglikelihoods(pairs)
            extras = [{"estimator": "exact"}] * len(pairs)
        else:
            results, extras = self._mdlm_loglikelihoods(pairs)
        for req, (ctx, cont), (ll, greedy), extra in zip(requests, pairs, results, extras):
            self._record("loglikelihood", req, prompt_tokens=len(ctx), answer_tokens=len(cont),
                         loglikelihood=ll, is_greedy=greedy, extra_masks=0, **extra)
        return results

    def _ar_loglikelihoods(self, pairs):
        """Exact values, ``benchmark.batch_size`` requests per call (right padding is
        invisible to a causal model); contexts too long keep their end."""
        max_len, bs = self.config.model.max_length, self.b.batch_size
        if self._ar_fn is None:
            self._ar_fn = jax.jit(functools.partial(likelihood.ar_log_probs, self.loaded.apply))
        out = []
        for i in range(0, len(pairs), bs):
            chunk = [((c + a)[-max_len:], len(a)) for c, a in pairs[i:i + bs]]
            length = likelihood.bucket_length(max(len(ids) for ids, _ in chunk), max_len)
            tokens = np.zeros((bs, length), np.int32)
            q, a = np.ones((bs,), np.int32), np.zeros((bs,), np.int32)
            for r, (ids, n) in enumerate(chunk):
                tokens[r, :len(ids)], q[r], a[r] = ids, len(ids) - n, n
            with self._on_mesh():
                ll, greedy = jax.device_get(self._ar_fn(self.loaded.params, tokens, q, a))
            out += [(float(ll[r]), bool(greedy[r])) for r in range(len(chunk))]
        return out

    def _mdlm_loglikelihoods(self, pairs):
        """LLaDA's estimate per request; several requests share a call when the samples of
        one fill less than ``benchmark.batch_size`` rows."""
        b, cfg = self.b, self.config
        rows = min(b.mc_batch_size, b.mc_samples)
        if self._mc_fn is None:
            self._mc_fn = likelihood.make_mc_batch_fn(
                self.loaded.apply, mask_id=cfg.diffusion.mask_id, num_samples=b.mc_samples,
                batch_size=rows, cfg_scale=b.cfg_scale,
                time_conditioning=self.sampling.time_conditioning)
        max_len = cfg.model.max_length
        pairs = [(c[-(max_len - len(a)):] if len(a) < max_len else c, a) for c, a in pairs]
        keys = [self._key() for _ in pairs]
        with self._on_mesh():
            got = likelihood.mdlm_loglikelihoods(self._mc_fn, self.loaded.params, pairs, keys,
                                                 max_length=max_len,
                                                 requests_per_call=max(1, b.batch_size // rows))
        results, extras = [], []
        for (ctx, cont), (ll, terms) in zip(pairs, got):
            greedy = self._greedy(ctx, cont) if b.greedy_check else False
            results.append((ll, greedy))
            extras.append({"estimator": "llada_mc", "mc_samples": b.mc_samples,
                           "cfg_scale": b.cfg_scale,
                           "mc_standard_error": float(terms.std() / math.sqrt(len(terms))),
                           "greedy_checked": bool(b.greedy_check)})
        return results, extras

    def _greedy(self, ctx, cont) -> bool:
        """LLaDA's check: unmasking one most-confident token per step from the prompt alone
        reproduces the continuation (the confidence sampler, one step per token, T = 0)."""
        s = dataclasses.replace(
            self.sampling, strategy="confidence", steps=len(cont), gen_length=len(cont),
            block_length=len(cont), temperature=0.0, extra_masks=0, kv_cache="none",
            remasking="low_confidence", top_k=0, top_p=1.0)
        got = generation.generate_until(self.loaded, [ctx], [[]], s, batch_size=1,
                                        cfg_scale=self.b.cfg_scale, stop_at_eos=False)[0]
        return got.token_ids == list(cont)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        cfg, out = self.config, []
        if self._rolling_fn is None:
            with cfg.unlocked():
                cfg.eval.mc_samples = self.b.mc_samples
            self._rolling_fn = likelihood.make_rolling_fn(self.loaded.apply, cfg)
        for req in requests:
            (text,) = req.args
            ids = self.tok.encode(text)
            with self._on_mesh():
                ll, n = likelihood.rolling_loglikelihood(
                    self._rolling_fn, self.loaded.params, ids, self._key(),
                    window=cfg.model.max_length, causal=self.causal,
                    prefix_id=int(self.tok.eos_id), batch_size=self.b.rolling_batch_size)
            self._record("loglikelihood_rolling", req, tokens=n, loglikelihood=ll,
                         estimator="exact" if self.causal else "negative_nelbo_bound",
                         mc_samples=0 if self.causal else self.b.mc_samples, extra_masks=0,
                         window=cfg.model.max_length)
            out.append(ll)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False):
        prompts, untils = [], []
        for req in requests:
            context, kwargs = req.args
            until = kwargs.get("until", [])
            untils.append([until] if isinstance(until, str) else list(until or []))
            ids = self.tok.encode(context) or [int(self.tok.eos_id)]
            room = self.sampling.max_length - self.sampling.gen_length - self.sampling.extra_masks
            prompts.append(ids[-room:])  # keep the end of an over-long few-shot prompt
        gens = generation.generate_until(
            self.loaded, prompts, untils, self.sampling, batch_size=self.b.batch_size,
            cfg_scale=self.b.cfg_scale, stop_at_eos=self.b.stop_at_eos, mesh=self.mesh,
            seed=self.b.seed)
        for req, g, until in zip(requests, gens, untils):
            self._record("generate_until", req, text=g.text, generated_tokens=len(g.token_ids),
                         stopped_by=g.stopped_by, until=until, model_calls=g.model_calls,
                         extra_masks=g.settings["extra_masks"], settings=g.settings)
        return [g.text for g in gens]
