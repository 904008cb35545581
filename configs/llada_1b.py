"""A LLaDA-style masked diffusion model at ~1.1B parameters (pretraining from scratch).

The LLaDA-8B recipe (Nie et al. 2025) scaled down: Llama body with bidirectional attention
(RMSNorm, SwiGLU, RoPE theta 5e5, MHA, no biases, untied head), LLaDA's vocabulary of
126464 ids with mask id 126336, the linear schedule with p_mask = (1 - 1e-3) t + 1e-3
(``diffusion.time_eps``), loss normalized by batch x length, 1% of batches cropped to a
random length, sequences of 2048, bf16 compute.

Size: d_model 2048, 12 layers, 16 heads of 128, SwiGLU width 5632: 1,134,610,432
parameters, of which 2 x 259M are the input embedding and the output head (875M excluding
the input embedding, the count MFU uses).

Targets (checked by ``python -m mdlm_jax.main compile``): one host of 8 x H200 (or H100),
64 sequences of 2048 per micro-batch (8 per GPU) x 8 accumulation steps = the 1M-token
batch; a v5p-16 slice (topology v5p:2x2x2, 8 chips) with ``:fsdp``. Attention is ``auto``:
cuDNN on GPU, the Pallas splash kernel on TPU, XLA on CPU.

Remat: ``dots_with_no_batch_dims_saveable`` keeps the outputs of every weight matmul (q, k,
v, o, gate, up, down: ~43 KB per token and layer in bf16) and recomputes only norms,
activations and attention in the backward pass (a few % extra FLOPs, not counted by MFU).
At 8 x 2048 tokens per GPU that is ~8 GB of saved activations, next to ~8 GB of float32
logits; ``nothing_saveable`` would recompute the whole layer (+~33% FLOPs) for memory that
an 80-141 GB GPU does not need, ``none`` keeps every intermediate.

Tokenizer: LLaDA's ``tokenizer.json`` from a local folder, passed as the arg.

One GPU host::

    PLATFORM=gpu bash launch/local.sh train \\
        --config configs/llada_1b.py:tokenizer=/models/LLaDA-8B-Base/tokenizer.json \\
        --workdir runs/llada_1b --config.data.name=text_files \\
        --config.data.files='/data/pretrain/*.jsonl' --config.data.data_dir=/data/tfds

A TPU pod slice (FSDP over the slice)::

    TPU_NAME=my-v5p-16 ZONE=us-east5-a \\
        CONFIG=configs/llada_1b.py:tpu,fsdp,tokenizer=/models/LLaDA-8B-Base/tokenizer.json \\
        WORKDIR=gs://bucket/llada_1b bash launch/tpu_pod.sh \\
        --config.data.name=text_files --config.data.files='/data/pretrain/*.jsonl'

Training throughput without a dataset (synthetic batches)::

    python bench/train_throughput.py --config configs/llada_1b.py --batch 8

Args (comma separated): ``cpu`` / ``tpu`` (kept for old command lines: attention is
``auto``), ``fsdp``
(shard parameters over all devices: mesh (1, -1, 1)), ``smoke`` (tiny model for CPU tests),
``tokenizer=PATH`` (a ``tokenizer.json`` or a folder holding one).
"""

from mdlm_jax.config_base import base_config, lock, parse_arg, shrink_for_smoke

FLAGS = ("cpu", "tpu", "fsdp", "smoke")


def get_config(arg=None):
    flags, values = parse_arg(arg, config_name="llada_1b", flags=FLAGS, keys=("tokenizer",))
    c = base_config()
    m = c.model
    m.family = "llama"
    m.vocab_size = 126464
    m.d_model = 2048
    m.n_layers = 12
    m.n_heads = 16
    m.n_kv_heads = 0  # MHA
    m.mlp_dim = 5632
    m.max_length = 2048
    m.rope_theta = 500000.0
    m.qkv_bias = False
    m.causal = False
    m.tie_embeddings = False
    m.norm_eps = 1e-5
    m.dtype = "bfloat16"
    m.param_dtype = "float32"
    m.attention_impl = "auto"
    m.remat_policy = "dots_with_no_batch_dims_saveable"
    m.scan_layers = True

    d = c.diffusion
    d.schedule = "linear"
    d.time_eps = 1e-3  # LLaDA's p_mask floor
    d.antithetic = True
    d.mask_id = 126336
    d.random_crop_prob = 0.01

    c.loss.terms = {"nelbo": 1.0}
    c.loss.normalize = "tokens"  # LLaDA: divide by batch x length (no padding in pretraining)
    c.loss.logits_chunk = 512  # float32 logits over 126k ids for 512 positions at a time

    da = c.data
    da.name = "text_files"
    da.tokenizer = "hf"
    da.tokenizer_path = values.get("tokenizer", "")
    da.seq_len = 2048
    da.packing = "wrap"
    da.global_batch_size = 64  # x 8 accumulation steps: 1M tokens per step

    o = c.optimizer
    o.learning_rate = 4e-4
    o.warmup_steps = 2000
    o.decay = "cosine"
    o.min_lr_ratio = 0.1
    o.b1 = 0.9
    o.b2 = 0.95
    o.weight_decay = 0.1
    o.grad_clip = 1.0
    o.ema_decay = 0.0
    o.grad_accum_steps = 8

    t = c.train
    t.num_steps = 100_000
    t.log_every = 50
    t.eval_every = 5000
    c.checkpoint.every_steps = 2000
    c.eval.batch_size = 32
    c.sampler.strategy = "confidence"  # LLaDA's published protocol: greedy, low-confidence
    c.sampler.remasking = "low_confidence"  # remasking; trained here with SUBS, so the
    c.sampler.temperature = 0.0  # mask leaves the softmax (sampler.mask_in_softmax=auto)
    c.sampler.gen_length = 256
    c.sampler.block_length = 32
    c.sampler.steps = 256

    if "fsdp" in flags:
        c.mesh.shape = (1, -1, 1)
    if "smoke" in flags:
        m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = 512, 64, 2, 4, 128
        m.max_length = 128
        m.dtype = "float32"
        m.remat_policy = "none"
        d.mask_id = 511
        da.seq_len = 64
        shrink_for_smoke(c)
    return lock(c)
