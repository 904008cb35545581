"""Every configs/context file loads, declares only base keys and names a known experiment."""

import pathlib
import runpy

import pytest
from conftest import flat_config_keys

from mdlm_jax.config_base import base_config
from mdlm_jax.context import experiments

FOLDER = pathlib.Path(__file__).resolve().parents[2] / "configs" / "context"
FILES = sorted(p for p in FOLDER.glob("*.py") if p.stem != "suite")


def test_one_config_per_experiment():
    assert {p.stem for p in FILES} == set(experiments.EXPERIMENTS)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("arg", [None, "model=llada_base,path=/models/x,points=3"])
def test_config_loads(path, arg):
    c = runpy.run_path(str(path))["get_config"](arg)
    assert set(flat_config_keys(c)) == set(flat_config_keys(base_config()))
    assert c.context.experiment == path.stem
    assert experiments.get(c.context.experiment).points(c.context)
    with pytest.raises(ValueError, match="unknown model='gpt9'; valid: quickstart"):
        runpy.run_path(str(path))["get_config"]("model=gpt9")
