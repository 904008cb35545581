"""A catalogue of bad config values: each is refused when the config loads, in one line.

Every case is ``(config, overrides, expected error)``: the config file (and arg), the
``--config.key=value`` overrides a user might type, and a regex of the one-line error
``checks.validate_config`` raises (``mdlm_jax.main`` prints it as ``error: ...``). None of
them may reach a ZeroDivisionError, an AttributeError or a JAX shape error later.
"""

import math
import os

import pytest

from mdlm_jax.checks import validate_config
from mdlm_jax.config_base import load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QS, MA = "quickstart.py:smoke", "quickstart_ma.py:smoke"

CATALOGUE = [
    # sizes
    (QS, {"model.d_model": 0}, r"model.d_model=0 must be a finite number > 0"),
    (QS, {"model.n_layers": -1}, r"model.n_layers=-1 must be"),
    (QS, {"model.norm_eps": 0.0}, r"model.norm_eps=0.0 must be"),
    (QS, {"model.head_dim": -2}, r"model.head_dim=-2 must be >= 0"),
    (QS, {"data.global_batch_size": 0}, r"data.global_batch_size=0 must be .* >= 1"),
    (QS, {"data.seq_len": 1}, r"data.seq_len=1 must be .* >= 2"),
    (QS, {"data.num_workers": -1}, r"data.num_workers=-1"),
    (QS, {"eval.batch_size": 0}, r"eval.batch_size=0"),
    (QS, {"eval.mc_samples": 0}, r"eval.mc_samples=0"),
    (QS, {"sampler.batch_size": 0}, r"sampler.batch_size=0"),
    (QS, {"lora.rank": -1}, r"lora.rank=-1"),
    # optimizer
    (QS, {"optimizer.learning_rate": 0.0}, r"optimizer.learning_rate=0.0 must be .* > 0"),
    (QS, {"optimizer.learning_rate": -1e-3}, r"optimizer.learning_rate=-0.001"),
    (QS, {"optimizer.learning_rate": math.nan}, r"optimizer.learning_rate=nan must be a finite"),
    (QS, {"optimizer.learning_rate": math.inf}, r"optimizer.learning_rate=inf must be a finite"),
    (QS, {"optimizer.b2": 1.0}, r"optimizer.b2=1.0 must be .* in \[0, 1\)"),
    (QS, {"optimizer.ema_decay": 1.0}, r"optimizer.ema_decay=1.0"),
    (QS, {"optimizer.min_lr_ratio": 2.0}, r"optimizer.min_lr_ratio=2.0"),
    (QS, {"optimizer.grad_clip": -1.0}, r"optimizer.grad_clip=-1.0"),
    (QS, {"optimizer.grad_accum_steps": 0}, r"optimizer.grad_accum_steps=0"),
    (QS, {"optimizer.decay": "exp"}, r"optimizer.decay='exp' is unknown; use one of"),
    # intervals: > 0, except train.eval_every where 0 means never during training
    (QS, {"train.log_every": 0}, r"train.log_every=0 must be .* >= 1"),
    (QS, {"checkpoint.every_steps": 0}, r"checkpoint.every_steps=0 must be .* >= 1"),
    (QS, {"train.eval_every": -5}, r"train.eval_every=-5 must be .* >= 0"),
    (QS, {"train.num_steps": 0}, r"train.num_steps=0"),
    # loss
    (QS, {"loss.terms": {"nelbo": -1.0}}, r"loss.terms\['nelbo'\]=-1.0 must be a finite weight"),
    (QS, {"loss.terms": {"nelbo": math.nan}}, r"loss.terms\['nelbo'\]=nan"),
    (QS, {"loss.terms": {"elbo": 1.0}}, r"unknown loss term 'elbo'"),
    (QS, {"loss.normalize": "batch"}, r"loss.normalize='batch' is unknown"),
    (MA, {"loss.mask_agnostic.beta": -1.0}, r"loss.mask_agnostic.beta=-1.0 must be >= 0"),
    (MA, {"loss.mask_agnostic.p_low": 0.0}, r"0 < p_low <= p_high <= 1"),
    (MA, {"loss.mask_agnostic.stop_gradient_branch": "both"}, r"stop_gradient_branch='both'"),
    (MA, {"loss.mask_agnostic.probe_mask_counts": (0, -8)}, r"probe_mask_counts=\(0, -8\)"),
    # enums
    (QS, {"model.attention_impl": "flash"}, r"model.attention_impl='flash' is unknown"),
    (QS, {"model.remat_policy": "dots"}, r"model.remat_policy='dots' is unknown"),
    (QS, {"model.rope_scaling": "yarn"}, r"model.rope_scaling='yarn' is unknown"),
    (QS, {"model.dtype": "float8"}, r"float8"),
    (QS, {"diffusion.schedule": "sqrt"}, r"unknown schedule 'sqrt'"),
    (QS, {"diffusion.time_eps": 1.0}, r"diffusion.time_eps=1.0"),
    (QS, {"data.packing": "concat"}, r"data.packing='concat' is unknown"),
    (QS, {"data.tokenizer": "sentencepiece"}, r"data.tokenizer='sentencepiece' is unknown"),
    (QS, {"data.name": "wikitext"}, r"data.name='wikitext' is unknown"),
    (QS, {"data.chat_template": "chatml"}, r"data.chat_template='chatml' is unknown"),
    # sampler
    (QS, {"sampler.strategy": "greedy"}, r"sampler.strategy='greedy' is unknown"),
    (QS, {"sampler.strategy": "confidence", "sampler.block_length": 8, "sampler.steps": 7},
     r"sampler.steps=7 is not a multiple of the number of blocks 4"),
    (QS, {"sampler.strategy": "confidence", "sampler.block_length": 48},
     r"sampler.block_length=48 does not divide sampler.gen_length=32"),
    (QS, {"sampler.strategy": "threshold", "sampler.threshold": 0.0},
     r"sampler.threshold=0.0 must be in \(0, 1\]"),
    (QS, {"sampler.strategy": "threshold", "sampler.threshold": 1.5}, r"sampler.threshold=1.5"),
    (QS, {"sampler.top_p": 0.0}, r"sampler.top_p=0.0 must be in \(0, 1\]"),
    (QS, {"sampler.top_k": -1}, r"sampler.top_k=-1"),
    (QS, {"sampler.temperature": -1.0}, r"sampler.temperature=-1.0 must be >= 0"),
    (QS, {"sampler.steps": 0}, r"sampler.steps=0 must be >= 1"),
    (QS, {"sampler.gen_length": 512}, r"exceeds model.max_length=256"),
    (QS, {"sampler.remasking": "topk"}, r"sampler.remasking='topk' is unknown"),
    (QS, {"sampler.time_grid": "log"}, r"sampler.time_grid='log' is unknown"),
    (QS, {"sampler.kv_cache": "full", "sampler.strategy": "confidence"},
     r"sampler.kv_cache='full' is unknown"),
    (QS, {"model.family": "dit", "sampler.kv_cache": "dual", "sampler.strategy": "confidence"},
     r"supports the bidirectional llama family"),
    (QS, {"sampler.mask_in_softmax": "maybe"}, r"sampler.mask_in_softmax='maybe' is unknown"),
    (QS, {"sampler.eos_id": -2}, r"sampler.eos_id=-2"),
    (QS, {"data.eos_id": 5}, r"data.eos_id=5 differs from the tokenizer's EOS id 0; drop"),
    (QS, {"data.tokenizer": "gpt2"},
     r"the 'gpt2' tokenizer emits 50257 ids but model.vocab_size=2049; raise"),
    # fine-tuning every weight is a choice
    (MA, {"lora.rank": 0},
     r"starts from runs/quickstart with lora.rank=0, which trains every weight: set "
     r"--config.lora.rank=8 \(LoRA\) or --config.lora.full_finetune=True"),
    (MA, {"lora.full_finetune": True}, r"lora.full_finetune=True with lora.rank=8: choose one"),
    (QS, {"lora.full_finetune": True}, r"lora.full_finetune=True but nothing to fine-tune"),
]


