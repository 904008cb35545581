"""Sampling from masked diffusion models: one jitted loop over a fixed-shape canvas.

Canvas layout (length ``L``, fixed for the whole run)::

    [ fixed context (prompt, or infill tokens) | generation region | extra masks ]
      positions < gen_start                     gen_length           extra_masks

Only masked positions inside the generation region are decoded; tokens that are not
the mask id are never changed (infilling: put fixed tokens anywhere in the region).
The ``extra_masks`` masks after the region (PAPER.md RQ3: ``Answer:[`` followed by k
masks, only the first scored) are present as context for every model call but never
decoded and never returned as generated tokens; every result records their number.

Strategies (``sampler.strategy``):

- ``ancestral``: MDLM / MD4 steps on a time grid; a masked token is revealed with
  probability ``(alpha_s - alpha_t) / (1 - alpha_t)``; MDLM's cache reuses the previous
  logits when no token changed and the model is not time-conditioned.
- ``confidence``: LLaDA: semi-autoregressive blocks, a scheduled number of tokens
  committed per step (``get_num_transfer_tokens``), by confidence or at random. A
  time-conditioned model is told the schedule's time for the generation region's current
  mask rate (here and in ``threshold``).
- ``threshold``: Fast-dLLM: every masked token of the block with confidence >= tau,
  at least the most confident one per step.

Fast-dLLM's block-wise KV cache (``sampler.kv_cache``, with ``confidence`` / ``threshold``)
uses the model's cached forward (``cached``: ``prefill`` and ``window`` callables, e.g.
``apply.cached``). At the start of each block ``prefill`` runs the whole canvas and keeps
every layer's keys and values; within the block only a window is recomputed against them:

- ``prefix``: the window is ``[block_start, L)`` (block and suffix recomputed, prefix
  cached);
- ``dual``: the window is the current block only (prefix and suffix cached).

Noise, top-k / top-p and confidence scores live in ``diffusion.categorical``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mdlm_jax.config_base import base_config
from mdlm_jax.diffusion import parameterization, schedules
from mdlm_jax.diffusion.categorical import confidence, filter_logits, sample_x0

STRATEGIES = ("ancestral", "confidence", "threshold")
KV_CACHES = ("none", "prefix", "dual")
TIME_GRIDS = ("uniform", "cosine")
REMASKING = ("low_confidence", "random")


# The sampler's defaults are declared once, in ``config_base`` (the ``sampler`` group).
_DEFAULTS = base_config().sampler


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the loop needs, resolved from ``config.sampler`` (+ model/diffusion)."""

    strategy: str = _DEFAULTS.strategy
    steps: int = _DEFAULTS.steps
    gen_length: int = _DEFAULTS.gen_length
    block_length: int = _DEFAULTS.block_length
    extra_masks: int = _DEFAULTS.extra_masks
    temperature: float = _DEFAULTS.temperature
    top_k: int = _DEFAULTS.top_k
    top_p: float = _DEFAULTS.top_p
    time_grid: str = _DEFAULTS.time_grid
    use_cache: bool = _DEFAULTS.use_cache
    remasking: str = _DEFAULTS.remasking
    threshold: float = _DEFAULTS.threshold
    kv_cache: str = _DEFAULTS.kv_cache
    mask_in_softmax: bool = False  # True: keep the mask token (published LLaDA / Fast-dLLM)
    suppress_eos_confidence: bool = _DEFAULTS.suppress_eos_confidence
    eos_id: int = _DEFAULTS.eos_id
    mask_id: int = 0
    time_conditioning: bool = False
    max_length: int = 1024
    vocab_size: int = 0  # 0: prompt ids unchecked
    schedule: schedules.Schedule = schedules.LogLinear()
    seed: int = _DEFAULTS.seed

    @classmethod
    def from_config(cls, config, **overrides) -> Settings:
        s = config.sampler
        kw = dict(
            strategy=s.strategy, steps=s.steps, gen_length=s.gen_length,
            block_length=s.block_length, extra_masks=s.extra_masks,
            temperature=float(s.temperature), top_k=s.top_k, top_p=float(s.top_p),
            time_grid=s.time_grid, use_cache=s.use_cache, remasking=s.remasking,
            threshold=float(s.threshold), kv_cache=s.kv_cache,
            mask_in_softmax=parameterization.resolve_mask_in_softmax(config),
            suppress_eos_confidence=s.suppress_eos_confidence, eos_id=s.eos_id,
            mask_id=config.diffusion.mask_id,
            time_conditioning=(config.model.family == "dit"
                               and config.model.time_conditioning),
            max_length=config.model.max_length, vocab_size=config.model.vocab_size,
            schedule=schedules.from_config(config.diffusion), seed=s.seed)
        kw.update(overrides)
        return cls(**kw)

    @property
    def num_blocks(self) -> int:
        return 1 if self.strategy == "ancestral" else self.gen_length // self.block_length

    def validate(self, prompt_length: int = 0, *, layout: bool = True) -> Settings:
        """Raise a one-line ``ValueError`` naming the key and the fix. ``layout=False``
        checks names and ranges only, not how the canvas fits the model (a run that
        never samples)."""

        def bad(msg):
            raise ValueError(msg)

        if self.strategy not in STRATEGIES:
            bad(f"sampler.strategy={self.strategy!r} is unknown; use one of {STRATEGIES}")
        if self.steps < 1:
            bad(f"sampler.steps={self.steps} must be >= 1; set --config.sampler.steps=64")
        if self.gen_length < 1:
            bad(f"sampler.gen_length={self.gen_length} must be >= 1")
        if self.block_length < 1:
            bad(f"sampler.block_length={self.block_length} must be >= 1")
        if self.extra_masks < 0:
            bad(f"sampler.extra_masks={self.extra_masks} must be >= 0")
        if layout:
            self._validate_layout(prompt_length)
        return self._validate_values()

    def _validate_layout(self, prompt_length: int) -> None:
        def bad(msg):
            raise ValueError(msg)

        if self.strategy != "ancestral":
            if self.block_length < 1 or self.gen_length % self.block_length:
                bad(f"sampler.block_length={self.block_length} does not divide "
                    f"sampler.gen_length={self.gen_length}; use a divisor of it")
            if self.strategy == "confidence" and self.steps % self.num_blocks:
                bad(f"sampler.steps={self.steps} is not a multiple of the number of blocks "
                    f"{self.num_blocks} (gen_length / block_length); use a multiple")
        if prompt_length >= self.max_length:
            bad(f"the prompt ({prompt_length} tokens) is longer than the canvas "
                f"(model.max_length={self.max_length}); shorten sampler.prompt")
        if prompt_length + self.gen_length > self.max_length:
            bad(f"prompt ({prompt_length}) + sampler.gen_length={self.gen_length} exceeds "
                f"model.max_length={self.max_length}; lower sampler.gen_length")
        if prompt_length + self.gen_length + self.extra_masks > self.max_length:
            bad(f"sampler.extra_masks={self.extra_masks} pushes the canvas "
                f"({prompt_length}+{self.gen_length}+{self.extra_masks}) past "
                f"model.max_length={self.max_length}; lower sampler.extra_masks")

    def _validate_values(self) -> Settings:
        def bad(msg):
            raise ValueError(msg)

        if not 0.0 < self.top_p <= 1.0:
            bad(f"sampler.top_p={self.top_p} must be in (0, 1]; use 1.0 to disable")
        if self.top_k < 0:
            bad(f"sampler.top_k={self.top_k} must be >= 0 (0 disables it)")
        if self.temperature < 0:
            bad(f"sampler.temperature={self.temperature} must be >= 0 (0: greedy)")
        if self.time_grid not in TIME_GRIDS:
            bad(f"sampler.time_grid={self.time_grid!r} is unknown; use one of {TIME_GRIDS}")
        if self.remasking not in REMASKING:
            bad(f"sampler.remasking={self.remasking!r} is unknown; use one of {REMASKING}")
        if self.strategy == "threshold" and not 0.0 < self.threshold <= 1.0:
            bad(f"sampler.threshold={self.threshold} must be in (0, 1]")
        if self.kv_cache not in KV_CACHES:
            bad(f"sampler.kv_cache={self.kv_cache!r} is unknown; use one of {KV_CACHES}")
        if self.kv_cache != "none" and self.strategy == "ancestral":
            bad("sampler.kv_cache needs sampler.strategy=confidence or threshold; "
                "set --config.sampler.kv_cache=none for ancestral")
        return self

    def record(self) -> dict:
        """The settings as JSON-able values (for result files)."""
        out = dataclasses.asdict(self)
        out["schedule"] = self.schedule.name
        return out


