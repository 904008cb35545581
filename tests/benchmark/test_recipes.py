"""Every benchmark recipe loads for every task, with valid sampler settings and a source."""

from __future__ import annotations

import pytest
from conftest import CONFIGS

from mdlm_jax.config_base import load_config_file
from mdlm_jax.config_base import load_config_module as load_module
from mdlm_jax.diffusion import sampler

RECIPES = sorted((CONFIGS / "benchmarks").glob("*.py"))
CASES = [(p, t) for p in RECIPES for t in load_module(str(p)).TASKS]


def test_recipes_are_found():
    names = {p.stem for p in RECIPES}
    assert {"llada_8b_base", "llada_8b_instruct", "dream_7b",
            "fast_dllm_llada_instruct"} <= names


@pytest.mark.parametrize("path,task", CASES, ids=[f"{p.stem}:{t}" for p, t in CASES])
def test_recipe_loads_with_valid_settings(path, task):
    c = load_config_file(str(path), f"{task},path=/models/x")
    b = c.benchmark
    assert b.path == "/models/x" and b.tasks and b.source and b.published
    assert b.mc_samples % min(b.mc_batch_size, b.mc_samples) == 0
    with c.unlocked():
        c.model.max_length = 4096  # the 7-8B models' context
    sampler.Settings.from_config(c).validate(prompt_length=1000)
    doc = load_module(str(path)).__doc__ or ""
    assert f"configs/benchmarks/{path.stem}.py:" in doc  # the launch command


def test_recipe_needs_one_known_task():
    path = str(CONFIGS / "benchmarks" / "llada_8b_base.py")
    with pytest.raises(ValueError, match="unknown config args"):
        load_config_file(path, "gsm9k")
    with pytest.raises(ValueError, match="name one task"):
        load_config_file(path, None)
