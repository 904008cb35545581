"""LLaDA-8B pretraining from scratch (Nie et al. 2025): the 8B shapes at sequence 4096, FSDP.

LLaDA-8B's body: 32 layers of d_model 4096, 32 heads of 128 (MHA), SwiGLU width 12288,
RMSNorm, RoPE theta 5e5, no biases, untied head, vocabulary 126464 with mask id 126336;
the linear schedule with the 1e-3 mask floor, 1% of batches cropped to a random length,
AdamW (lr 4e-4, weight decay 0.1, warm-up 2000, cosine), bf16 compute over float32
parameters, full remat, sequences of 4096 (LLaDA's pretraining context).

Targets (``hw`` arg), each checked by ``python -m mdlm_jax.main compile``:

- ``hw=v5p128`` (default): a v5p-128 slice (topology v5p:4x4x4, 64 chips), parameters and
  optimizer state sharded over all chips (FSDP, mesh (1, -1, 1)), 64 sequences per
  micro-batch (one per chip) x 16 accumulation steps = 4M tokens per step;
- ``hw=h200x8``: one host of 8 x H200, FSDP over the 8 GPUs, 8 sequences per micro-batch
  (one per GPU) x 128 accumulation steps (the same 4M tokens per step).

Attention is ``auto``: cuDNN on GPU, the Pallas splash kernel on TPU::

    python -m mdlm_jax.main compile --config configs/llada_8b_pretrain.py --topology v5p:4x4x4
    TPU_NAME=my-v5p-128 ZONE=us-east5-a \\
        CONFIG=configs/llada_8b_pretrain.py:tokenizer=/models/LLaDA-8B-Base/tokenizer.json \\
        WORKDIR=gs://bucket/llada_8b bash launch/tpu_pod.sh \\
        --config.data.files='/data/pretrain/*.jsonl' --config.data.data_dir=/data/tfds

Args (comma separated): ``hw=v5p128|h200x8``, ``tokenizer=PATH``, ``smoke`` (a tiny model
for CPU tests).
"""

from mdlm_jax.config_base import lock, parse_arg, shrink_for_smoke, sibling_config

TARGETS = {"v5p128": (64, 16), "h200x8": (8, 128)}  # micro-batch, accumulation steps


def get_config(arg=None):
    flags, values = parse_arg(arg, config_name="llada_8b_pretrain", flags=("smoke",),
                              keys=("hw", "tokenizer"))
    hw = values.get("hw", "v5p128")
    if hw not in TARGETS:
        raise ValueError(f"llada_8b_pretrain: hw={hw!r} is unknown; use one of "
                         f"{sorted(TARGETS)}")
    tok = values.get("tokenizer", "")
    base = sibling_config(__file__, "llada_1b.py", f"fsdp,tokenizer={tok}" if tok else "fsdp")
    c = base.copy_and_resolve_references()
    c.unlock()
    m = c.model
    m.d_model, m.n_layers, m.n_heads, m.mlp_dim = 4096, 32, 32, 12288
    m.max_length = 4096
    m.param_dtype = "float32"
    m.remat_policy = "full"
    c.data.seq_len = 4096
    c.data.global_batch_size, c.optimizer.grad_accum_steps = TARGETS[hw]
    c.eval.batch_size = TARGETS[hw][0]
    if "smoke" in flags:
        m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = 512, 64, 2, 4, 128
        m.max_length, m.dtype, m.remat_policy = 128, "float32", "none"
        c.diffusion.mask_id = 511
        c.data.seq_len = 64
        shrink_for_smoke(c)
    return lock(c)