def load(name):
    path, _, arg = name.partition(":")
    return load_config_file(os.path.join(ROOT, "configs", path), arg or None)


@pytest.mark.parametrize("name,overrides,error", CATALOGUE,
                         ids=[",".join(f"{k}={v}" for k, v in c[1].items()) for c in CATALOGUE])
def test_bad_value_is_one_line_at_load_time(name, overrides, error):
    config = load(name)
    for key, value in overrides.items():
        group, _, leaf = key.rpartition(".")
        node = config
        for part in group.split("."):
            node = node[part]
        node[leaf] = value
    with pytest.raises(ValueError, match=error) as e:
        validate_config(config)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", [QS, MA, "quickstart_ma.py:smoke,full",
                                  "llada_8b_base_ma.py:smoke"])
def test_shipped_configs_validate(name):
    validate_config(load(name))


@pytest.mark.parametrize("command,override,error", [
    ("train", "--config.train.log_every=0", "error: train.log_every=0 must be"),
    ("sample", "--config.sampler.top_p=0", "error: sampler.top_p=0.0 must be in (0, 1]"),
])
def test_commands_print_one_line_and_leave_no_workdir(tmp_path, command, override, error):
    import subprocess
    import sys

    workdir = tmp_path / "w"
    r = subprocess.run([sys.executable, "-m", "mdlm_jax.main", command, "--config",
                        "configs/quickstart.py:smoke", "--workdir", str(workdir), override],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(error), r.stderr
    assert "Traceback" not in r.stderr
    assert not workdir.exists()
