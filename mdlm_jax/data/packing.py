"""Packing tokenized documents into fixed-length records.

* ``wrap`` (MDLM): EOS after every document, everything concatenated and cut into chunks of
  exactly ``seq_len``; the last partial chunk is dropped. ``valid`` is all True, except
  where a document gives its own flags (mask tokens given as input: ``task_documents``).
* ``pad`` (LM1B style): one document per record, truncated to ``seq_len``, an EOS after it when
  it fits, padded with EOS. ``valid`` marks the document tokens and its closing EOS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

PACKINGS = ("wrap", "pad")


def check_packing(packing: str, seq_len: int) -> None:
    if packing not in PACKINGS:
        raise ValueError(f"Unknown packing {packing!r}; valid: {', '.join(PACKINGS)}.")
    if int(seq_len) < 2:
        raise ValueError(f"data.seq_len must be >= 2, got {seq_len}.")


def tokenize(docs: Iterable[str], tokenizer, batch_size: int = 256) -> Iterator[list[int]]:
    """Token ids of each document, encoded in batches."""
    batch: list[str] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == batch_size:
            yield from tokenizer.encode_batch(batch)
            batch = []
    if batch:
        yield from tokenizer.encode_batch(batch)


def pack_wrap(token_lists: Iterable, seq_len: int, eos_id: int) -> Iterator[dict]:
    """An item is a list of ids, or ``(ids, valid)`` with a flag per id (the EOS after a
    document is valid)."""
    buf: list[int] = []
    flags: list[bool] = []
    for item in token_lists:
        ids, ok = item if isinstance(item, tuple) else (item, None)
        buf.extend(ids)
        buf.append(eos_id)
        flags.extend([True] * len(ids) if ok is None else ok)
        flags.append(True)
        n = len(buf) // seq_len
        if n:
            rows = np.asarray(buf[: n * seq_len], np.int32).reshape(n, seq_len)
            valid = np.asarray(flags[: n * seq_len], np.bool_).reshape(n, seq_len)
            buf, flags = buf[n * seq_len :], flags[n * seq_len :]
            for row, v in zip(rows, valid):
                yield {"tokens": row, "valid": v}


def pack_pad(token_lists: Iterable[list[int]], seq_len: int, eos_id: int) -> Iterator[dict]:
    for ids in token_lists:
        ids = list(ids[:seq_len])
        if len(ids) < seq_len:
            ids.append(eos_id)
        tokens = np.full(seq_len, eos_id, np.int32)
        tokens[: len(ids)] = ids
        valid = np.zeros(seq_len, np.bool_)
        valid[: len(ids)] = True
        yield {"tokens": tokens, "valid": valid}


def pack(token_lists: Iterable[list[int]], packing: str, seq_len: int, eos_id: int):
    check_packing(packing, seq_len)
    fn = pack_wrap if packing == "wrap" else pack_pad
    return fn(token_lists, int(seq_len), int(eos_id))
