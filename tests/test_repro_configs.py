"""configs/repro: every arm at every size loads, declares only base keys, builds its model,
names its parent workdir, and the pair it compares is matched."""

import pathlib
import runpy

import pytest
from conftest import flat_config_keys

from mdlm_jax import model, monitoring
from mdlm_jax.checkpoint.integrity import PARAM_LAYOUT_KEYS
from mdlm_jax.config_base import base_config

FOLDER = pathlib.Path(__file__).resolve().parents[1] / "configs" / "repro"
ARMS = ("mdlm", "ar", "mdlm_ma", "mdlm_ce", "mdlm_from_ar")
PARENT = {"mdlm_ma": "mdlm", "mdlm_ce": "mdlm", "mdlm_from_ar": "ar"}


def load(arm, arg=None):
    return runpy.run_path(str(FOLDER / f"{arm}.py"))["get_config"](arg)


def test_every_arm_has_a_config():
    assert {p.stem for p in FOLDER.glob("*.py")} == set(ARMS) | {"common"}


@pytest.mark.parametrize("size", ["cpu", "gpu", "smoke"])
@pytest.mark.parametrize("arm", ARMS)
def test_arm_loads_and_names_its_parent(arm, size):
    c = load(arm, size)
    assert set(flat_config_keys(c)) == set(flat_config_keys(base_config()))
    assert c.data.seq_len <= c.model.max_length
    _, shapes, _ = model.abstract(c.model)
    assert model.count_params(shapes) > 0
    want = f"runs/repro_{size}/{PARENT[arm]}" if arm in PARENT else ""
    assert c.checkpoint.restore_from == want
    if arm in PARENT:
        assert load(arm, f"{size},from=/tmp/x").checkpoint.restore_from == "/tmp/x"
    assert c.data.name == ("prompt_answer" if arm in ("mdlm_ma", "mdlm_ce")
                           else "context_tasks")


def test_pair_is_matched_and_the_from_ar_arm_reads_the_ar_weights():
    for size in ("cpu", "gpu"):
        md, ar, fa = load("mdlm", size), load("ar", size), load("mdlm_from_ar", size)
        for key in PARAM_LAYOUT_KEYS:
            group, name = key.split(".")
            assert md[group][name] == ar[group][name] == fa[group][name], key
        assert md.data == ar.data and md.train.num_steps == ar.train.num_steps
        assert ar.model.causal and not md.model.causal and fa.model.logit_shift
        assert md.diffusion.schedule == "linear" and not md.model.time_conditioning
        ce, ma = load("mdlm_ce", size), load("mdlm_ma", size)
        assert ma.loss.mask_agnostic.beta == 1.0 and ce.loss.mask_agnostic.beta == 0.0
        assert ma.data.context_tasks == md.data.context_tasks


def test_gpu_size_matches_its_documented_flops():
    c = load("mdlm", "gpu")
    _, shapes, _ = model.abstract(c.model)
    n = model.count_params(shapes)
    fpt = monitoring.flops_per_token(c.model, n, c.data.seq_len)
    assert 2.0e8 < fpt < 2.1e8  # configs/repro/common.py: 2.05e8 FLOPs per token


@pytest.mark.parametrize("arg,match", [
    ("cpu,gpu", "choose one size"), ("tpu", "unknown config args"),
    ("cpu,from=x", "unknown config args")])
def test_bad_args_are_one_clear_line(arg, match):
    with pytest.raises(ValueError, match=match):
        load("mdlm", arg)