# ------------------------------------------------------------------------- canvas
def build_canvas(prompt_ids, settings: Settings, batch_size: int):
    """``(canvas_BxL int32, gen_start)``: prompt, ``gen_length`` masks, extra masks."""
    prompt = [int(i) for i in prompt_ids]
    settings.validate(len(prompt))
    if settings.vocab_size and any(not 0 <= i < settings.vocab_size for i in prompt):
        raise ValueError(f"sampler.prompt has token ids outside [0, model.vocab_size="
                         f"{settings.vocab_size}); use the model's tokenizer (data.tokenizer)")
    row = prompt + [settings.mask_id] * (settings.gen_length + settings.extra_masks)
    canvas = jnp.tile(jnp.asarray(row, jnp.int32)[None], (batch_size, 1))
    return canvas, len(prompt)


# ----------------------------------------------------------------- schedule maths
def num_transfer_tokens(masked_B, steps: int):
    """LLaDA's ``get_num_transfer_tokens``: [B, steps] counts summing to ``masked_B``."""
    base = masked_B[:, None] // steps
    rem = masked_B[:, None] % steps
    return (base + (jnp.arange(steps)[None] < rem)).astype(jnp.int32)


def time_grid(s: Settings):
    """``steps + 1`` times from 1 down to 0 (cosine: ``cos(pi/2 k/steps)``, finer near 1)."""
    k = jnp.arange(s.steps + 1, dtype=jnp.float32) / s.steps
    if s.time_grid == "cosine":
        return jnp.cos(0.5 * jnp.pi * k).at[-1].set(0.0)
    return 1.0 - k


