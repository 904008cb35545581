"""Bad HF directories and exports fail with one clear line, writing nothing."""

import json
import os

import numpy as np
import pytest
import test_hf_fixtures as fx

from mdlm_jax.checkpoint import hf


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value), str(excinfo.value)
    return str(excinfo.value)


def _mdlm_dir(folder, tensors=None, config=None):
    fx.save_st(str(folder), fx.mdlm_tensors() if tensors is None else tensors)
    fx.write_json(os.path.join(folder, "config.json"), config or fx.mdlm_config())
    return str(folder)


def test_missing_config_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        hf.load(str(tmp_path))
    assert "config.json" in _one_line(e)
    fx.write_json(tmp_path / "config.json", fx.mdlm_config())
    with pytest.raises(FileNotFoundError) as e:
        hf.load(str(tmp_path))
    assert "has no weights" in _one_line(e)


def test_index_naming_a_missing_shard(tmp_path):
    folder = _mdlm_dir(tmp_path)
    os.rename(os.path.join(folder, "model.safetensors"),
              os.path.join(folder, "model-00001-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in fx.mdlm_tensors()}
    weight_map["backbone.blocks.1.mlp.0.bias"] = "model-00002-of-00002.safetensors"
    fx.write_json(os.path.join(folder, "model.safetensors.index.json"),
                  {"weight_map": weight_map})
    with pytest.raises(FileNotFoundError) as e:
        hf.load(folder)
    assert "model-00002-of-00002.safetensors" in _one_line(e)


def test_unknown_family_names_the_supported_ones(tmp_path):
    folder = _mdlm_dir(tmp_path, config={"model_type": "gpt2", "n_embd": 32})
    with pytest.raises(ValueError) as e:
        hf.load(folder)
    msg = _one_line(e)
    assert "gpt2" in msg and all(f in msg for f in hf.FAMILIES)
    with pytest.raises(ValueError, match="unknown family 'bert'"):
        hf.load(folder, family="bert")


def test_wrong_shape_names_tensor_and_both_shapes(tmp_path):
    t = fx.mdlm_tensors()
    t["backbone.blocks.1.attn_out.weight"] = np.zeros((fx.D, fx.D + 2), np.float32)
    with pytest.raises(ValueError) as e:
        hf.load(_mdlm_dir(tmp_path, t))
    msg = _one_line(e)
    assert "backbone.blocks.1.attn_out.weight" in msg
    assert f"[{fx.D}, {fx.D + 2}]" in msg and f"[{fx.D}, {fx.D}]" in msg


def test_missing_and_extra_tensors_are_named(tmp_path):
    t = fx.mdlm_tensors()
    del t["backbone.blocks.0.mlp.2.bias"]
    with pytest.raises(ValueError) as e:
        hf.load(_mdlm_dir(tmp_path / "a", t))
    assert "missing tensor(s)" in _one_line(e) and "backbone.blocks.0.mlp.2.bias" in str(e.value)
    t = fx.mdlm_tensors()
    t["backbone.blocks.0.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as e:
        hf.load(_mdlm_dir(tmp_path / "b", t))
    assert "unexpected tensor(s)" in _one_line(e) and "blocks.0.extra.weight" in str(e.value)


def test_tokenizer_larger_than_embedding(tmp_path):
    folder = _mdlm_dir(tmp_path)
    fx.write_tokenizer(folder, fx.V + 6)
    with pytest.raises(ValueError) as e:
        hf.load(folder)
    assert f"({fx.V + 6}) is larger than the embedding ({fx.V} rows)" in _one_line(e)


def test_diffusion_family_without_mask_id(tmp_path):
    import torch  # noqa: F401  (fixtures build the weights with transformers)

    sd = fx.state_dict_np(fx.torch_model("qwen2"))
    fx.save_st(str(tmp_path), sd)
    fx.write_json(tmp_path / "config.json", fx.dream_config(mask_id=None))
    with pytest.raises(ValueError) as e:
        hf.inspect(str(tmp_path))
    assert "without a known mask id" in _one_line(e)


def test_export_refuses_non_empty_dir_and_bad_family(tmp_path):
    folder = _mdlm_dir(tmp_path / "src")
    cfg, params, _ = hf.load(folder)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError) as e:
        hf.export(params, cfg, out, family="mdlm", like=folder)
    assert "not empty" in _one_line(e) and os.listdir(out) == ["keep.txt"]
    with pytest.raises(ValueError) as e:
        hf.export(params, cfg, tmp_path / "new", family="llada", like=folder)
    assert "model.family='llama'" in _one_line(e) and not (tmp_path / "new").exists()
    hf.export(params, cfg, out, family="mdlm", like=folder, overwrite=True)
    with open(out / "config.json") as f:
        assert json.load(f)["model_type"] == "mdlm"
