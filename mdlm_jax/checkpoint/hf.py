"""Hugging Face checkpoints in and out: LLaDA, Dream, Llama-3, Qwen2/2.5 and MDLM.

    model_cfg, params, apply = hf.load(path, mesh=mesh)        # streamed, sharded
    info = hf.inspect(path)                                     # family, mask/eos/pad ids
    hf_config.configure_from_directory(config, path)            # fill a full config
    hf.export(params, model_cfg, out_dir, family="llada", like=path)

``apply`` is the model contract: at position i, diffusion families (LLaDA, Dream, MDLM)
give the logits of token i of the clean sequence (Dream's HF output shifted right by one
through ``model.logit_shift``); causal families (Llama, Qwen2) give those of token i+1,
as HF returns them. Logits are raw (no mask suppression).

Loading maps each safetensors tensor (see ``hf_io``) and places it straight into its
sharding with ``jax.make_array_from_callback``: every device reads only its shard, the
layer-stacked params are assembled per layer inside the callback, and in a multi-host
job each process reads only what its own devices hold.

``as_diffusion=True`` (the Dream recipe) turns a Llama / Qwen2 checkpoint into a
bidirectional model with the one-position logit shift, so the diffusion loss can continue
from an AR model. Its mask id is, in order: ``mask_token_id`` in config.json, a mask token
in tokenizer.json, the first embedding row past the tokenizer's vocabulary (Qwen2.5 has
such spare rows), else a new row appended to the embedding (initialised to the mean
embedding) and to an untied head (zero column, so its logit starts at 0).
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections as mlc
import numpy as np
from jax.sharding import NamedSharding, SingleDeviceSharding

from mdlm_jax import config_base
from mdlm_jax import model as model_lib
from mdlm_jax.checkpoint import hf_io, hf_tables
from mdlm_jax.checkpoint.hf_io import export, merge_lora  # noqa: F401  (public API)
from mdlm_jax.checkpoint.hf_tables import DIFFUSION_FAMILIES, FAMILIES
from mdlm_jax.parallel.sharding import param_specs
from mdlm_jax.param_trees import flatten, unflatten

# config.model fields that fix the architecture: a config that names a HF directory
# (model.init_from) must agree with the directory on each of them (hf_config).
ARCH_FIELDS = ("family", "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads",
               "head_dim", "mlp_dim", "rope_theta", "qkv_bias", "causal", "logit_shift",
               "time_conditioning", "cond_dim", "norm_eps", "tie_embeddings")


@dataclasses.dataclass
class HFInfo:
    """What a HF directory holds, resolved into this library's terms."""

    path: str
    family: str
    hf_config: dict
    model_fields: dict
    dtype: str
    mask_id: int | None
    eos_id: int | None
    pad_id: int | None
    tokenizer_file: str | None
    tokenizer_vocab: int | None
    file_vocab: int  # embedding rows in the file
    mask_added: bool  # as_diffusion appended a mask row
    refs: dict = dataclasses.field(repr=False, default_factory=dict)


def _dtype_name(dtype) -> str | None:
    if dtype is None:
        return None
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype {dtype!r} is not supported; use float32, bfloat16 or float16")
    return name


def tokenizer(path: str):
    """The directory's tokenizer (``data.tokenizers.HFTokenizer`` over tokenizer.json)."""
    from mdlm_jax.data.tokenizers import HFTokenizer

    return HFTokenizer(path)


def _tokenizer_facts(path: str):
    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
        return None, None, {}
    from tokenizers import Tokenizer

    from mdlm_jax.data.tokenizers import EOS_NAMES

    tok = Tokenizer.from_file(file)
    found = {}
    for key, names in (("mask_id", hf_tables.MASK_TOKEN_NAMES), ("eos_id", EOS_NAMES)):
        ids = [tok.token_to_id(n) for n in names if tok.token_to_id(n) is not None]
        if ids:
            found[key] = ids[0]
    return file, tok.get_vocab_size(with_added_tokens=True), found


