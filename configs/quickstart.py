"""The embedded default: a tiny MDLM trained, evaluated and sampled on CPU in minutes.

    python -m mdlm_jax.main train --config configs/quickstart.py --workdir runs/quickstart
"""

from mdlm_jax.config_base import base_config, lock, parse_arg, shrink_for_smoke


def get_config(arg=None):
    c = base_config()
    c.model.family = "dit"
    c.model.vocab_size = 258  # 256 bytes + EOS + mask
    c.model.d_model = 128
    c.model.n_layers = 4
    c.model.n_heads = 4
    c.model.mlp_dim = 512
    c.model.cond_dim = 128
    c.model.max_length = 256
    c.diffusion.mask_id = 257
    c.data.name = "embedded"
    c.data.tokenizer = "char"
    c.data.seq_len = 128
    c.data.global_batch_size = 32
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 50
    c.optimizer.ema_decay = 0.99
    c.train.num_steps = 300
    c.train.log_every = 50
    c.checkpoint.every_steps = 100
    c.eval.batch_size = 32
    c.eval.num_batches = 4
    c.sampler.gen_length = 128
    c.sampler.block_length = 32
    c.sampler.steps = 64
    flags, _ = parse_arg(arg, config_name="quickstart", flags=("smoke",))
    if "smoke" in flags:
        c.data.global_batch_size = 32
        shrink_for_smoke(c)
    return lock(c)
