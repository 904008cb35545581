"""Grain input pipelines over the prepared ``array_record`` datasets.

Determinism contract: the global order of records is a seeded permutation of the split,
reshuffled every epoch (grain ``MapDataset.shuffle`` seeds epoch ``e`` with ``seed + e``) and
repeated. Global batch ``k`` is global positions ``[k*B, (k+1)*B)``; process ``p`` of ``P``
reads only positions ``k*B + p*b .. k*B + (p+1)*b - 1`` with ``b = B // P``. So the global batch
at a step does not depend on the process count, and each process reads only its own records.

Batches are numpy dicts ``{'tokens': int32[b, seq_len], 'valid': bool[b, seq_len]}``. The
iterators are ``grain.DatasetIterator``\\ s: ``get_state()`` / ``set_state()`` and
``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore`` (orbax) resume them exactly. The
saved state's layout depends on ``data.num_workers``: resume with the same value.
"""

from __future__ import annotations

import grain
import jax
import numpy as np

from mdlm_jax.data import registry


class _ProcessSlot(grain.MapDataset):
    """This process's slice of each global batch, in order (see the module docstring).

    ``num_steps`` global batches are exposed; global positions past the parent's end read as
    ``pad`` (when given).
    """

    def __init__(
        self,
        parent,
        *,
        global_batch: int,
        local_batch: int,
        index: int,
        num_steps: int,
        pad: dict | None = None,
    ):
        super().__init__(parent)
        self._global, self._local, self._index = global_batch, local_batch, index
        self._num_steps, self._pad = num_steps, pad

    def __len__(self) -> int:
        return self._num_steps * self._local

    def __str__(self) -> str:
        return f"_ProcessSlot(index={self._index}, local_batch={self._local})"

    def _position(self, index: int) -> int:
        step, j = divmod(index, self._local)
        return step * self._global + self._index * self._local + j

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        pos = self._position(index)
        if self._pad is not None and pos >= len(self._parent):
            return self._pad
        return self._parent[pos]

    def _getitems(self, indices):
        if self._pad is not None:
            return [self[i] for i in indices]
        return self._parent._getitems([self._position(i) for i in indices])


def _processes(global_batch_size: int, process_index, process_count) -> tuple[int, int, int]:
    p = jax.process_index() if process_index is None else int(process_index)
    n = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= p < n:
        raise ValueError(f"process_index {p} is not in [0, {n}).")
    if global_batch_size <= 0 or global_batch_size % n:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of the "
            f"process count {n}."
        )
    return p, n, global_batch_size // n


def _source(data_cfg, split: str):
    source = registry.data_source(data_cfg, split)
    if len(source) == 0:
        raise ValueError(f"Split {split!r} of {data_cfg.name!r} has no records.")
    return source


def _iterate(ds: grain.MapDataset, local: int, data_cfg):
    """Whole batches are read ahead (4 in flight); with ``data.num_workers`` > 0, worker
    processes produce alternate batches, which grain hands back in order. Records become
    batch rows by the dataset's ``registry.Dataset.to_batch`` first."""
    options = grain.ReadOptions(num_threads=4, prefetch_buffer_size=4)
    to_batch = registry.dataset(data_cfg.name).to_batch
    if to_batch is not None:
        ds = ds.map(to_batch)
    it_ds = ds.batch(local, drop_remainder=True).to_iter_dataset(options)
    workers = int(getattr(data_cfg, "num_workers", 0) or 0)
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain workers read absl flags (defaults suffice)
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(workers))
    return iter(it_ds)


def make_iterator(
    data_cfg,
    split: str,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    shuffle: bool | None = None,
    num_epochs: int | None = None,
):
    """Training iterator: shuffled (``data_cfg.shuffle`` by default), repeated forever when
    ``num_epochs`` is None, yielding this process's share of each global batch."""
    p, _, local = _processes(global_batch_size, process_index, process_count)
    source = _source(data_cfg, split)
    ds = grain.MapDataset.source(source)
    if data_cfg.shuffle if shuffle is None else shuffle:
        ds = ds.shuffle(seed=int(seed) % 2**32)
    ds = ds.repeat(num_epochs)
    ds = _ProcessSlot(
        ds,
        global_batch=global_batch_size,
        local_batch=local,
        index=p,
        num_steps=len(ds) // global_batch_size,
    )
    return _iterate(ds, local, data_cfg)


def make_eval_iterator(
    data_cfg,
    split: str | None = None,
    *,
    global_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
):
    """One ordered pass over ``split`` (default ``data_cfg.eval_split``).

    The last global batch is completed with padding rows (tokens 0, ``valid`` all False), so
    every record is seen once and every batch has the full shape.
    """
    split = split or data_cfg.eval_split
    p, _, local = _processes(global_batch_size, process_index, process_count)
    source = _source(data_cfg, split)
    first = source[0]
    pad = {k: np.zeros_like(np.asarray(v)) for k, v in first.items()}
    num_steps = -(-len(source) // global_batch_size)
    ds = _ProcessSlot(
        grain.MapDataset.source(source),
        global_batch=global_batch_size,
        local_batch=local,
        index=p,
        num_steps=num_steps,
        pad=pad,
    )
    return _iterate(ds, local, data_cfg)


def dataset_info(data_cfg) -> dict:
    """Records per split, sequence length and where the prepared dataset lives."""
    builder = registry.load_builder(data_cfg)
    return {
        "name": data_cfg.name,
        "dir": builder.data_dir,
        "seq_len": int(data_cfg.seq_len),
        "packing": data_cfg.packing,
        "splits": {k: int(v.num_examples) for k, v in builder.info.splits.items()},
    }