def inspect(path: str, *, as_diffusion: bool = False, family: str | None = None,
            dtype=None) -> HFInfo:
    """Read config.json, tokenizer.json and the safetensors headers (no tensor data)."""
    path = os.path.abspath(os.fspath(path))
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"{path} has no config.json (is it a HF model directory?)")
    with open(cfg_file) as f:
        hf_cfg = json.load(f)
    if family is None:
        family = hf_tables.detect_family(hf_cfg, cfg_file)
    elif family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; supported: {', '.join(FAMILIES)}")
    fields = hf_tables.read_model_fields(family, hf_cfg, cfg_file)
    refs = hf_io.tensor_refs(path)
    head = hf_tables.HEAD_NAMES[family]
    if head is not None and head not in refs and (fields["tie_embeddings"]
                                                  or family == "qwen2"):
        fields["tie_embeddings"] = True
    elif head is not None and head in refs:
        fields["tie_embeddings"] = False
    embed_name = hf_tables.TABLES[family][0].hf
    if embed_name not in refs:
        raise ValueError(f"{path}: missing tensor {embed_name}")
    file_vocab = refs[embed_name].shape[0]
    if file_vocab != fields["vocab_size"]:
        raise ValueError(f"{path}: tensor {embed_name} has {file_vocab} rows but config.json "
                         f"says vocab_size {fields['vocab_size']}")
    dtype_name = (_dtype_name(dtype) or hf_tables.hf_dtype_name(hf_cfg)
                  or _dtype_name(refs[embed_name].dtype))
    tok_file, tok_vocab, tok_ids = _tokenizer_facts(path)
    if tok_vocab is not None and tok_vocab > file_vocab:
        raise ValueError(f"{tok_file}: tokenizer vocabulary ({tok_vocab}) is larger than the "
                         f"embedding ({file_vocab} rows)")
    ids = hf_tables.special_ids(family, hf_cfg)
    for key, value in tok_ids.items():
        if ids[key] is None:
            ids[key] = value
    mask_added = False
    if as_diffusion and family not in DIFFUSION_FAMILIES:
        fields.update(causal=False, logit_shift=True)
        if ids["mask_id"] is None:
            if tok_vocab is not None and tok_vocab < file_vocab:
                ids["mask_id"] = tok_vocab  # first spare embedding row
            else:
                ids["mask_id"], mask_added = file_vocab, True
                fields["vocab_size"] = file_vocab + 1
    is_diffusion = family in DIFFUSION_FAMILIES or as_diffusion
    if is_diffusion and ids["mask_id"] is None:
        raise ValueError(f"{path}: diffusion family {family!r} without a known mask id: add "
                         "'mask_token_id' to config.json or a mask token to tokenizer.json")
    if ids["mask_id"] is not None and not 0 <= ids["mask_id"] < fields["vocab_size"]:
        raise ValueError(f"{path}: mask id {ids['mask_id']} is outside the vocabulary "
                         f"({fields['vocab_size']})")
    return HFInfo(path=path, family=family, hf_config=hf_cfg, model_fields=fields,
                  dtype=dtype_name, mask_id=ids["mask_id"], eos_id=ids["eos_id"],
                  pad_id=ids["pad_id"], tokenizer_file=tok_file, tokenizer_vocab=tok_vocab,
                  file_vocab=file_vocab, mask_added=mask_added, refs=refs)


def model_config(info: HFInfo) -> mlc.ConfigDict:
    """A ``config.model``-shaped ConfigDict for ``info``."""
    m = config_base.base_config().model
    for key, value in info.model_fields.items():
        m[key] = value
    m.param_dtype = m.dtype = info.dtype
    m.init_from = info.path
    return m


# ------------------------------------------------------------------------ load
def _pad_fill(ref: hf_io.TensorRef, axis: int) -> np.ndarray:
    """The appended mask slice: mean embedding row (axis 0), zero head column (axis 1)."""
    if axis == 1:
        return np.zeros((ref.shape[1], 1), np.float32)
    m = ref.map()
    acc = np.zeros((ref.shape[1],), np.float64)
    for s in range(0, ref.shape[0], 4096):
        acc += np.asarray(m[s:s + 4096], np.float64).sum(0)
    return (acc / ref.shape[0]).astype(np.float32)[None]


def _take(view, idx, pad):
    """``view[idx]`` where ``pad=(axis, fill)`` extends ``view`` by ``fill`` along ``axis``."""
    if pad is None:
        return view[idx]
    axis, fill = pad
    n = view.shape[axis]
    start, stop, _ = idx[axis].indices(n + 1)
    inner = list(idx)
    inner[axis] = slice(start, min(stop, n))
    parts = [view[tuple(inner)]]
    if stop > n:
        outer = list(idx)
        outer[axis] = slice(0, 1)
        parts.append(fill[tuple(outer)].astype(view.dtype))
    return np.concatenate(parts, axis=axis)


