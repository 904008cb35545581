"""A config that names a model directory takes from it what the directory defines.

Tiny directories laid out as the published LLaDA-8B-Base, Dream-v0-Base-7B, Llama-3-8B
and Qwen2.5-7B checkpoints (``test_hf_fixtures.write_published_dir``), given to the
recipes as shipped with only the directory and the data (plus the step counts, sizes and
CPU settings a laptop run needs, none of them a directory value): the LLaDA-Base
mask-agnostic recipe trains two steps; the Instruct one resolves and reads its data through
the directory's tokenizer and chat template; ``quickstart_from_ar`` trains from Llama-3
(an appended mask row) and loads Qwen2.5 (a spare row); ``convert`` takes all five
families (MDLM too). Training every pair would cost minutes of CI time for the same code.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import test_hf_fixtures as fx
from conftest import REPO, load_config, run_captured

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model_loading, sample
from mdlm_jax.checkpoint import hf
from mdlm_jax.checkpoint.hf_config import configure_from_directory
from mdlm_jax.config_base import base_config
from mdlm_jax.data import tokenizers

FAMILIES = ("llada", "dream", "llama", "qwen2")
# What a laptop run changes (steps, sizes of the work, float32 and XLA attention on CPU);
# none of it is something the directory defines.
CPU_RUN = {"train.num_steps": 2, "optimizer.grad_accum_steps": 2, "eval.num_batches": 1,
           "model.attention_impl": "xla", "train.progress_bar": False}
LLADA_CPU_RUN = {**CPU_RUN, "data.seq_len": 128, "model.dtype": "float32",
                 "model.param_dtype": "float32", "model.remat_policy": "none",
                 "loss.mask_agnostic.max_masks": 32, "loss.mask_agnostic.curriculum_start": 4,
                 "loss.mask_agnostic.probe_mask_counts": (0, 8)}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    out = {fam: fx.write_published_dir(root / fam, fam, seed=i)
           for i, fam in enumerate(FAMILIES)}
    out["mdlm"] = str(root / "mdlm")
    fx.save_st(out["mdlm"], fx.mdlm_tensors())
    fx.write_json(os.path.join(out["mdlm"], "config.json"), fx.mdlm_config())
    rng = np.random.RandomState(0)
    rows = []
    for _ in range(200):  # OpenOrca layout; every 100th line is validation
        words = lambda n: " ".join(f"w{i}" for i in rng.randint(1, 40, n))  # noqa: E731
        rows.append({"system_prompt": words(3), "question": words(12), "response": words(6)})
    data = root / "openorca"
    data.mkdir()
    with open(data / "part0.jsonl", "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    out["data"] = str(data / "*.jsonl")
    return out


def resolved(name, arg, explicit):
    """``configs/<name>.py:arg`` with ``--config.KEY=VALUE`` overrides, as main resolves it."""
    config = load_config(name, arg)
    for key, value in explicit.items():
        *groups, leaf = key.split(".")
        node = config
        for g in groups:
            node = node[g]
        node[leaf] = value
    configure_from_directory(config, explicit=explicit)
    return config


# ------------------------------------------------------------- resolution
@pytest.mark.parametrize("fam,mask,eos,vocab,kv", [
    ("llada", 54, 49, fx.V, fx.H), ("dream", 58, 48, fx.V, fx.KV),
    ("qwen2", 60, 48, fx.V, fx.KV),  # as_diffusion: the first spare row
    ("llama", fx.V, 49, fx.V + 1, 1)])  # as_diffusion: an appended mask row
def test_directory_defines_model_ids_and_tokenizer(published, fam, mask, eos, vocab, kv):
    config = base_config()  # a DiT with the char tokenizer and mask 257: all replaced
    info = configure_from_directory(config, published[fam])
    m = config.model
    assert (m.family, m.d_model, m.n_layers, m.n_heads, m.n_kv_heads, m.mlp_dim) == (
        "llama", fx.D, fx.NL, fx.H, kv, fx.F)
    assert (m.vocab_size, config.diffusion.mask_id) == (vocab, mask)
    assert config.data.eos_id == eos
    assert sample.settings(config).eos_id == eos  # sampler.eos_id -1: the data's EOS
    assert config.data.tokenizer == "hf" and config.data.tokenizer_path == info.tokenizer_file
    assert m.init_from == os.path.abspath(published[fam])
    published_cfg = fx.published_config(fam)
    assert m.rope_theta == published_cfg["rope_theta"]
    assert m.norm_eps == published_cfg["rms_norm_eps"]
    assert not m.causal and m.logit_shift == (fam != "llada")
    assert m.qkv_bias == (fam in ("dream", "qwen2")) and not m.tie_embeddings
    assert m.max_length == published_cfg.get("max_sequence_length",
                                             published_cfg.get("max_position_embeddings"))
    from mdlm_jax.checks import check_tokenizer

    tok = check_tokenizer(config)  # the tokenizer's own mask token is no collision
    assert tok.eos_id == eos and tok.decode([mask]) == "▒"


def test_equivalent_spellings_never_conflict(published):
    path = published["llada"]
    explicit = {"model.n_kv_heads": 0, "model.head_dim": 0, "model.rope_theta": 500000,
                "model.norm_eps": 1e-5, "model.family": "llama", "diffusion.mask_id": 54,
                "data.tokenizer_path": path, "model.rope_scaling": "none"}
    for value in (0, fx.H):
        explicit["model.n_kv_heads"] = value
        config = base_config()
        configure_from_directory(config, path, explicit=explicit)
        assert config.model.n_kv_heads == fx.H and config.model.head_dim == 0
    config = base_config()
    configure_from_directory(config, path, explicit={"model.head_dim": fx.D // fx.H})
    assert hf.init_params_from(config)["embed"].shape == (fx.V, fx.D)


def test_a_contradicting_override_names_both_values(published):
    path = published["llada"]
    with pytest.raises(ValueError) as e:
        configure_from_directory(base_config(), path, explicit={
            "model.n_kv_heads": 2, "model.d_model": 4096, "data.eos_id": 126081,
            "optimizer.learning_rate": 1.0})
    msg = str(e.value)
    assert "--config.model.n_kv_heads=2 but" in msg and "has n_kv_heads=4" in msg
    assert "--config.model.d_model=4096" in msg and "d_model=32" in msg
    assert "eos_id=126081" in msg and "eos_id=49" in msg and "learning_rate" not in msg
    assert "\n" not in msg and "apply_to_config" not in msg and "()" not in msg


def test_unfilled_config_is_refused_without_naming_a_function(published):
    config = base_config()
    config.model.init_from = published["llada"]
    with pytest.raises(ValueError, match=r"config.model.family='dit' but .* has 'llama'") as e:
        hf.init_params_from(config)
    assert "apply_to_config" not in str(e.value)


# ------------------------------------------------------- recipes as shipped
def llada_arg(published, variant):
    return f"{variant},path={published['llada']},data={published['data']}"


def test_llada_base_mask_agnostic_recipe_runs_as_shipped(published, tmp_path):
    config = resolved("llada_8b_base_ma", llada_arg(published, "ce_tv"), LLADA_CPU_RUN)
    assert config.lora.rank == 64 and config.loss.mask_agnostic.beta == 1.0  # the recipe's
    summary, console = run_captured(config, tmp_path / "run")
    assert summary["end_step"] == 2 and all(np.isfinite(loss) for _, loss in summary["losses"])
    assert {"tv_mean", "ce@0", "ce@8"} <= set(summary["invariance"])
    assert "invariance before training" in console


def test_llada_instruct_recipe_reads_its_data_with_the_directory_tokenizer(published):
    from mdlm_jax.checks import validate_config
    from mdlm_jax.data import pipeline

    config = resolved("llada_8b_instruct_ma", llada_arg(published, "ce"), LLADA_CPU_RUN)
    validate_config(config)
    batch = next(pipeline.make_iterator(config.data, "train", global_batch_size=3, seed=0))
    tokens, answer = batch["tokens"], batch["answer_mask"]
    specials = {v: k for k, v in fx.PUBLISHED_SPECIALS["llada"].items()}
    assert (tokens[:, 0] == specials["<|startoftext|>"]).all()  # the chat template's BOS
    for row, ans in zip(tokens, answer):
        end = np.flatnonzero(ans)[-1]
        assert row[end] == specials["<|eot_id|>"]  # the answer closes its turn
        assert (row[end + 1:] == specials["<|endoftext|>"]).all()  # EOS padding, id 49
    assert tokenizers.eos_id(config.data) == specials["<|endoftext|>"]


def test_quickstart_from_ar_runs_as_shipped(published, tmp_path):
    config = resolved("quickstart_from_ar", published["llama"],
                      {**CPU_RUN, "train.sample_at_end": False, "eval.batch_size": 8,
                       "data.global_batch_size": 8})
    assert config.model.vocab_size == fx.V + 1  # Llama-3 has no spare row: one appended
    summary, _ = run_captured(config, tmp_path / "run")
    assert summary["end_step"] == 2 and np.isfinite(summary["eval"]["nats_per_token"])


def test_quickstart_from_ar_takes_a_spare_row_of_qwen2(published):
    config = resolved("quickstart_from_ar", published["qwen2"], {})
    assert (config.model.vocab_size, config.diffusion.mask_id) == (fx.V, 60)
    assert config.model.qkv_bias and config.model.rope_theta == 1e6
    params = hf.init_params_from(config)
    assert params["blocks"]["attn"]["q"]["bias"].shape == (fx.NL, fx.H, fx.D // fx.H)


@pytest.mark.parametrize("fam", FAMILIES + ("mdlm",))
def test_convert_each_published_directory(published, tmp_path, fam):
    from mdlm_jax import convert

    workdir = str(tmp_path / "work")
    convert.run(published[fam], workdir)
    stored = ckpt.read_config(workdir)
    info = hf.inspect(published[fam])
    assert stored.diffusion.mask_id == (info.mask_id if info.mask_id is not None else 257)
    assert stored.model.n_kv_heads == info.model_fields["n_kv_heads"]
    if fam != "mdlm":
        assert stored.data.tokenizer == "hf" and stored.data.eos_id == \
            hf.tokenizer(published[fam]).eos_id
    _, params, step = model_loading.load_model(workdir, use_ema=False)
    assert step == 0 and params["embed"].shape == (info.file_vocab, fx.D)


def test_command_line_contradiction_is_one_line_and_writes_nothing(published, tmp_path):
    workdir = tmp_path / "run"
    arg = f"ce_tv,path={published['llada']},data={published['data']}"
    proc = subprocess.run(
        [sys.executable, "-m", "mdlm_jax.main", "train", "--workdir", str(workdir),
         f"--config={REPO / 'configs' / 'llada_8b_base_ma.py'}:{arg}",
         "--config.model.n_kv_heads=3", "--config.model.n_heads=32"],
        cwd=str(REPO), capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[0]
    assert line.startswith("error: --config.model.n_kv_heads=3 but "), proc.stderr[-2000:]
    assert "n_kv_heads=4" in line and "--config.model.n_heads=32" in line and "n_heads=4" in line
    assert not workdir.exists()
