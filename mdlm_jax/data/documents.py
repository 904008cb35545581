"""Document readers: the embedded corpus and local text files, plus the train/validation split.

Local files (``data.files`` glob, ``**`` allowed), read in sorted path order:

* ``.txt``: the whole file is one document (the usual OpenWebText layout: one file per page);
* ``.jsonl`` / ``.jsonl.gz``: one document per line, from the field ``text``;
* ``.parquet``: one document per row of the ``text`` column (needs ``pyarrow``).

Empty (whitespace-only) documents are skipped. The split is by document position in that order:
document ``i`` is validation when ``i % every == every - 1``; a source with fewer than ``every``
documents puts its last one in validation, so both splits are never empty (given >= 2 documents).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from collections.abc import Iterable, Iterator

EMBEDDED_CORPUS = os.path.join(os.path.dirname(__file__), "corpus", "kjv.txt.gz")
SPLITS = ("train", "validation")
SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".parquet")


def embedded_documents() -> Iterator[str]:
    """Chapters of the embedded KJV excerpt (see ``corpus/README.md``)."""
    with gzip.open(EMBEDDED_CORPUS, "rt", encoding="utf-8") as f:
        for doc in f.read().split("\n\n"):
            if doc.strip():
                yield doc.strip("\n")


def list_files(pattern: str) -> list[str]:
    if not pattern:
        raise ValueError("data.files is empty: give a glob of .txt / .jsonl / .jsonl.gz files.")
    files = sorted(
        f for f in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(f)
    )
    if not files:
        raise FileNotFoundError(f"data.files={pattern!r} matches no file.")
    bad = [f for f in files if not f.endswith(SUFFIXES)]
    if bad:
        raise ValueError(f"Unsupported file type {bad[0]!r}; supported suffixes: {SUFFIXES}.")
    return files


def _jsonl_documents(path: str) -> Iterator[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            record = json.loads(line)
            if "text" not in record:
                raise KeyError(f"{path}:{n + 1}: record has no 'text' field.")
            yield record["text"]


def _parquet_documents(path: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"Reading {path} needs pyarrow (pip install pyarrow).") from e
    for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
        yield from batch.column(0).to_pylist()


def file_documents(pattern: str) -> Iterator[str]:
    """Documents of the files matching ``pattern`` (see the module docstring)."""
    for path in list_files(pattern):
        if path.endswith(".txt"):
            with open(path, encoding="utf-8", errors="replace") as f:
                docs: Iterable[str] = [f.read()]
        elif path.endswith(".parquet"):
            docs = _parquet_documents(path)
        else:
            docs = _jsonl_documents(path)
        for doc in docs:
            if doc and doc.strip():
                yield doc


def split_documents(docs: Iterable[str], split: str, every: int) -> Iterator[str]:
    """The documents of ``split``: every ``every``-th to validation, the others to train."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits: {SPLITS}.")
    held_out = False
    pending = None  # train documents lag by one: the last may move to validation.
    for i, doc in enumerate(docs):
        is_val = i % every == every - 1
        held_out |= is_val
        if split == "validation":
            pending = None if is_val else doc
            if is_val:
                yield doc
            continue
        if pending is not None:
            yield pending
        pending = None if is_val else doc
    if split == "validation" and not held_out and pending is not None:
        yield pending
    if split == "train" and pending is not None and held_out:
        yield pending
