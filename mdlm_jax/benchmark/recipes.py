"""Recipe configs: one published evaluation setting per task, as a locked config.

A recipe file in ``configs/benchmarks/`` holds ``TASKS`` (task key -> settings) and calls
:func:`recipe_config`; its first config argument picks the task and ``path=DIR`` names the
model, e.g. ``configs/benchmarks/llada_8b_base.py:gsm8k,path=/models/LLaDA-8B-Base``.
Settings name fields of ``config.sampler`` or ``config.benchmark``.
"""

from __future__ import annotations

from mdlm_jax.config_base import base_config, lock, parse_arg


def recipe_config(tasks: dict, arg, *, name: str, source: str):
    """The locked config of the task chosen by ``arg`` (its first flag)."""
    flags, values = parse_arg(arg, config_name=name, flags=tuple(tasks), keys=("path",))
    if len(flags) != 1:
        raise ValueError(f"{name}: name one task as the config argument ({name}.py:TASK); "
                         f"tasks: {', '.join(tasks)}")
    (task,) = flags
    c = base_config()
    c.benchmark.source = source
    c.benchmark.path = values.get("path", "")
    for key, value in tasks[task].items():
        group = "benchmark" if key in c.benchmark else "sampler"
        if key not in c[group]:
            raise ValueError(f"{name}:{task}: {key!r} is not a benchmark or sampler setting")
        c[group][key] = value
    return lock(c)
