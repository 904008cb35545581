"""Document readers: the embedded corpus and local text files, plus the train/validation split.

Local files (``data.files`` glob, ``**`` allowed), read in sorted path order:

* ``.txt``: the whole file is one document (the usual OpenWebText layout: one file per page);
* ``.jsonl`` / ``.jsonl.gz``: one document per line, from the field ``text``;
* ``.parquet``: one document per row of the ``text`` column (needs ``pyarrow``).

Empty (whitespace-only) documents are skipped. Files must be UTF-8 text: a file that is not
(a binary file, another encoding), a malformed JSON line or a source with fewer than two
documents is an error naming the file (and line) and the fix, so nothing wrong is built.

The split is by document position in that order:
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


def _text(raw: bytes, where: str) -> str:
    """``raw`` as UTF-8 text, or an error naming ``where`` (a binary file is refused)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text (byte {e.start} is {raw[e.start]:#04x}); "
                         "convert the file to UTF-8 or remove it from data.files") from None
    if "\x00" in text:
        raise ValueError(f"{where}: holds NUL bytes, so it is a binary file, not text; remove "
                         "it from data.files")
    return text


def jsonl_records(path: str) -> Iterator[tuple[dict, str]]:
    """``(record, 'path:line')`` of each non-empty line of a ``.jsonl`` / ``.jsonl.gz``
    file; a line that is not UTF-8 or not a JSON object is an error naming its line."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f):
                where = f"{path}:{n + 1}"
                line = _text(raw, where)
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); "
                                     "fix or remove that line") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: a line must be a JSON object, not "
                                     f"{type(record).__name__}; fix or remove that line")
                yield record, where
    except (EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: damaged gzip file ({e}); re-create or remove it") from None


def _jsonl_documents(path: str) -> Iterator[str]:
    for record, where in jsonl_records(path):
        if "text" not in record:
            raise KeyError(f"{where}: record has no 'text' field.")
        if not isinstance(record["text"], str):
            raise ValueError(f"{where}: 'text' is a {type(record['text']).__name__}, not a "
                             "string; fix that line")
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
    n = 0
    for path in list_files(pattern):
        if path.endswith(".txt"):
            with open(path, "rb") as f:
                docs: Iterable[str] = [_text(f.read(), path)]
        elif path.endswith(".parquet"):
            docs = _parquet_documents(path)
        else:
            docs = _jsonl_documents(path)
        for doc in docs:
            if doc and doc.strip():
                n += 1
                yield doc
    check_count(n, pattern, "documents")


def check_count(n: int, pattern: str, what: str) -> None:
    """A dataset needs two items at least: one for training, one held out."""
    if n < 2:
        raise ValueError(f"data.files={pattern!r} holds {n} non-empty {what}; a dataset needs "
                         "at least 2 (one is held out for validation): add text to the files "
                         "or point data.files at others")


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
