"""Loading a usable model from a workdir (``model_loading``), apart from checkpoint I/O."""

import pytest

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model_loading


def test_the_sample_scorer_must_be_a_causal_ar_run(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        model_loading.load_ar_scorer(str(tmp_path / "nothing"))
    ckpt.write_config(str(tmp_path / "mdlm"), tiny_config())  # a diffusion (nelbo) run
    with pytest.raises(ValueError, match="is not a causal ar_nll run"):
        model_loading.load_ar_scorer(str(tmp_path / "mdlm"))


def test_a_workdir_without_checkpoints_names_the_train_command(tiny_config, tmp_path):
    work = str(tmp_path / "w")
    ckpt.write_config(work, tiny_config())
    with pytest.raises(FileNotFoundError, match="train first: python -m mdlm_jax.main train"):
        model_loading.load_model(work)


def test_no_lora_no_transform(tiny_config):
    assert model_loading.lora_transform(tiny_config()) is None
    assert model_loading.lora_transform(tiny_config(lora__rank=2)) is not None
