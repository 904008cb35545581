"""safetensors files without a full copy: memory-mapped reads, streamed writes, export.

The format is an 8-byte little-endian header length, a JSON header
``{name: {dtype, shape, data_offsets: [begin, end]}}`` (offsets relative to the end of the
header) and the raw little-endian bytes. Reading maps one tensor at a time with
``np.memmap`` (bfloat16 through ``ml_dtypes``), so only the pages a shard touches are read
and the mapping is released as soon as the tensor is done.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import struct

import jax
import ml_dtypes
import numpy as np

from mdlm_jax.checkpoint import hf_tables
from mdlm_jax.param_trees import flatten

DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
CODES = {v: k for k, v in DTYPES.items()}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class TensorRef:
    """Where one tensor lives: file, byte offset, dtype, shape."""

    def __init__(self, name, file, offset, dtype, shape):
        self.name, self.file, self.offset = name, file, offset
        self.dtype, self.shape = dtype, tuple(shape)

    def map(self) -> np.ndarray:
        """A read-only memory map of the tensor (released when the array is dropped)."""
        if 0 in self.shape:
            return np.zeros(self.shape, self.dtype)
        return np.memmap(self.file, dtype=self.dtype, mode="r", offset=self.offset,
                         shape=self.shape)


def read_header(file: str) -> dict[str, TensorRef]:
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{file} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        header = json.loads(f.read(n))
    refs = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{file}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, _ = info["data_offsets"]
        refs[name] = TensorRef(name, file, 8 + n + begin, DTYPES[info["dtype"]], info["shape"])
    return refs


def weight_files(src: str) -> list[str]:
    """The safetensors files of a directory (through the index when there is one)."""
    index = os.path.join(src, INDEX_NAME)
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map", {})
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not os.path.isfile(os.path.join(src, f))]
        if missing:
            raise FileNotFoundError(f"{index} names shard(s) that do not exist: "
                                    f"{', '.join(missing)}")
        return [os.path.join(src, f) for f in files]
    single = os.path.join(src, SINGLE_NAME)
    if os.path.isfile(single):
        return [single]
    found = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    if not found:
        raise FileNotFoundError(f"{src} has no weights: expected {SINGLE_NAME} or "
                                f"{INDEX_NAME} (only safetensors are read)")
    return [os.path.join(src, f) for f in found]


def tensor_refs(src: str) -> dict[str, TensorRef]:
    refs: dict[str, TensorRef] = {}
    for file in weight_files(src):
        for name, ref in read_header(file).items():
            if name in refs:
                raise ValueError(f"tensor {name} appears in both {refs[name].file} and {file}")
            refs[name] = ref
    return refs


def _header_bytes(entries) -> bytes:
    header, pos = {}, 0
    for name, shape, dtype in entries:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": CODES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [pos, pos + size]}
        pos += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_files(out_dir: str, plan, produce, max_shard_bytes: int) -> list[str]:
    """Write tensors in ``plan`` order (``(name, shape, dtype)``) into one or more files.

    ``produce(name)`` returns the tensor as a numpy array when its turn comes, so at
    most one tensor (plus what ``produce`` caches) is in host memory at a time.
    """
    shards, cur, size = [], [], 0
    for entry in plan:
        nbytes = int(np.prod(entry[1], dtype=np.int64)) * np.dtype(entry[2]).itemsize
        if cur and size + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(entry)
        size += nbytes
    shards.append(cur)
    names = ([SINGLE_NAME] if len(shards) == 1 else
             [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    weight_map, total = {}, 0
    for fname, entries in zip(names, shards):
        with open(os.path.join(out_dir, fname), "wb") as f:
            f.write(_header_bytes(entries))
            for name, shape, dtype in entries:
                arr = np.ascontiguousarray(produce(name), dtype=dtype)
                if arr.shape != tuple(shape):
                    raise AssertionError(f"{name}: produced {arr.shape}, planned {shape}")
                f.write(arr.tobytes())
                total += arr.nbytes
                weight_map[name] = fname
    if len(shards) > 1:
        with open(os.path.join(out_dir, INDEX_NAME), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                      indent=2)
    return names


# ---------------------------------------------------------------------- export
# Files copied from the source directory (``like``): tokenizer, generation settings and
# the remote code that LLaDA / Dream / MDLM directories ship.
COPIED = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json",
          "merges.txt", "*.model", "*.tiktoken", "generation_config.json", "chat_template*",
          "*.py", "README.md", "LICENSE*")
DEFAULT_SHARD_BYTES = 4 << 30

# The switches each family implies: exporting a model under a family whose layout
# cannot express its switches would silently change the model, so it is refused.
IMPLIED = {
    "llada": dict(family="llama", causal=False, logit_shift=False),
    "dream": dict(family="llama", causal=False, logit_shift=True, qkv_bias=True),
    "llama": dict(family="llama", causal=True, logit_shift=False, qkv_bias=False),
    "qwen2": dict(family="llama", causal=True, logit_shift=False, qkv_bias=True),
    "mdlm": dict(family="dit", causal=False, logit_shift=False),
}


def merge_lora(params: dict, lora=None) -> dict:
    """Params with LoRA adapters (``lora_a``/``lora_b``) folded into their kernels."""
    from mdlm_jax.model import lora as lora_lib

    if not lora_lib.has_adapters(params):
        return params
    if lora is None:
        raise ValueError("params carry LoRA adapters (lora_a / lora_b): pass lora=config.lora "
                         "so they can be merged")
    return lora_lib.merge(params, lora)


def _to_host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)


def _check_family(family, m):
    if family not in hf_tables.FAMILIES:
        raise ValueError(f"unknown family {family!r}; supported: "
                         f"{', '.join(hf_tables.FAMILIES)}")
    for key, want in IMPLIED[family].items():
        if m[key] != want:
            raise ValueError(f"cannot export as {family}: it needs model.{key}={want!r}, the "
                             f"model has {m[key]!r}")
    if m.rope_scaling != "none" and family != "llama":
        raise ValueError(f"cannot export as {family}: model.rope_scaling={m.rope_scaling!r} "
                         "is written only in the llama layout")


def export(params, model_config, out_dir: str, *, family: str, like: str | None = None,
           lora=None, mask_id: int | None = None, eos_id: int | None = None,
           pad_id: int | None = None, overwrite: bool = False,
           max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> str:
    """Write config.json, model.safetensors (sharded + index above ``max_shard_bytes``)
    and, from ``like`` (the source directory), its config fields and tokenizer files.

    LoRA adapters in ``params`` are merged (``lora``: the ``config.lora`` they were made
    with). ``out_dir`` must not exist or be empty unless ``overwrite``. Returns ``out_dir``.
    """
    _check_family(family, model_config)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir)
                                    or (os.listdir(out_dir) and not overwrite)):
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True to "
                              "write into it")
    base, ids = None, {}
    if like is not None:
        from mdlm_jax.checkpoint import hf

        info = hf.inspect(like)
        base = info.hf_config
        ids = dict(mask_id=info.mask_id, eos_id=info.eos_id, pad_id=info.pad_id)
    for key, value in (("mask_id", mask_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        if value is not None:
            ids[key] = value
    if family in hf_tables.DIFFUSION_FAMILIES and ids.get("mask_id") is None:
        raise ValueError(f"exporting a {family} model needs its mask id: pass mask_id= or "
                         "like= a directory that names it")
    params = merge_lora(params, lora)
    leaves = flatten(params)
    rows = hf_tables.rows_for(family, leaves)
    covered = {p for r in rows for p in r.ours}
    left = [p for p in leaves if p not in covered]
    if left:
        raise ValueError(f"parameter(s) {', '.join(left)} have no place in the {family} layout")
    dtypes = {np.dtype(v.dtype) for v in leaves.values()}
    if len(dtypes) != 1:
        raise ValueError(f"params mix dtypes {sorted(d.name for d in dtypes)}; cast them first")
    dtype = dtypes.pop()
    n_layers = model_config.n_layers
    plan, where = [], {}
    for row in rows:
        per_layer = [leaves[p].shape[1:] if row.stacked else leaves[p].shape for p in row.ours]
        for layer in range(n_layers) if row.stacked else [None]:
            name = row.hf.format(i=layer)
            plan.append((name, row.op.hf_shape(per_layer), dtype))
            where[name] = (row, layer, per_layer)
    cache: dict = {}

    def produce(name):
        row, layer, per_layer = where[name]
        if cache.get("row") is not row:
            cache.clear()
            cache.update(row=row, arrays=[_to_host(leaves[p]) for p in row.ours])
        arrays = cache["arrays"]
        if layer is not None:
            arrays = [a[layer] for a in arrays]
        return row.op.to_hf(arrays, per_layer)

    config_json = hf_tables.write_config(family, model_config, ids, dtype.name, base)
    if jax.process_index() != 0:
        for name, _, _ in plan:  # join the collectives of the writer process
            produce(name)
        return out_dir
    target = out_dir if os.path.isdir(out_dir) else out_dir + f".tmp{os.getpid()}"
    os.makedirs(target, exist_ok=True)
    try:
        write_files(target, plan, produce, max_shard_bytes)
        with open(os.path.join(target, "config.json"), "w") as f:
            json.dump(config_json, f, indent=2, sort_keys=True)
        if like is not None:
            for fname in sorted(os.listdir(like)):
                src = os.path.join(like, fname)
                if os.path.isfile(src) and any(fnmatch.fnmatch(fname, pat) for pat in COPIED):
                    shutil.copyfile(src, os.path.join(target, fname))
    except BaseException:
        if target != out_dir:
            shutil.rmtree(target, ignore_errors=True)
        raise
    if target != out_dir:
        os.replace(target, out_dir)
    return out_dir
