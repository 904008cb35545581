"""The datasets ``data.name`` can name: one record each, used by the pipeline and ``prepare``.

A :class:`Dataset` says how to build it (a TFDS builder for the config's settings), what
``data.files`` names for it, whether it is built on first use or once with
``python -m mdlm_jax.data.prepare``, and how a stored record becomes a batch row. Adding a
dataset is its builder and one entry in :data:`DATASETS`; nothing else names a dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
from collections.abc import Callable

from mdlm_jax.data import builders, prompt_answer


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered dataset."""

    builder: Callable  # (data_cfg, files) -> its TFDS builder (config named by the settings)
    files: str = ""  # what ``data.files`` names for it; '' : it reads no files
    built_on_first_use: bool = False  # else built once with ``python -m mdlm_jax.data.prepare``
    to_batch: Callable | None = None  # a stored record -> one batch row; None: stored as batched
    batch_fields: tuple[str, ...] = ("tokens", "valid")  # tokens int32, the others bool masks


_LOCAL_FILES = "a glob of local files"
DATASETS = {
    "embedded": Dataset(functools.partial(builders.get_builder, builders.EmbeddedCorpus),
                        built_on_first_use=True),
    "text_files": Dataset(functools.partial(builders.get_builder, builders.TextFiles),
                          files=_LOCAL_FILES),
    "openwebtext": Dataset(functools.partial(builders.get_builder, builders.OpenWebText),
                           files=_LOCAL_FILES),
    "context_tasks": Dataset(functools.partial(builders.get_builder, builders.ContextTasks),
                             built_on_first_use=True),
    "prompt_answer": Dataset(
        prompt_answer.get_builder, built_on_first_use=True, to_batch=prompt_answer.batch_fields,
        files=f"a glob of .jsonl files, or {prompt_answer.EMBEDDED!r} / "
              f"{prompt_answer.CONTEXT_TASKS!r} for a generated multiple-choice set",
        batch_fields=("tokens", "valid", "prompt_mask", "answer_mask")),
}


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid: {', '.join(DATASETS)}.")
    return DATASETS[name]


def get_builder(data_cfg):
    """The (possibly not yet built) builder of the dataset ``data_cfg`` describes."""
    ds = dataset(data_cfg.name)
    files = (data_cfg.files or "") if ds.files else ""
    if ds.files and not files:
        raise ValueError(f"data.name={data_cfg.name!r} needs data.files: {ds.files}.")
    return ds.builder(data_cfg, files)


def prepare(data_cfg, builder=None) -> tuple:
    """Builds the dataset unless already prepared; returns (builder, built_now)."""
    return builders.build_once(lambda: get_builder(data_cfg), builder)


def load_builder(data_cfg):
    """The prepared builder; datasets built on first use are built now, others must exist."""
    builder = get_builder(data_cfg)
    if builder.is_prepared():
        return builder
    if dataset(data_cfg.name).built_on_first_use:
        return prepare(data_cfg, builder)[0]
    raise FileNotFoundError(
        f"Prepared dataset {data_cfg.name!r} not found: expected {builder.data_dir}. "
        f"Build it once with:\n  {prepare_command(data_cfg)}"
    )


def prepare_command(data_cfg) -> str:
    """The shell command that builds the dataset ``data_cfg`` describes."""
    args = ["python", "-m", "mdlm_jax.data.prepare", "--name", data_cfg.name]
    if dataset(data_cfg.name).files:
        args += ["--files", data_cfg.files]
    args += ["--tokenizer", data_cfg.tokenizer]
    if data_cfg.tokenizer_path:
        args += ["--tokenizer_path", data_cfg.tokenizer_path]
    args += ["--seq_len", str(data_cfg.seq_len), "--packing", data_cfg.packing]
    if data_cfg.chat_template:
        args += ["--chat_template", data_cfg.chat_template]
    args += ["--data_dir", builders.default_data_dir(data_cfg)]
    return " ".join(shlex.quote(a) for a in args)


def data_source(data_cfg, split: str):
    """Random-access source of ``split`` (``tfds`` ``ArrayRecordDataSource``)."""
    return builders.split_source(load_builder(data_cfg), split, data_cfg.name)


def split_sizes(data_cfg) -> dict[str, int]:
    """Number of records per split of the (prepared) dataset."""
    builder = load_builder(data_cfg)
    return {name: int(s.num_examples) for name, s in builder.info.splits.items()}
