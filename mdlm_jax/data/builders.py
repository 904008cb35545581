"""TFDS builders that tokenize and pack text at build time into ``array_record`` files.

Each stored record is a ready-to-train example ``{'tokens': int32[seq_len],
'valid': bool[seq_len]}`` (see ``packing.py``). The builder config name encodes the tokenizer,
packing and length (``char_wrap_128``; ``text_files`` adds a hash of the file glob), so datasets
built with different settings live side by side under
``<data_dir>/<builder>/<config>/<version>/``. Builds go to a temporary ``incomplete.*`` folder
renamed on success, and an existing prepared dataset is never rebuilt or overwritten.

Datasets (``data.name``):

* ``embedded``: the shipped KJV excerpt; 2% of chapters are validation. Built on first use.
* ``text_files``: local files ``data.files`` (see ``documents.py``); 1% validation.
* ``openwebtext``: a local OpenWebText copy (a folder of ``.txt`` files, one page each, or of
  ``.jsonl``/``.jsonl.gz``/``.parquet`` with a ``text`` field); every 100th document (1%, about
  80k of the 8M pages, close to MDLM's last-100k) is validation.

* ``context_tasks``: the context suite's task format mixed with the embedded corpus
  (``task_documents.py``; settings ``data.context_tasks``). Built on first use.

``text_files`` and ``openwebtext`` must be built once with ``python -m mdlm_jax.data.prepare``.
Which builder a ``data.name`` means, and how it is built, is ``registry.DATASETS``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from types import SimpleNamespace

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from mdlm_jax.data import documents, packing, task_documents
from mdlm_jax.data.tokenizers import get_tokenizer, tokenizer_tag


class _QuietCustomConfig(logging.Filter):
    """Drops tfds's per-instantiation warning about custom (non-registered) configs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_QuietCustomConfig())


@dataclasses.dataclass(eq=False)
class PackedConfig(tfds.core.BuilderConfig):
    """What a prepared dataset holds: tokenizer, sequence length, packing and sources."""

    tokenizer: str = "char"
    tokenizer_path: str = ""
    seq_len: int = 128
    packing: str = "wrap"
    files: str = ""


class _LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of this package's builders."""

    # tfds locates a builder's source through the optional ``importlib_resources`` package when
    # the builder lives in a package; point it at this package directly.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)


class _PackedBuilder(_LocalBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Tokenized and packed at build time."}
    HOLDOUT_EVERY = 100
    FILES_IN_NAME = False  # the config name holds a hash of data.files

    def _info(self) -> tfds.core.DatasetInfo:
        n = self.builder_config.seq_len
        enc = tfds.features.Encoding.BYTES
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            disable_shuffling=True,  # records keep document order; pipelines shuffle indices
            features=tfds.features.FeaturesDict(
                {
                    "tokens": tfds.features.Tensor(shape=(n,), dtype=np.int32, encoding=enc),
                    "valid": tfds.features.Tensor(shape=(n,), dtype=np.bool_, encoding=enc),
                }
            ),
        )

    def _documents(self):
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in documents.SPLITS}

    def _generate_examples(self, split):
        cfg = self.builder_config
        tok = get_tokenizer(cfg)
        docs = documents.split_documents(self._documents(), split, self.HOLDOUT_EVERY)
        records = packing.pack(packing.tokenize(docs, tok), cfg.packing, cfg.seq_len, tok.eos_id)
        yield from enumerate(records)


class EmbeddedCorpus(_PackedBuilder):
    """The King James Bible excerpt shipped in ``mdlm_jax/data/corpus``."""

    name = "mdlm_embedded"
    HOLDOUT_EVERY = 50

    def _documents(self):
        return documents.embedded_documents()


class TextFiles(_PackedBuilder):
    """Local ``.txt`` / ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` files (``data.files``)."""

    name = "mdlm_text_files"
    FILES_IN_NAME = True

    def _documents(self):
        return documents.file_documents(self.builder_config.files)


class OpenWebText(TextFiles):
    """A local OpenWebText copy, read like ``TextFiles``."""

    name = "mdlm_openwebtext"
    FILES_IN_NAME = False


@dataclasses.dataclass(eq=False)
class ContextTasksConfig(PackedConfig):
    tasks: str = ""  # data.context_tasks as JSON


