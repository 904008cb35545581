"""Mask-agnostic LoRA fine-tuning of LLaDA-8B-Base (PAPER.md section 5, Table 2).

Variants (first arg): ``ce_tv`` (beta 1.0, lr 1e-5) and ``ce`` (CE only: beta 0, lr 1e-6).
LoRA rank 64 / alpha 128 / dropout 0 on q, k, v, o, gate, up, down (the paper does not
name its targets); micro-batch 3 with 43 accumulation steps per optimizer step, 930 steps,
bf16 compute, clip 1.0, weight decay 0, context 1024. AdamW with a constant learning rate
after 20 warmup steps (the paper does not state its optimizer). The appended-mask
curriculum rises from 8 to 600 masks over the first half of training (the paper gives no
schedule). Tensor parallelism over all devices (mesh (1, 1, -1)): a micro-batch of 3 does
not divide over data-parallel devices. Target: one host of 8 x H200 (or H100); attention
is ``auto`` (cuDNN on GPU, splash on TPU), checked by ``python -m mdlm_jax.main compile``.

Data: OpenOrca as JSON lines (``system_prompt`` / ``question`` / ``response``), tokenized
with the model's ``tokenizer.json`` and built once on first use. Examples whose prompt does
not fit in 1024 tokens are an error: filter the JSONL beforehand.

One GPU host (8 GPUs)::

    M=/models/LLaDA-8B-Base; D='/data/openorca/*.jsonl'
    PLATFORM=gpu bash launch/local.sh train --workdir runs/llada_8b_base_ma_ce_tv \\
        --config "configs/llada_8b_base_ma.py:ce_tv,path=$M,data=$D"

Args (comma separated): ``ce_tv`` | ``ce``; ``path=DIR`` (HF checkpoint directory, also the
tokenizer); ``data=GLOB`` (OpenOrca JSONL files); ``smoke`` (a tiny model for CPU tests).

The directory is the truth: when the command starts, the architecture, the mask id, the
EOS / padding id and the tokenizer are read from ``path`` (``checkpoint.hf_config``), so
the published LLaDA-8B values below only describe the model when no directory is given. A
``--config.model.*`` override that contradicts the directory is an error.
"""

from mdlm_jax.config_base import base_config, lock
from mdlm_jax.config_base import parse_arg as parse_config_arg

# Table 2: variant -> (beta, learning rate)
VARIANTS = {"base": {"ce_tv": (1.0, 1e-5), "ce": (0.0, 1e-6)},
            "instruct": {"ce_tv": (10.0, 1e-6), "ce": (0.0, 1e-5)}}
FLAGS = ("ce_tv", "ce", "smoke")
LLADA_EOS = 126081  # <|endoftext|>, LLaDA's padding token in SFT (the directory's wins)


def parse_arg(arg, name="llada_8b_ma"):
    flags, values = parse_config_arg(arg, config_name=name, flags=FLAGS, keys=("path", "data"))
    if len(flags & {"ce_tv", "ce"}) > 1:
        raise ValueError(f"{name}: choose one variant, ce_tv or ce")
    variant = "ce" if "ce" in flags else "ce_tv"
    return variant, "smoke" in flags, values


def llada_ma_config(kind: str, arg=None):
    """The shared recipe; ``kind`` is 'base' or 'instruct'."""
    variant, smoke, values = parse_arg(arg, f"llada_8b_{kind}_ma")
    beta, lr = VARIANTS[kind][variant]
    path = values.get("path", "")
    c = base_config()
    m = c.model
    # LLaDA-8B's published architecture and ids: replaced by the directory's (path=).
    m.family = "llama"
    m.vocab_size = 126464
    m.d_model = 4096
    m.n_layers = 32
    m.n_heads = 32
    m.n_kv_heads = 0  # MHA
    m.mlp_dim = 12288
    m.max_length = 4096
    m.rope_theta = 500000.0
    m.norm_eps = 1e-5
    m.qkv_bias = False
    m.tie_embeddings = False
    m.dtype = "bfloat16"
    m.param_dtype = "bfloat16"  # frozen base weights; LoRA adapters are float32
    m.attention_impl = "auto"  # cuDNN on GPU, splash on TPU, XLA on CPU
    m.remat_policy = "full"
    m.init_from = path

    d = c.diffusion
    d.schedule = "linear"
    d.time_eps = 1e-3
    d.mask_id = 126336

    c.loss.terms = {"mask_agnostic": 1.0}
    c.loss.logits_chunk = 256  # float32 logits over 126k ids for 256 positions at a time
    ma = c.loss.mask_agnostic
    ma.alpha, ma.beta = 0.1, beta
    ma.p_low, ma.p_high = 0.2, 0.8
    ma.max_masks = 600
    ma.curriculum_start = 8
    ma.curriculum_steps = 465

    lo = c.lora
    lo.rank, lo.alpha = 64, 128.0
    lo.targets = ("q", "k", "v", "o", "gate", "up", "down")

    da = c.data
    da.name = "prompt_answer"
    da.files = values.get("data", "")
    da.tokenizer = "hf"
    da.tokenizer_path = path
    da.chat_template = "llada" if kind == "instruct" else ""
    da.eos_id = LLADA_EOS  # stated for inspecting / compiling without the directory
    da.seq_len = 1024
    da.global_batch_size = 3

    o = c.optimizer
    o.learning_rate = lr
    o.warmup_steps = 20
    o.decay = "constant"
    o.weight_decay = 0.0
    o.grad_clip = 1.0
    o.ema_decay = 0.0
    o.grad_accum_steps = 43

    c.train.num_steps = 930
    c.train.log_every = 10
    c.train.sample_at_end = False
    c.checkpoint.every_steps = 100
    c.mesh.shape = (1, 1, -1)
    c.eval.batch_size = 3
    sa = c.sampler  # LLaDA's published generate: greedy, low-confidence remasking, blocks
    sa.strategy, sa.remasking, sa.temperature = "confidence", "low_confidence", 0.0
    sa.gen_length, sa.block_length, sa.steps = 128, 32, 128
    sa.mask_in_softmax = "keep"  # published LLaDA weights: the mask stays in the softmax

    if smoke:
        m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = 300, 64, 2, 4, 128
        m.max_length, m.dtype, m.param_dtype = 256, "float32", "float32"
        m.attention_impl, m.remat_policy = "xla", "none"
        d.mask_id = 299
        ma.max_masks, ma.curriculum_start, ma.curriculum_steps = 32, 4, 4
        lo.rank, lo.alpha = 4, 8.0
        da.tokenizer, da.tokenizer_path, da.files, da.seq_len = "char", "", "embedded", 256
        da.eos_id = -1  # the char tokenizer's
        o.grad_accum_steps = 2
        c.train.num_steps = 4
        c.mesh.shape = (-1, 1, 1)
    return lock(c)


def get_config(arg=None):
    return llada_ma_config("base", arg)