def read_params(info: HFInfo, cfg, *, mesh=None, rules=None) -> dict:
    """Params for ``cfg`` from ``info``'s files, placed into their shardings on ``mesh``."""
    _, shapes, axes = model_lib.abstract(cfg)
    flat_shapes = flatten(shapes)
    rows = hf_tables.rows_for(info.family, flat_shapes)
    source = {p: (row, j) for row in rows for j, p in enumerate(row.ours)}
    lacking = [p for p in flat_shapes if p not in source]
    if lacking:
        raise ValueError(f"no {info.family} tensor maps to parameter(s) {', '.join(lacking)}")
    n_layers = cfg.n_layers
    pads = {}
    if info.mask_added:
        embed = hf_tables.TABLES[info.family][0].hf
        pads["embed"] = (0, _pad_fill(info.refs[embed], 0))
        if "head/kernel" in flat_shapes:
            pads["head/kernel"] = (1, _pad_fill(info.refs[embed], 1))

    def file_shape(p):
        shape = list(flat_shapes[p].shape)
        if p in pads:
            shape[pads[p][0]] -= 1
        return tuple(shape)

    expected = {}
    for row in rows:
        per_layer = [file_shape(p)[1:] if row.stacked else file_shape(p) for p in row.ours]
        for layer in range(n_layers) if row.stacked else [None]:
            expected[row.hf.format(i=layer)] = (row, row.op.hf_shape(per_layer))
    missing = [n for n in expected if n not in info.refs]
    if missing:
        raise ValueError(f"{info.path}: missing tensor(s) for family {info.family}: "
                         f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    extra = [n for n in info.refs if n not in expected
             and not n.endswith(hf_tables.IGNORED_SUFFIXES)]
    if extra:
        raise ValueError(f"{info.path}: unexpected tensor(s) for family {info.family}: "
                         f"{', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    for name, (_, shape) in expected.items():
        if info.refs[name].shape != tuple(shape):
            raise ValueError(f"{info.path}: tensor {name} has shape "
                             f"{list(info.refs[name].shape)}, expected {list(shape)}")
    if mesh is not None:
        rules = config_base.DEFAULT_RULES if rules is None else rules
        specs = flatten(param_specs(axes, shapes, rules, mesh))
    out = {}
    for p, sds in flat_shapes.items():
        row, j = source[p]
        per_layer = [file_shape(q)[1:] if row.stacked else file_shape(q) for q in row.ours]
        sharding = (NamedSharding(mesh, specs[p]) if mesh is not None
                    else SingleDeviceSharding(jax.local_devices()[0]))
        out[p] = jax.make_array_from_callback(
            sds.shape, sharding,
            _callback(info.refs, row, j, per_layer, n_layers, np.dtype(sds.dtype),
                      pads.get(p)))
    return unflatten(out)


def _callback(refs, row, j, per_layer, n_layers, dtype, pad):
    def view(layer):
        return row.op.to_ours(refs[row.hf.format(i=layer)].map(), per_layer)[j]

    def cb(idx):
        if not row.stacked:
            return np.array(_take(view(None), idx, pad), dtype=dtype)
        layers = range(n_layers)[idx[0]]
        out = np.empty((len(layers),) + _take_shape(per_layer[j], idx[1:]), dtype)
        for k, layer in enumerate(layers):
            out[k] = _take(view(layer), idx[1:], pad)
        return out

    return cb


def _take_shape(shape, idx):
    return tuple(len(range(n)[s]) for n, s in zip(shape, idx))


def load(path: str, *, mesh=None, dtype=None, rules=None, as_diffusion: bool = False,
         family: str | None = None, return_info: bool = False):
    """``(model_config, params, apply)`` from a HF directory (``+ info`` if asked).

    ``dtype`` (None: the checkpoint's) sets both the stored and the compute dtype;
    ``mesh``/``rules`` (default ``config_base.DEFAULT_RULES``) shard the params.
    """
    info = inspect(path, as_diffusion=as_diffusion, family=family, dtype=dtype)
    cfg = model_config(info)
    apply, _, _ = model_lib.abstract(cfg)
    params = read_params(info, cfg, mesh=mesh, rules=rules)
    return (cfg, params, apply, info) if return_info else (cfg, params, apply)


def init_params_from(config: mlc.ConfigDict, mesh=None) -> dict:
    """Params for a training config whose ``model.init_from`` names a HF directory.

    A causal HF model (Llama / Qwen2) under a non-causal ``config.model`` is adapted with
    ``as_diffusion``. The config must have been filled from the directory
    (``hf_config.configure_from_directory``); a field that disagrees is an error.
    """
    from mdlm_jax.checkpoint import hf_config

    path = config.model.init_from
    if not path:
        raise ValueError("config.model.init_from is empty: name a HF model directory")
    info = inspect(path, dtype=config.model.param_dtype)
    if info.model_fields["causal"] and not config.model.causal:  # adapt the AR model
        info = inspect(path, as_diffusion=True, dtype=config.model.param_dtype)
    hf_config.check_agrees(config, info)
    return read_params(info, config.model, mesh=mesh, rules=config.mesh.rules)


__all__ = ["ARCH_FIELDS", "DIFFUSION_FAMILIES", "FAMILIES", "HFInfo", "export",
           "init_params_from", "inspect", "load", "model_config", "read_params", "tokenizer"]