class ContextTasks(_PackedBuilder):
    """The context suite's task format mixed with the embedded corpus (``task_documents``)."""

    name = "mdlm_context_tasks"

    def _generate_examples(self, split):
        cfg = self.builder_config
        tok = get_tokenizer(cfg)
        data_cfg = SimpleNamespace(seq_len=cfg.seq_len, context_tasks=json.loads(cfg.tasks))
        docs = task_documents.mixed_documents(data_cfg, split, tok)
        yield from enumerate(packing.pack(docs, cfg.packing, cfg.seq_len, tok.eos_id))


def default_data_dir(data_cfg) -> str:
    """``data.data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    d = data_cfg.data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(d))


def builder_config(data_cfg, cls, files: str = "") -> PackedConfig:
    """The config of builder ``cls`` for ``data_cfg``'s settings, reading ``files``."""
    packing.check_packing(data_cfg.packing, data_cfg.seq_len)
    parts = [tokenizer_tag(data_cfg), data_cfg.packing, str(int(data_cfg.seq_len))]
    if cls is ContextTasks:
        return _context_tasks_config(data_cfg, parts)
    if cls.FILES_IN_NAME:
        parts.append("f" + hashlib.sha1(files.encode()).hexdigest()[:6])
    return PackedConfig(
        name="_".join(parts),
        version=_PackedBuilder.VERSION,
        tokenizer=data_cfg.tokenizer,
        tokenizer_path=data_cfg.tokenizer_path or "",
        seq_len=int(data_cfg.seq_len),
        packing=data_cfg.packing,
        files=files,
        description=f"{data_cfg.name} files={files!r}",
    )


def _context_tasks_config(data_cfg, parts) -> ContextTasksConfig:
    if data_cfg.packing != "wrap":
        raise ValueError("data.name='context_tasks' packs documents with data.packing='wrap' "
                         f"(got {data_cfg.packing!r})")
    tasks_json = json.dumps(task_documents.settings(data_cfg), sort_keys=True)
    parts.append("t" + hashlib.sha1(tasks_json.encode()).hexdigest()[:8])
    return ContextTasksConfig(
        name="_".join(parts), version=_PackedBuilder.VERSION, tokenizer=data_cfg.tokenizer,
        tokenizer_path=data_cfg.tokenizer_path or "", seq_len=int(data_cfg.seq_len),
        packing=data_cfg.packing, tasks=tasks_json, description=f"context_tasks {tasks_json}")


def get_builder(cls, data_cfg, files: str = "") -> _PackedBuilder:
    """Packed-text builder ``cls`` for ``data_cfg`` (a ``registry.Dataset.builder``)."""
    config = builder_config(data_cfg, cls, files)
    return cls(config=config, data_dir=default_data_dir(data_cfg), file_format="array_record")


def build_once(make_builder, builder=None):
    """``(builder, built_now)``: build unless prepared; a build that fails because another
    process finished the same dataset first returns that dataset."""
    builder = builder or make_builder()
    if builder.is_prepared():
        return builder, False
    folders = _folders(builder)
    existed = {f for f in folders if os.path.isdir(f)}
    try:
        builder.download_and_prepare()
    except Exception:
        if make_builder().is_prepared():  # another process finished the same build
            return make_builder(), False
        for f in folders:  # tfds removed its incomplete.* folder; drop the empty parents
            if f not in existed:
                with contextlib.suppress(OSError):
                    os.rmdir(f)
        raise
    return builder, True


def _folders(builder) -> list[str]:
    """The folders a build may create, deepest first (``<root>/<name>/<config>/<version>``,
    ``<root>/downloads/extracted``)."""
    root = os.path.abspath(os.fspath(builder._data_dir_root))
    out, path = [], os.path.abspath(os.fspath(builder.data_dir))
    while path.startswith(root + os.sep):
        out.append(path)
        path = os.path.dirname(path)
    downloads = os.path.join(root, "downloads")
    return out + [os.path.join(downloads, "extracted"), downloads, root]


def split_source(builder, split: str, name: str):
    """``builder``'s random-access source of ``split``, or an error naming the valid ones."""
    if split not in builder.info.splits:
        raise ValueError(
            f"Unknown split {split!r} for {name}; valid: {list(builder.info.splits)}."
        )
    return builder.as_data_source(split=split)


def data_config(**overrides) -> SimpleNamespace:
    """A stand-alone ``data`` config with the base defaults (for scripts and tests)."""
    from mdlm_jax.config_base import base_config

    cfg = base_config().data.to_dict()
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise KeyError(f"Unknown data config keys {sorted(unknown)}; valid: {sorted(cfg)}.")
    cfg.update(overrides)
    return SimpleNamespace(**cfg)
