"""A config that names a Hugging Face model directory takes from it what the directory defines.

    info = configure_from_directory(config, path=None, *, explicit=None)

The directory is the truth for:

- ``config.model``: family, vocabulary, sizes, heads, head dim, MLP width, maximum length,
  RoPE (theta and Llama-3.1 scaling), norm eps, q/k/v biases, tied embeddings, attention
  direction and the Dream logit shift (``checkpoint.hf.inspect``);
- ``diffusion.mask_id``;
- ``data.tokenizer`` / ``data.tokenizer_path`` when it holds a ``tokenizer.json``;
- ``data.eos_id``: the EOS id of that tokenizer, which is also the id the data pipeline pads
  with (config.json's ``eos_token_id`` without one); the loss and the sampler read it there.

The recipe keeps everything else: dtypes, attention implementation, remat, LoRA,
optimizer, data, schedule, sequence length (checked against the directory's maximum by
``checks.validate_config``).

``explicit`` holds the values the user set on the command line (``--config.KEY=VALUE``;
``main.explicit_overrides()`` collects them): one that contradicts the directory is an
error naming both values. Equivalent spellings agree: ``n_kv_heads`` 0 and the head count,
``head_dim`` 0 and ``d_model / n_heads``, ``500000`` and ``500000.0``, a tokenizer folder
and its ``tokenizer.json``; the Llama-3.1 RoPE scaling fields are the directory's only
when it uses that scaling.

A causal directory (Llama / Qwen2) under a diffusion loss is adapted into a bidirectional
model with the one-position logit shift (``as_diffusion``, the Dream recipe).
"""

from __future__ import annotations

import os

from mdlm_jax.checkpoint import hf


def _eos_id(info: hf.HFInfo) -> int | None:
    """The EOS id the data pipeline uses with this directory's tokenizer."""
    if info.tokenizer_file is None:
        return info.eos_id
    try:
        return hf.tokenizer(info.tokenizer_file).eos_id
    except ValueError:  # no EOS token known to the tokenizer
        return info.eos_id


def directory_values(info: hf.HFInfo) -> dict:
    """Dotted config key -> the value ``info``'s directory defines for it."""
    out = {f"model.{k}": v for k, v in info.model_fields.items()}
    out.setdefault("model.rope_scaling", "none")
    out["model.imported_from"] = info.family
    if info.mask_id is not None:
        out["diffusion.mask_id"] = info.mask_id
    if info.tokenizer_file is not None:
        out["data.tokenizer"] = "hf"
        out["data.tokenizer_path"] = info.tokenizer_file
    eos = _eos_id(info)
    if eos is not None:
        out["data.eos_id"] = eos
    return out


def _canonical(key: str, value, values: dict):
    """``value`` of ``key`` in one spelling (0 -> the default it stands for, ...)."""
    if key == "model.n_kv_heads":
        return value or values["model.n_heads"]
    if key == "model.head_dim":
        return value or values["model.d_model"] // values["model.n_heads"]
    if key == "data.tokenizer_path" and isinstance(value, str) and value:
        path = os.path.abspath(value)
        return os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def agrees(key: str, value, values: dict) -> bool:
    """Whether ``value`` for ``key`` says the same as the directory's ``values``."""
    return _canonical(key, value, values) == _canonical(key, values[key], values)


def _name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _set(config, key: str, value) -> None:
    *groups, leaf = key.split(".")
    node = config
    for g in groups:
        node = node[g]
    node[leaf] = value


def configure_from_directory(config, path: str | None = None, *, explicit=None,
                             as_diffusion: bool | None = None, dtype=None):
    """Fill ``config`` with what the HF directory ``path`` defines; returns its ``HFInfo``.

    ``path`` defaults to ``config.model.init_from`` (nothing happens, and None is returned,
    when both are empty); ``config.model.init_from`` is set to it. ``explicit`` maps the
    dotted keys the user set (``main.explicit_overrides()``) to their values: each one
    that contradicts the directory is a ValueError naming both values. ``as_diffusion``
    (None: when the directory is causal and the config's loss is a diffusion loss) adapts
    a Llama / Qwen2 directory into a bidirectional model. ``dtype`` is passed to
    ``hf.inspect`` (``info.dtype``); the config's dtypes stay the recipe's.
    """
    from mdlm_jax.checks import is_diffusion

    path = path or config.model.init_from
    if not path:
        return None
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory {path} does not exist (config.model."
                                "init_from / the config's path= argument)")
    info = hf.inspect(path, dtype=dtype)
    if as_diffusion is None:
        as_diffusion = info.model_fields["causal"] and is_diffusion(config)
    if as_diffusion and info.family not in hf.DIFFUSION_FAMILIES:
        info = hf.inspect(path, as_diffusion=True, dtype=dtype)
    values = directory_values(info)
    clashes = [f"--config.{key}={value!r} but {info.path} has {_name(key)}="
               f"{values[key]!r}" for key, value in dict(explicit or {}).items()
               if key in values and not agrees(key, value, values)]
    if clashes:
        raise ValueError("; ".join(clashes) + ": the model directory defines "
                         f"{'these values' if len(clashes) > 1 else 'this value'}; drop the "
                         "override (or point the config at another directory)")
    for key, value in values.items():
        _set(config, key, value)
    config.model.init_from = info.path
    return info


def check_agrees(config, info: hf.HFInfo) -> None:
    """The architecture fields and mask id of ``config`` agree with ``info``'s directory."""
    values = directory_values(info)
    keys = [f"model.{k}" for k in hf.ARCH_FIELDS if k in info.model_fields]
    if info.mask_id is not None:
        keys.append("diffusion.mask_id")
    for key in keys:
        group, field = key.split(".")
        mine = config[group][field]
        if not agrees(key, mine, values):
            raise ValueError(f"config.{key}={mine!r} but {info.path} has {values[key]!r}: "
                             "config.model must come from the model directory (the train, "
                             "eval and sample commands fill it; drop the override)")
