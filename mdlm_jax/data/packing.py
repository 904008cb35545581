"""Packing tokenized documents into fixed-length records.

* ``wrap`` (MDLM): EOS after every document, everything concatenated and cut into chunks of
  exactly ``seq_len``; the last partial chunk is dropped. ``valid`` is all True.
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


def pack_wrap(token_lists: Iterable[list[int]], seq_len: int, eos_id: int) -> Iterator[dict]:
    buf: list[int] = []
    valid = np.ones(seq_len, np.bool_)
    for ids in token_lists:
        buf.extend(ids)
        buf.append(eos_id)
        n = len(buf) // seq_len
        if n:
            rows = np.asarray(buf[: n * seq_len], np.int32).reshape(n, seq_len)
            buf = buf[n * seq_len :]
            for row in rows:
                yield {"tokens": row, "valid": valid}


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
