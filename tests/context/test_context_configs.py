"""Every configs/context file loads, declares only base keys and names a known experiment."""

import pathlib
import runpy

import ml_collections as mlc
import pytest

from mdlm_jax.config_base import base_config
from mdlm_jax.context import experiments

FOLDER = pathlib.Path(__file__).resolve().parents[2] / "configs" / "context"
FILES = sorted(p for p in FOLDER.glob("*.py") if p.stem != "suite")


def _keys(c, prefix=""):
    for k, v in c.items():
        if isinstance(v, mlc.ConfigDict) and f"{prefix}{k}" != "loss.terms":
            yield from _keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_one_config_per_experiment():
    assert {p.stem for p in FILES} == set(experiments.EXPERIMENTS)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("arg", [None, "model=llada_base,path=/models/x,points=3"])
def test_config_loads(path, arg):
    c = runpy.run_path(str(path))["get_config"](arg)
    assert set(_keys(c)) == set(_keys(base_config()))
    assert c.context.experiment == path.stem
    assert experiments.get(c.context.experiment).points(c.context)
    with pytest.raises(ValueError, match="unknown model='gpt9'; valid: quickstart"):
        runpy.run_path(str(path))["get_config"]("model=gpt9")