def select_top(score_BxL, count_B):
    """Bool [B, L]: the ``count_B`` highest scores of each row (ties: lower position)."""
    order = jnp.argsort(-score_BxL, axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1)
    return ranks < count_B[:, None]


# ---------------------------------------------------------------------- the loop
def generate(apply, params, canvas_BxL, rng, s: Settings, *, gen_start: int,
             debug: bool = False, cached=None):
    """Decode the masked positions of the generation region of ``canvas_BxL``.

    ``cached``: the model's cached forward (``prefill``, ``window``; e.g. ``apply.cached``),
    needed when ``s.kv_cache`` is not 'none'.

    Returns a dict: ``tokens`` [B, L] (extra masks left as mask ids), ``commit_step``
    [B, L] (the step that committed each position, -1 where fixed), ``model_calls`` and
    ``calls_saved`` (MDLM's cache) scalars, ``first_call_blocks`` (with a KV cache: blocks
    whose first, full call committed every token; Fast-dLLM's cached loop makes one more
    call in each, see :func:`reference_model_calls`), and with ``debug`` ``trajectory``
    [S+1, B, L] (the canvas after each step; rows past the last step repeat it).
    """
    b, length = canvas_BxL.shape
    if not 0 <= gen_start <= length - s.gen_length:
        raise ValueError(f"generation region [{gen_start}, {gen_start + s.gen_length}) does "
                         f"not fit the canvas of length {length}; check sampler.gen_length")
    pos = jnp.arange(length)
    region = (pos >= gen_start) & (pos < gen_start + s.gen_length)
    max_steps = s.steps if s.strategy != "threshold" else s.gen_length
    st = {"x": canvas_BxL.astype(jnp.int32),
          "commit_step": jnp.full((b, length), -1, jnp.int32),
          "step": jnp.zeros((), jnp.int32), "model_calls": jnp.zeros((), jnp.int32),
          "calls_saved": jnp.zeros((), jnp.int32),
          "first_call_blocks": jnp.zeros((), jnp.int32)}
    if debug:
        st["trajectory"] = jnp.tile(st["x"][None], (max_steps + 1, 1, 1))
    if s.strategy == "ancestral":
        st = _ancestral(apply, params, st, rng, s, region)
    else:
        if s.kv_cache != "none" and cached is None:
            raise ValueError(f"sampler.kv_cache={s.kv_cache!r} needs the model's cached forward: "
                             "pass cached=apply.cached to the sampler (or set "
                             "--config.sampler.kv_cache=none)")
        st = _blockwise(apply, params, st, rng, s, gen_start,
                        None if s.kv_cache == "none" else cached)
    if debug:  # rows after the last step repeat the final canvas
        after = jnp.arange(max_steps + 1)[:, None, None] > st["step"]
        st["trajectory"] = jnp.where(after, st["x"][None], st["trajectory"])
    return {k: v for k, v in st.items() if k != "step" and k != "x"} | {"tokens": st["x"]}


def reference_model_calls(out, s: Settings) -> int:
    """Model calls the published loop makes for the same run: LLaDA's ``generate`` as
    ``model_calls``; Fast-dLLM's KV-cache loops call the model once more in every block
    whose first (full) call already committed the whole block."""
    extra = int(out["first_call_blocks"]) if s.kv_cache != "none" else 0
    return int(out["model_calls"]) + extra


