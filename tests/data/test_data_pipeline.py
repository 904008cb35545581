import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mdlm_jax.data import pipeline, registry
from mdlm_jax.data.builders import data_config

B = 8


@pytest.fixture
def cfg(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"{i:02d}.txt").write_text(f"doc{i} " + "xy" * (i % 4))
    cfg = data_config(
        name="text_files", files=str(src / "*.txt"), seq_len=4, data_dir=str(tmp_path / "d")
    )
    registry.prepare(cfg)
    return cfg


def _rows(cfg, split="train"):
    src = registry.data_source(cfg, split)
    return np.stack([src[i]["tokens"] for i in range(len(src))])


def _global_batches(cfg, count, steps, seed=0, **kw):
    its = [
        pipeline.make_iterator(
            cfg, "train", global_batch_size=B, seed=seed, process_index=p, process_count=count, **kw
        )
        for p in range(count)
    ]
    out = []
    for _ in range(steps):
        parts = [next(it) for it in its]
        assert all(p["tokens"].shape == (B // count, 4) for p in parts)
        assert all(p["tokens"].dtype == np.int32 and p["valid"].dtype == bool for p in parts)
        out.append(np.concatenate([p["tokens"] for p in parts]))
    return np.stack(out)


def test_global_batch_independent_of_process_count(cfg):
    rows = _rows(cfg)
    n = len(rows)
    steps = 2 * n // B + 2  # crosses epoch boundaries
    single = _global_batches(cfg, 1, steps)
    for count in (2, 4, 8):
        np.testing.assert_array_equal(_global_batches(cfg, count, steps), single)
    flat = single.reshape(-1, 4)
    first_epoch = {tuple(r) for r in flat[:n]}
    assert len(first_epoch) == len({tuple(r) for r in rows})  # a permutation of the split
    assert not np.array_equal(flat[:n], rows)  # shuffled
    assert not np.array_equal(flat[:n], flat[n : 2 * n])  # reshuffled each epoch
    other_seed = _global_batches(cfg, 1, steps, seed=1)
    assert not np.array_equal(other_seed, single)
    ordered = _global_batches(cfg, 2, n // B, shuffle=False)
    np.testing.assert_array_equal(ordered.reshape(-1, 4), rows[: (n // B) * B])


def test_finite_epochs(cfg):
    n = len(_rows(cfg))
    it = pipeline.make_iterator(
        cfg, "train", global_batch_size=B, seed=0, process_index=0, process_count=2, num_epochs=1
    )
    assert len(list(it)) == n // B


def test_state_round_trip(cfg):
    kw = dict(global_batch_size=B, seed=3, process_index=1, process_count=2)
    it = pipeline.make_iterator(cfg, "train", **kw)
    for _ in range(5):
        next(it)
    state = it.get_state()
    want = [next(it)["tokens"] for _ in range(4)]
    resumed = pipeline.make_iterator(cfg, "train", **kw)
    first = next(resumed)["tokens"]
    assert not np.array_equal(first, want[0])
    resumed.set_state(state)
    for w in want:
        np.testing.assert_array_equal(next(resumed)["tokens"], w)


def test_orbax_checkpoint_round_trip(cfg, tmp_path):
    kw = dict(global_batch_size=B, seed=5, process_index=0, process_count=1)
    it = pipeline.make_iterator(cfg, "train", **kw)
    for _ in range(3):
        next(it)
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
        mngr.save(3, args=ocp.args.Composite(ds=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        want = [next(it)["tokens"] for _ in range(3)]
        resumed = pipeline.make_iterator(cfg, "train", **kw)
        mngr.restore(3, args=ocp.args.Composite(ds=grain.checkpoint.CheckpointRestore(resumed)))
    for w in want:
        np.testing.assert_array_equal(next(resumed)["tokens"], w)


def test_eval_iterator_one_padded_pass(cfg):
    rows = _rows(cfg, "validation")
    assert len(rows) >= 1
    batches = [
        list(
            pipeline.make_eval_iterator(cfg, global_batch_size=B, process_index=p, process_count=2)
        )
        for p in range(2)
    ]
    assert len(batches[0]) == len(batches[1]) == -(-len(rows) // B)
    tokens = np.concatenate([np.concatenate([a["tokens"], b["tokens"]]) for a, b in zip(*batches)])
    valid = np.concatenate([np.concatenate([a["valid"], b["valid"]]) for a, b in zip(*batches)])
    np.testing.assert_array_equal(tokens[: len(rows)], rows)
    assert valid[: len(rows)].all() and not valid[len(rows) :].any()
    assert len(tokens) % B == 0


def test_batch_errors(cfg):
    with pytest.raises(ValueError, match="multiple of the process count 3"):
        pipeline.make_iterator(
            cfg, "train", global_batch_size=8, seed=0, process_index=0, process_count=3
        )
    with pytest.raises(ValueError, match="process_index"):
        pipeline.make_iterator(
            cfg, "train", global_batch_size=8, seed=0, process_index=2, process_count=2
        )


def test_embedded_built_on_first_use(tmp_path):
    cfg = data_config(seq_len=64, data_dir=str(tmp_path))
    assert not registry.get_builder(cfg).is_prepared()
    batch = next(pipeline.make_iterator(cfg, "train", global_batch_size=4, seed=0))
    assert batch["tokens"].shape == (4 // pipeline.jax.process_count(), 64)
    info = pipeline.dataset_info(cfg)
    assert info["splits"]["train"] > 10 * info["splits"]["validation"] > 0


def test_worker_processes_keep_the_order(cfg):
    kw = dict(global_batch_size=B, seed=2, process_index=1, process_count=2)
    plain = pipeline.make_iterator(cfg, "train", **kw)
    cfg.num_workers = 2
    workers = pipeline.make_iterator(cfg, "train", **kw)
    try:
        for _ in range(5):
            np.testing.assert_array_equal(next(workers)["tokens"], next(plain)["tokens"])
    finally:
        if hasattr(workers, "close"):
            workers.close()
