"""The embedded default: a tiny MDLM trained, evaluated and sampled on CPU in minutes.

    python -m mdlm_jax.main train --config configs/quickstart.py --workdir runs/quickstart

LLaDA-style model (llama family: RMSNorm, SwiGLU, RoPE, no time conditioning), 4 layers of
width 128, on byte-level tokens of the embedded KJV excerpt, in batches of 128 sequences of
32 characters. The recipe was chosen by measurement (docs/BENCHMARKS.md, "Quickstart
recipe", both rounds): at the same steps, batches and masks the llama block reached a lower
loss than the DiT block; 128 x 32 left the unigram plateau sooner than 32 x 128 (same
tokens per step, cheaper attention) and ended lower (3.46 against 3.73 bits per character
after 400 steps); learning rate 3e-3 with a 20-step warm-up, cosine decay to 3e-4 and no
EMA (a short run gains nothing from averaging its early weights). At the same tokens, a
peak of 6e-3 decaying linearly to 0 with Adam b2 0.95 ended higher (3.56); with that
schedule, 64 x 32 in twice the steps ended no lower (3.46) at more CPU time, and 2 layers
in twice the steps higher (3.51). 400 steps fit the README command's 5 minutes on 2
cores; no measured recipe reaches 3.0 bits per character within them (the earlier DiT
recipe reached 2.94 after 1200 steps). The model has RoPE and no absolute positions, so it
runs on longer sequences than it was trained on: the samples are 128 characters, and
``quickstart_ma`` fine-tunes it at 256.
"""

from mdlm_jax.config_base import base_config, lock, parse_arg, shrink_for_smoke
from mdlm_jax.data.tokenizers import KJV_BPE_VOCAB


def get_config(arg=None):
    c = base_config()
    c.model.family = "llama"
    c.model.time_conditioning = False
    c.model.vocab_size = KJV_BPE_VOCAB + 1  # the kjv_bpe ids (EOS = 0) + the mask
    c.model.d_model = 128
    c.model.n_layers = 4
    c.model.n_heads = 4
    c.model.mlp_dim = 384  # SwiGLU: 3 x 128 x 384 weights per layer
    c.model.max_length = 256
    c.diffusion.mask_id = KJV_BPE_VOCAB
    c.data.name = "embedded"
    c.data.tokenizer = "kjv_bpe"
    c.data.seq_len = 32
    c.data.global_batch_size = 128
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 20
    c.optimizer.ema_decay = 0.0
    c.train.num_steps = 400
    c.train.log_every = 10
    c.checkpoint.every_steps = 100
    c.eval.batch_size = 32
    c.eval.num_batches = 16  # 16 x 32 x 32 = 16,384 validation tokens
    c.sampler.gen_length = 128
    c.sampler.block_length = 32
    c.sampler.steps = 64
    flags, _ = parse_arg(arg, config_name="quickstart", flags=("smoke",))
    if "smoke" in flags:
        c.data.global_batch_size = 32
        shrink_for_smoke(c)
    return lock(c)