def _commit(st, commit_BxL, x0_BxL):
    """Write ``x0`` where ``commit`` (a subset of masked positions) and log the step."""
    step = st["step"] + 1
    st = dict(st, x=jnp.where(commit_BxL, x0_BxL, st["x"]), step=step,
              commit_step=jnp.where(commit_BxL, step - 1, st["commit_step"]))
    if "trajectory" in st:
        idx = jnp.minimum(step, st["trajectory"].shape[0] - 1)
        st["trajectory"] = jax.lax.dynamic_update_index_in_dim(st["trajectory"], st["x"],
                                                               idx, 0)
    return st


def _ancestral(apply, params, st, rng, s: Settings, region_L):
    times = time_grid(s)
    alpha = s.schedule.alpha
    b = st["x"].shape[0]
    call_every_step = not s.use_cache or s.time_conditioning

    def model(x, t):
        return apply(params, x, jnp.full((b,), t, jnp.float32))

    logits_shape = jax.eval_shape(model, st["x"], times[0])
    st = dict(st, logits=jnp.zeros(logits_shape.shape, jnp.float32), changed=jnp.asarray(True))

    def body(i, st):
        t, t_next = times[i], times[i + 1]
        k_x0, k_move = jax.random.split(jax.random.fold_in(rng, i))
        x = st["x"]
        if call_every_step:
            need, raw = jnp.asarray(True), model(x, t)
        else:  # MDLM's cache: same input and no time conditioning -> same logits
            need = st["changed"]
            raw = jax.lax.cond(need, lambda: model(x, t), lambda: st["logits"])
        logits = filter_logits(raw, s)
        x0 = sample_x0(logits, k_x0, s)
        p_unmask = (alpha(t_next) - alpha(t)) / (1.0 - alpha(t))
        masked = (x == s.mask_id) & region_L[None]
        commit = masked & (jax.random.uniform(k_move, x.shape) < p_unmask)
        return dict(_commit(st, commit, x0), logits=raw, changed=jnp.any(commit),
                    model_calls=st["model_calls"] + need.astype(jnp.int32),
                    calls_saved=st["calls_saved"] + (~need).astype(jnp.int32))

    st = jax.lax.fori_loop(0, s.steps, body, st)
    left = (st["x"] == s.mask_id) & region_L[None]

    def final(st):  # anything still masked (a schedule with alpha(0) < 1): argmax
        x0 = jnp.argmax(filter_logits(model(st["x"], times[-1]), s), -1).astype(jnp.int32)
        return dict(_commit(st, left, x0), model_calls=st["model_calls"] + 1)

    st = jax.lax.cond(jnp.any(left), final, lambda st: st, st)
    return {k: v for k, v in st.items() if k not in ("logits", "changed")}


def _blockwise(apply, params, st, rng, s: Settings, gen_start: int, cached):
    """``confidence`` and ``threshold``: a loop over blocks, an inner loop over steps.
    With ``cached`` (a KV cache): one ``prefill`` per block, then ``window`` calls."""
    b, length = st["x"].shape
    pos = jnp.arange(length)
    nb = s.num_blocks
    steps_per_block = s.steps // nb
    region = (pos >= gen_start) & (pos < gen_start + s.gen_length)

    def time_of(x):  # time-conditioned models: the schedule's time for the mask rate
        if not s.time_conditioning:
            return None
        rate = jnp.sum((x == s.mask_id) & region[None], -1) / s.gen_length
        return s.schedule.time_at(rate.astype(jnp.float32))

    def block_body(blk, st):
        start = gen_start + blk * s.block_length
        in_block = (pos >= start) & (pos < start + s.block_length)
        masked_B = jnp.sum((st["x"] == s.mask_id) & in_block[None], axis=-1)
        schedule = num_transfer_tokens(masked_B, steps_per_block)
        if cached is not None:
            first_logits, cache = cached.prefill(params, st["x"], time_of(st["x"]))
            st = dict(st, model_calls=st["model_calls"] + 1)

        def window_logits(x):  # the window's rows recomputed; the others stay stale
            width = length - start if s.kv_cache == "prefix" else s.block_length
            ids = jax.lax.dynamic_slice_in_dim(x, start, width, axis=1)
            logits = cached.window(params, ids, cache, start, time_of(x))
            return jax.lax.dynamic_update_slice_in_dim(first_logits, logits, start, axis=1)

        def logits_at(st, j):
            if cached is None:
                return apply(params, st["x"], time_of(st["x"]))
            return jax.lax.cond(j == 0, lambda: first_logits, lambda: window_logits(st["x"]))

        def step(st, j):
            key = jax.random.fold_in(rng, st["step"])
            k_x0, k_conf = jax.random.split(key)
            logits = filter_logits(logits_at(st, j), s)
            x0 = sample_x0(logits, k_x0, s)
            cand = (st["x"] == s.mask_id) & in_block[None]
            conf = jnp.nan_to_num(confidence(logits, x0, k_conf, s), nan=-3.0)
            score = jnp.where(cand, conf, -jnp.inf)
            if s.strategy == "confidence":
                commit = select_top(score, schedule[:, j]) & cand
            else:  # the best candidate always commits, so the block loop terminates
                best = jnp.arange(length)[None] == jnp.argmax(score, -1)[:, None]
                commit = cand & ((score >= s.threshold) | best)
            calls = st["model_calls"] + (1 if cached is None else (j > 0).astype(jnp.int32))
            st = dict(_commit(st, commit, x0), model_calls=calls)
            if cached is not None:  # Fast-dLLM's cached loop calls once more in such blocks
                done = (j == 0) & ~jnp.any((st["x"] == s.mask_id) & in_block[None])
                st["first_call_blocks"] = st["first_call_blocks"] + done.astype(jnp.int32)
            return st

        if s.strategy == "confidence":
            return jax.lax.fori_loop(0, steps_per_block, lambda j, st: step(st, j), st)

        def cond(carry):  # at most block_length steps: each commits >= 1 per row
            st, j = carry
            return jnp.any((st["x"] == s.mask_id) & in_block[None]) & (j < s.block_length)

        def body(carry):
            st, j = carry
            return step(st, j), j + 1

        return jax.lax.while_loop(cond, body, (st, jnp.zeros((), jnp.int32)))[0]

    if cached is not None and s.kv_cache == "prefix":  # the window's width varies per block
        for blk in range(nb):
            st = block_body(blk, st)
        return st
    return jax.lax.fori_loop(0, nb, block_body, st)


