"""The named quickstart recipes of bench/quickstart_recipes.py are valid configs, and the
shipped recipe is one of them."""

import importlib.util
import os

import pytest
from conftest import flat_config_keys, load_config

from mdlm_jax.checks import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recipes_module():
    spec = importlib.util.spec_from_file_location(
        "quickstart_recipes", os.path.join(ROOT, "bench", "quickstart_recipes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CANDIDATES = _recipes_module().CANDIDATES


def _parse(default, text: str):
    if isinstance(default, bool):
        assert text in ("True", "False"), text
        return text == "True"
    return type(default)(text)


def _apply(config, overrides):
    keys = set(flat_config_keys(config))
    for item in overrides:
        key, text = item.split("=", 1)
        assert key in keys, f"{key} is not a config key"
        *path, leaf = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = _parse(node[leaf], text)
    return config


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_candidate_is_a_valid_config(name):
    overrides = CANDIDATES[name]
    keys = [o.split("=", 1)[0] for o in overrides]
    assert len(keys) == len(set(keys)), f"{name} sets a key twice"
    validate_config(_apply(load_config("quickstart"), overrides))


def test_shipped_recipe_is_the_bpe_candidate():
    shipped = load_config("quickstart")
    candidate = _apply(load_config("quickstart"), CANDIDATES["BPE2048_L32_B128"])
    assert candidate.to_dict() == shipped.to_dict()
    different = _apply(load_config("quickstart"), CANDIDATES["L32_B128_cos"])
    assert different.to_dict() != shipped.to_dict()
