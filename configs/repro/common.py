"""The shared recipe of the miniature reproduction (``configs/repro/*.py``; issue 15).

Five arms, trained in this order (``SIZE`` is ``cpu`` or ``gpu``; each arm's parent
workdir defaults to ``runs/repro_SIZE/<parent arm>`` and is set by ``from=DIR``)::

    python -m mdlm_jax.main train --config configs/repro/mdlm.py:SIZE --workdir runs/repro_SIZE/mdlm
    python -m mdlm_jax.main train --config configs/repro/ar.py:SIZE --workdir runs/repro_SIZE/ar
    python -m mdlm_jax.main train --config configs/repro/mdlm_ma.py:SIZE \\
        --workdir runs/repro_SIZE/mdlm_ma
    python -m mdlm_jax.main train --config configs/repro/mdlm_ce.py:SIZE \\
        --workdir runs/repro_SIZE/mdlm_ce
    python -m mdlm_jax.main train --config configs/repro/mdlm_from_ar.py:SIZE \\
        --workdir runs/repro_SIZE/mdlm_from_ar

then the context suite on each, with the evaluation words held out of training::

    python -m mdlm_jax.main context \\
        --config configs/context/locality.py:model=repro_SIZE,path=runs/repro_SIZE/mdlm \\
        --workdir runs/repro_SIZE/mdlm

Model: LLaDA-style (llama family: RMSNorm, SwiGLU, RoPE, no time conditioning), linear
schedule with LLaDA's time floor, byte-level characters (vocab 256 bytes + EOS + mask =
258, mask id 257). The char tokenizer is the one the suite, the task corpus and the
prompt / answer builder all support with single-token answer letters, and it keeps the
embedding table negligible, so the parameter budget goes to the body. The AR arm is the
same network, causal, trained on next-token NLL, on the same data, steps and batches.

Data: ``data.name='context_tasks'`` (``mdlm_jax/data/task_documents.py``): the suite's
few-shot prompts with their answers, the masks and ``" ."`` filler of the experiments after
the last question, mixed with the embedded corpus; only the training words of each
category (the suite evaluates on the held-out quarter: ``context.words='heldout'`` in the
``repro_*`` presets of ``configs/context/suite.py``).

Sizes (``SIZES``):

* ``cpu``: 4 layers of width 128 (0.9M parameters), 256 characters, batches of 16;
  200 steps for each of the pair (0.8M tokens), 100 for the AR-initialised MDLM, 60 of 8
  prompts for each fine-tune. Measured on this project's 2-core CPU while it was shared
  (load average ~20), 2026-12-01, CPU seconds (user + sys) / wall: mdlm 253 s / 1732 s,
  ar 262 s / 2017 s, mdlm_ma 122 s / 1307 s, mdlm_ce 121 s / 1303 s (each fine-tune
  includes its before / after invariance probe), mdlm_from_ar 142 s / 1145 s: 900 CPU
  seconds in all, about 7.5 minutes of both cores when the machine is idle. It proves the
  pipeline, not the findings: the models learn the answer format (the AR and the
  AR-initialised MDLM put 0.997 of their probability on the three letters, the MDLM 0.63)
  but not the task (p(correct) / letter mass = 1/3 on the held-out and on the training
  words alike); the CE + TV fine-tune makes the MDLM's answer invariant to 0-16 appended
  masks (TV 0.49 -> 0.002 on its probe), the CE-only one does not (0.49 -> 0.82).
* ``gpu``: 8 layers of width 512 (26.0M parameters), 1024 characters. Sized by analytic
  FLOPs (``monitoring.flops_per_token``: 6N + attention = 2.05e8 FLOPs per token for the
  MDLM and the AR model, 3.2e8 for a mask-agnostic fine-tune: two forward passes over a
  frozen base), not measured: no GPU was available when it was chosen. At an assumed 20%
  MFU of the H200's 989 TFLOP/s bf16 peak (~200 TFLOP/s), the MDLM's 2000 steps of
  64 x 1024 tokens take ~135 s, the AR's as many ~135 s, the AR-initialised MDLM's 1000
  ~67 s and each fine-tune's 600 steps of 32 x 1024 ~31 s: about 6.7 minutes, plus
  compile and start-up (~15 s an arm). The corpus (40,000 task documents of ~560
  characters and a quarter of embedded text, ~30M characters: ~4 passes in the MDLM's
  131M training tokens) and the fine-tunes' 40,000 prompts are generated on first use,
  single-threaded, at about 1,000 documents a second on this project's loaded 2-core CPU.
* ``smoke``: a few steps of a tiny model, for the tests.
"""

from mdlm_jax.config_base import base_config, lock, parse_arg, shrink_for_smoke

ARMS = {"mdlm": "", "ar": "", "mdlm_ma": "mdlm", "mdlm_ce": "mdlm", "mdlm_from_ar": "ar"}
SIZE_FLAGS = ("cpu", "gpu", "smoke")

SIZES = {
    "cpu": dict(
        d_model=128, n_layers=4, n_heads=4, mlp_dim=384, seq_len=256, batch=16,
        steps=200, lr=3e-3, warmup=20, from_ar_steps=100, from_ar_lr=1e-3,
        ma_steps=60, ma_batch=8, dtype="float32",
        tasks=dict(fraction=0.8, documents=4000, max_relevant=2, max_distractors=3,
                   max_filler=16),
        probe=(0, 4, 8, 16)),
    "gpu": dict(
        d_model=512, n_layers=8, n_heads=8, mlp_dim=1408, seq_len=1024, batch=64,
        steps=2000, lr=1e-3, warmup=100, from_ar_steps=1000, from_ar_lr=3e-4,
        ma_steps=600, ma_batch=32, dtype="bfloat16",
        tasks=dict(fraction=0.75, documents=40000, max_relevant=4, max_distractors=16,
                   max_filler=64),
        probe=(0, 8, 32, 64)),
}
SMOKE = dict(d_model=32, n_layers=2, n_heads=2, mlp_dim=64, documents=200)