def result_shardings(mesh, *, debug: bool = False) -> dict:
    """Shardings of :func:`generate`'s result on ``mesh``: per-row arrays over the data
    axes, counters replicated (one declaration for every sharded caller)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from mdlm_jax.parallel import mesh as mesh_lib

    batch, rep = mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)
    outs = {"tokens": batch, "commit_step": batch, "model_calls": rep, "calls_saved": rep,
            "first_call_blocks": rep}
    if debug:
        outs["trajectory"] = NamedSharding(mesh, PartitionSpec(None, *mesh_lib.batch_spec(mesh)))
    return outs


def make_sample_fn(apply, s: Settings, *, gen_start: int, mesh=None, param_shardings=None,
                   rules=None, cached=None, debug: bool = False):
    """``fn(params, canvas_BxL, rng) -> result`` jitted; sharded when ``mesh`` is given;
    ``cached``: the model's cached forward for ``s.kv_cache`` (see :func:`generate`).

    The batch is sharded over the data axes, padded to a multiple of the data-parallel
    size with rows that have nothing to decode (dropped from the result); parameters
    follow ``param_shardings``
    (``parallel.sharding.param_shardings(axes, shapes, config.mesh.rules, mesh)``).
    ``fn.lower(params, canvas_BxL, rng)`` lowers the same program ahead of time for
    abstract arguments (the canvas's batch already a multiple of the data-parallel size):
    ``mdlm_jax.aot`` compiles it for a target without running it.
    """
    def fn(params, canvas, rng):
        return generate(apply, params, canvas, rng, s, gen_start=gen_start, debug=debug,
                        cached=cached)

    if mesh is None:
        return jax.jit(fn)
    from mdlm_jax.parallel import mesh as mesh_lib
    from mdlm_jax.parallel import sharding

    batch = mesh_lib.batch_sharding(mesh)
    jitted = sharding.jit_on_mesh(
        fn, mesh, in_shardings=(param_shardings, batch, mesh_lib.replicated(mesh)),
        out_shardings=result_shardings(mesh, debug=debug), rules=rules)

    def call(params, canvas, rng):
        canvas = np.asarray(canvas)  # the same on every process; placed below
        b = canvas.shape[0]
        padded = mesh_lib.padded_batch_size(b, mesh)
        if padded != b:  # rows with nothing to decode; noise is per position (threefry
            # partitionable), so the real rows draw what they draw unpadded
            filler = np.where(canvas[:1] == s.mask_id, 1 if s.mask_id == 0 else 0,
                              canvas[:1])
            canvas = np.concatenate([canvas, np.tile(filler, (padded - b, 1))])
        out = jitted(params, jax.device_put(canvas, batch), rng)
        if padded == b:
            return out
        return {k: (v[:, :b] if k == "trajectory" else v[:b] if v.ndim else v)
                for k, v in out.items()}

    call.lower = jitted.lower
    return call
