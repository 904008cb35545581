"""Adapt an autoregressive checkpoint into an MDLM (the Dream recipe) on the quickstart data.

The AR model's weights are loaded into the bidirectional model with the one-position
logit shift (logits at i predict token i+1 and are shifted back, so position i scores
token i), and the diffusion loss continues training from them. The argument is a HF-format
directory (Llama / Qwen2 layout), e.g. a quickstart AR baseline exported with
``checkpoint.hf.export(params, model_cfg, DIR, family="llama")``:

    python -m mdlm_jax.main train --config configs/quickstart_from_ar.py:/path/to/exported_ar \
        --workdir runs/quickstart_from_ar

The directory is the truth: model shape, mask id, EOS id and tokenizer come from it when
the command starts (``checkpoint.hf_config.configure_from_directory``, adapting the causal
model since the loss is the diffusion NELBO): with no spare id in the vocabulary a mask row
is appended (257 for a byte-level vocabulary of 256 bytes + EOS: unlike the quickstart,
which is on ``kjv_bpe`` tokens, this recipe stays on the char tokenizer). This file
states only the recipe: optimizer, schedule, data and sequence length. Without an argument
the config describes a quickstart-sized model so it can be inspected and built on its own.
"""

import os

from mdlm_jax.config_base import lock, sibling_config


def get_config(arg=None):
    c = sibling_config(__file__, "quickstart.py")
    m = c.model
    m.family = "llama"
    m.causal = False
    m.logit_shift = True  # AR-initialised: keep the next-token alignment, shifted back
    m.time_conditioning = False
    m.vocab_size = 258  # 256 bytes + EOS + the appended mask row
    m.n_kv_heads = 0
    m.mlp_dim = 4 * m.d_model
    c.diffusion.mask_id = 257
    c.data.tokenizer = "char"  # the byte-level AR baselines this recipe adapts
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 20
    c.train.num_steps = 300
    if arg:
        if not os.path.isfile(os.path.join(arg, "config.json")):
            raise FileNotFoundError(f"{arg} has no config.json: pass a HF-format directory "
                                    "(configs/quickstart_from_ar.py:/path/to/exported_ar)")
        m.init_from = arg
        c.lora.full_finetune = True  # adapting the AR model trains every weight
    return lock(c)