def parse(arm: str, arg) -> tuple[str, dict]:
    """``(size, values)`` of ``'cpu|gpu|smoke[,from=DIR]'`` (``cpu`` when not given)."""
    keys = ("from",) if ARMS[arm] else ()
    flags, values = parse_arg(arg, config_name=f"repro/{arm}", flags=SIZE_FLAGS, keys=keys)
    if len(flags) > 1:
        raise ValueError(f"repro/{arm}: choose one size of {', '.join(SIZE_FLAGS)}; got "
                         f"{', '.join(sorted(flags))}")
    return (flags.pop() if flags else "cpu"), values


def parent_workdir(arm: str, size: str, values: dict) -> str:
    return values.get("from", f"runs/repro_{size}/{ARMS[arm]}")


def repro_config(arm: str, arg=None):
    """The config of one arm (see the module docstring)."""
    size, values = parse(arm, arg)
    s = dict(SIZES["cpu" if size == "smoke" else size])
    c = base_config()
    m = c.model
    m.family = "llama"
    m.time_conditioning = False
    m.vocab_size = 258  # 256 bytes + EOS + mask
    m.d_model, m.n_layers, m.n_heads, m.mlp_dim = (s["d_model"], s["n_layers"], s["n_heads"],
                                                   s["mlp_dim"])
    m.max_length = s["seq_len"]
    m.dtype = s["dtype"]
    m.param_dtype = "float32"
    m.causal = arm == "ar"
    m.logit_shift = arm == "mdlm_from_ar"  # the AR alignment kept, shifted back (Dream)
    d = c.diffusion
    d.schedule = "linear"  # LLaDA: p_mask = t, floored at time_eps
    d.time_eps = 1e-3
    d.mask_id = 257
    c.loss.terms = {"ar_nll": 1.0} if arm == "ar" else {"nelbo": 1.0}

    da = c.data
    da.name = "context_tasks"
    da.tokenizer = "char"
    da.seq_len = s["seq_len"]
    da.packing = "wrap"
    da.global_batch_size = s["batch"]
    da.context_tasks.update(s["tasks"])

    o = c.optimizer
    o.learning_rate, o.warmup_steps = s["lr"], s["warmup"]
    o.decay, o.min_lr_ratio, o.weight_decay, o.ema_decay = "cosine", 0.1, 0.0, 0.0
    t = c.train
    t.num_steps = s["steps"]
    t.log_every = 25
    t.sample_at_end = False
    t.progress_bar = False
    c.eval.batch_size, c.eval.num_batches, c.eval.mc_samples = 32, 4, 2
    c.sampler.gen_length = c.sampler.block_length = 64

    if arm == "mdlm_from_ar":
        c.checkpoint.restore_from = parent_workdir(arm, size, values)
        c.lora.full_finetune = True  # the AR model's every weight continues as an MDLM
        o.learning_rate, t.num_steps = s["from_ar_lr"], s["from_ar_steps"]
    if arm in ("mdlm_ma", "mdlm_ce"):
        _mask_agnostic(c, s, ce_only=arm == "mdlm_ce")
        c.checkpoint.restore_from = parent_workdir(arm, size, values)
    c.checkpoint.every_steps = t.num_steps  # and at the end
    c.checkpoint.keep = 1
    if size == "smoke":
        _smoke(c)
    return lock(c)


def _mask_agnostic(c, s: dict, *, ce_only: bool) -> None:
    """PAPER.md Table 2 scaled down: alpha 0.1, beta 1 (CE+TV) or 0 (CE), p ~ U(0.2, 0.8),
    LoRA on every projection, constant learning rate after 20 warm-up steps, CE's 10x lower
    than CE+TV's as in the paper (1e-5 / 1e-6 there), the appended masks rising from 2 to
    ``max_filler`` over the first half."""
    c.loss.terms = {"mask_agnostic": 1.0}
    ma = c.loss.mask_agnostic
    ma.alpha, ma.beta = 0.1, 0.0 if ce_only else 1.0
    ma.p_low, ma.p_high = 0.2, 0.8
    ma.max_masks = s["tasks"]["max_filler"]
    ma.curriculum_start = 2
    ma.curriculum_steps = s["ma_steps"] // 2
    ma.probe_mask_counts = s["probe"]
    lo = c.lora
    lo.rank, lo.alpha = 8, 16.0
    lo.targets = ("q", "k", "v", "o", "gate", "up", "down")
    c.data.name = "prompt_answer"
    c.data.files = "context_tasks"  # the same generator's prompts, answer = the letter
    c.data.global_batch_size = s["ma_batch"]
    o = c.optimizer
    o.learning_rate = 1e-4 if ce_only else 1e-3
    o.warmup_steps, o.decay = 20, "constant"
    c.train.num_steps = s["ma_steps"]
    c.eval.batch_size = 16


def _smoke(c) -> None:
    m = c.model
    m.d_model, m.n_layers, m.n_heads, m.mlp_dim = (SMOKE["d_model"], SMOKE["n_layers"],
                                                   SMOKE["n_heads"], SMOKE["mlp_dim"])
    c.data.context_tasks.documents = SMOKE["documents"]
    shrink_for_smoke(c)
    c.checkpoint.every_steps = c.train.num_steps
    c.loss.mask_agnostic.curriculum_steps = min(c.loss.mask_agnostic.curriculum_steps, 2)
    c.eval.mc_samples = 1
