"""Every file in configs/ loads, declares only base keys, and its model builds abstractly.

Configs are found by globbing configs/*.py; the arguments a config's docstring documents
(``configs/NAME.py:ARG`` in a command line) are tried too, shell variables replaced.
"""

import ast
import re

import jax
import ml_collections as mlc
import pytest
from conftest import CONFIGS, flat_config_keys, load_config

from mdlm_jax import model, model_loading
from mdlm_jax.config_base import base_config
from mdlm_jax.model.transformer import validate_model_config

EXTRA_ARGS = {"quickstart": ["smoke"]}  # used by the README / smoke runs, not the docstring


def documented_args(path):
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    args = re.findall(rf"configs/{re.escape(path.stem)}\.py:([^\s\"'`\\]+)", doc)
    return sorted({re.sub(r"\$\{?\w+\}?", "/nonexistent", a) for a in args})


CASES = []
for _path in sorted(CONFIGS.glob("*.py")):
    CASES.append((_path.stem, None))
    for _arg in documented_args(_path) + EXTRA_ARGS.get(_path.stem, []):
        CASES.append((_path.stem, _arg))


def test_configs_are_found():
    names = {name for name, _ in CASES}
    assert "quickstart" in names and len(names) == len(list(CONFIGS.glob("*.py")))


@pytest.mark.parametrize("name,arg", CASES, ids=[f"{n}:{a}" if a else n for n, a in CASES])
def test_config_loads_and_its_model_builds_abstractly(name, arg):
    if arg and "/path/to/" in arg:  # a placeholder for a directory the user provides
        with pytest.raises(FileNotFoundError, match=re.escape(arg.split(",")[0])):
            load_config(name, arg)
        return
    cfg = load_config(name, arg)
    assert isinstance(cfg, mlc.ConfigDict)
    extra = set(flat_config_keys(cfg)) - set(flat_config_keys(base_config()))
    assert not extra, f"{name}: keys not declared in config_base: {sorted(extra)}"
    with pytest.raises((AttributeError, KeyError)):  # lock_config: typos cannot add keys
        cfg.model.d_modle = 1
    validate_model_config(cfg.model)
    assert cfg.data.seq_len <= cfg.model.max_length
    _, shapes, axes = model.abstract(cfg.model, transform=model_loading.lora_transform(cfg))
    n = model.count_params(shapes)
    assert n > 0
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(shapes))
    print(f"{name}{':' + arg if arg else ''}: {n:,} parameters")


def test_quickstart_smoke_is_smaller():
    full, smoke = load_config("quickstart"), load_config("quickstart", "smoke")
    assert smoke.train.num_steps < full.train.num_steps
    assert smoke.model.to_dict() == full.model.to_dict()
