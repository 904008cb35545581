"""The training loop end to end: learning, exact resume, refusals with clear messages."""

import os
import shutil

import jax
import numpy as np
import pytest

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model_loading, monitoring, train
from mdlm_jax.checks import check_batch_tokens

N = 30  # steps before the interruption; the uninterrupted run does 2N


def resume_config(num_steps):
    from conftest import make_tiny_config

    # constant decay: with cosine the schedule depends on train.num_steps, so a run
    # configured for N steps is not the first half of a run configured for 2N
    return make_tiny_config(train__num_steps=num_steps, checkpoint__every_steps=N,
                            checkpoint__async_save=True, optimizer__decay="constant",
                            optimizer__ema_decay=0.9, optimizer__warmup_steps=5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import run_captured

    root = tmp_path_factory.mktemp("train")
    full, _ = run_captured(resume_config(2 * N), root / "full")
    first, _ = run_captured(resume_config(N), root / "resumed")
    second, console = run_captured(resume_config(2 * N), root / "resumed")
    return {"root": root, "full": full, "first": first, "second": second, "console": console}


def train_losses(workdir):
    rows = monitoring.read_metrics(str(workdir), "train")
    return {r["step"]: r["loss"] for r in rows}


def test_loss_falls(runs):
    losses = train_losses(runs["root"] / "full")
    assert sorted(losses) == list(range(1, 2 * N + 1))
    first = np.mean([losses[s] for s in range(1, 11)])
    last = np.mean([losses[s] for s in range(2 * N - 9, 2 * N + 1)])
    assert last < first - 0.8, f"loss did not fall: first-10 mean {first:.3f}, last {last:.3f}"
    ev = runs["full"]["eval"]
    assert np.isfinite(ev["nats_per_token"]) and ev["nats_per_token"] < np.log(256)


def test_resumed_run_equals_uninterrupted_run(runs):
    assert runs["first"]["end_step"] == N and runs["second"]["start_step"] == N
    assert f"Resumed from step {N}" in runs["console"]
    resumed_dir = runs["root"] / "resumed"
    assert f"loss curve: {resumed_dir / 'loss_curve.png'}" in runs["console"]
    assert f"TensorBoard logs: {resumed_dir / 'tensorboard'}" in runs["console"]
    assert (resumed_dir / "loss_curve.png").stat().st_size > 1000
    full, resumed = train_losses(runs["root"] / "full"), train_losses(runs["root"] / "resumed")
    assert sorted(resumed) == list(range(1, 2 * N + 1))
    for step in range(1, 2 * N + 1):  # same data order and noise before and after resuming
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step
    cfg = resume_config(2 * N)
    for use_ema in (False, True):
        _, a, sa = model_loading.load_model(str(runs["root"] / "full"), cfg, use_ema=use_ema)
        _, b, sb = model_loading.load_model(str(runs["root"] / "resumed"), cfg, use_ema=use_ema)
        assert sa == sb == 2 * N
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-6, atol=1e-6)


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def test_resume_with_a_different_model_shape_is_refused(runs, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(runs["root"] / "full", work)
    before = snapshot(work)
    cfg = resume_config(2 * N + 5)
    cfg.model.d_model = 64
    with pytest.raises(ValueError, match="model.d_model=32 there but 64 here") as err:
        train.run(cfg, str(work))
    assert "nothing was changed" in str(err.value)
    assert snapshot(work) == before, "the refused resume touched the workdir"
    _, params, step = model_loading.load_model(str(work), resume_config(2 * N))
    assert step == 2 * N and params["embed"].shape == (258, 32)


def test_a_diverged_state_is_never_saved(tiny_config, tmp_path):
    # lr 1e38: the state after step 1 holds finite (huge) numbers whose own loss is NaN
    cfg = tiny_config(optimizer__learning_rate=1e38, optimizer__warmup_steps=0,
                      optimizer__decay="constant", train__num_steps=10,
                      checkpoint__every_steps=1)
    work = tmp_path / "nan"
    with pytest.raises(train.NonFiniteLossError) as err:
        train.run(cfg, str(work))
    msg = str(err.value)
    assert "the state at step 1" in msg and "last finite at step 0" in msg, msg
    assert "None" not in msg and "No checkpoint of this run was written" in msg
    assert ckpt.latest_step(str(work)) is None  # nothing diverged was saved


def test_non_finite_loss_names_the_last_finite_step(tiny_config, tmp_path):
    cfg = tiny_config(optimizer__learning_rate=1e38, optimizer__warmup_steps=0,
                      optimizer__decay="constant", train__num_steps=10,
                      checkpoint__every_steps=1000)
    with pytest.raises(train.NonFiniteLossError) as err:
        train.run(cfg, str(tmp_path / "nan"))
    msg = str(err.value)
    # the loss at step 2 is that of the state after step 1: the last finite state is step 0
    assert "at step 2" in msg and "last finite at step 0" in msg and "None" not in msg, msg


def test_token_ids_outside_the_vocabulary(tiny_config, tmp_path):
    cfg = tiny_config(model__vocab_size=200, diffusion__mask_id=199)
    with pytest.raises(ValueError, match="model.vocab_size"):
        train.run(cfg, str(tmp_path / "w"))
    cfg = tiny_config()
    bad = np.zeros((2, 8), np.int32)
    bad[1, 3] = 300
    with pytest.raises(ValueError, match="token id 300 outside the model vocabulary"):
        check_batch_tokens(bad, cfg)
    bad[1, 3] = cfg.diffusion.mask_id
    with pytest.raises(ValueError, match="mask id"):
        check_batch_tokens(bad, cfg)
    valid = np.ones((2, 8), bool)
    with pytest.raises(ValueError, match="mask id"):
        check_batch_tokens(bad, cfg, valid)
    valid[1, 3] = False  # a mask given as input (the context_tasks corpus) is allowed
    check_batch_tokens(bad, cfg, valid)


def test_mask_id_colliding_with_the_tokenizer(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="collides"):
        train.run(tiny_config(diffusion__mask_id=100), str(tmp_path / "w"))


def test_seq_len_above_max_length(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="exceeds model.max_length"):
        train.run(tiny_config(data__seq_len=128), str(tmp_path / "w"))


def test_missing_dataset_names_the_prepare_command(tiny_config, tmp_path):
    cfg = tiny_config(data__name="text_files", data__files=str(tmp_path / "none" / "*.txt"))
    with pytest.raises(FileNotFoundError, match="python -m mdlm_jax.data.prepare") as err:
        train.run(cfg, str(tmp_path / "w"))
    assert "--name text_files" in str(err.value)
