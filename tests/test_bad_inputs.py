"""A catalogue of bad inputs: each is refused with one line ``error: ...`` through the one
error path of every entry point (``command_line.run``), and leaves the workdir (or data
dir) byte for byte as it was.

Entries are ``(name, make_call, expected)``: ``make_call(work, tmp)`` returns the call,
``expected`` a regex the one line must match. The shared workdir ``trained`` holds
checkpoints 2 and 4 of a tiny run (EMA off, clipping on).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from mdlm_jax import command_line

N_STEPS = 4


def tiny(**overrides):
    from conftest import make_tiny_config

    base = dict(train__num_steps=N_STEPS, checkpoint__every_steps=2,
                checkpoint__async_save=False, optimizer__decay="constant",
                optimizer__warmup_steps=1)
    base.update(overrides)
    return make_tiny_config(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import run_captured

    work = tmp_path_factory.mktemp("bad_inputs") / "trained"
    run_captured(tiny(train__eval_at_end=False), work)  # the final eval is not needed here
    return work


def tree_hash(root) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = ""
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def one_line_error(call, capsys) -> str:
    """Run ``call`` through the shared error path; return its one line."""
    with pytest.raises(SystemExit) as exit_info:
        command_line.run(call)
    msg = str(exit_info.value.code)
    assert "\n" not in msg and msg.startswith("error: "), msg
    assert "Traceback" not in capsys.readouterr().err
    return msg


# ------------------------------------------------------------------ the commands
def _train(cfg, work):
    from mdlm_jax import train

    return lambda: train.run(cfg, str(work))


def _eval(cfg, work):
    from mdlm_jax import evaluate

    return lambda: evaluate.run(cfg, str(work))


def _sample(cfg, work):
    from mdlm_jax import sample

    return lambda: sample.run(cfg, str(work))


def _live_pid_lock(work, tmp):
    with open(work / "train.lock", "w") as f:  # the holder: this test's parent (alive)
        json.dump({"host": os.uname().nodename, "pid": os.getppid(),
                   "started": "2026-01-01T00:00:00+00:00"}, f)
    return _train(tiny(train__num_steps=N_STEPS + 2), work)


def _empty_newest_step(work, tmp):
    os.makedirs(work / "checkpoints" / "6")
    return _train(tiny(train__num_steps=N_STEPS + 4), work)


def _missing_metadata(work, tmp):
    os.remove(work / "checkpoints" / str(N_STEPS) / "_CHECKPOINT_METADATA")
    return _train(tiny(train__num_steps=N_STEPS + 2), work)


def _truncated_newest(work, tmp):
    truncate_arrays(work / "checkpoints" / str(N_STEPS))
    return _train(tiny(train__num_steps=N_STEPS + 2), work)


def truncate_arrays(step_dir):
    for dirpath, _, files in os.walk(step_dir / "state"):
        for f in files:
            if os.sep + "d" in dirpath:  # the ocdbt data files
                with open(os.path.join(dirpath, f), "r+b") as fh:
                    fh.truncate(max(os.path.getsize(os.path.join(dirpath, f)) // 3, 1))


CATALOGUE = [
    ("checkpoint.keep=0", lambda w, t: _train(tiny(checkpoint__keep=0), w),
     r"checkpoint\.keep=0 would delete every checkpoint.*keep=1"),
    ("second train on a held workdir", _live_pid_lock,
     rf"in use by another train run \(host .*, pid {os.getppid()}, started 2026"),
    ("empty newest step directory", _empty_newest_step,
     r"step 6 \(empty step directory\); it was kept.*step 4.*mv .*/checkpoints/6"),
    ("newest step without metadata", _missing_metadata,
     r"step 4 \(_CHECKPOINT_METADATA is missing\).*step 2"),
    ("truncated newest step", _truncated_newest,
     r"step 4 \(unreadable.*\).*it was kept.*step 2.*mv "),
    ("resume with EMA switched on", lambda w, t: _train(
        tiny(train__num_steps=6, optimizer__ema_decay=0.9), w),
     r"optimizer\.ema_decay='off' there but 'on' here.*config\.json.*--config\.optimizer"
     r"\.ema_decay=0"),
    ("resume with clipping switched off", lambda w, t: _train(
        tiny(train__num_steps=6, optimizer__grad_clip=0.0), w),
     r"optimizer\.grad_clip='on' there but 'off' here"),
    ("resume with data.num_workers changed", lambda w, t: _train(
        tiny(train__num_steps=6, data__num_workers=2), w),
     r"data\.num_workers=0 there but 2 here.*--config\.data\.num_workers=0"),
    ("sample without the model override", lambda w, t: _sample(tiny(model__d_model=64), w),
     r"model\.d_model=32 there but 64 here.*--config\.model\.d_model=32"),
    ("eval without the model override", lambda w, t: _eval(tiny(model__n_layers=3), w),
     r"model\.n_layers=2 there but 3 here"),
    ("eval with another tokenizer than the model's", lambda w, t: _eval(
        tiny(data__tokenizer="gpt2"), w),
     r"data\.tokenizer='char' there but 'gpt2' here.*--config\.data\.tokenizer=char"),
]


@pytest.mark.parametrize("name,make_call,expected", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_run_input_is_one_line_and_leaves_the_workdir(name, make_call, expected,
                                                          trained, tmp_path, capsys):
    work = tmp_path / "w"
    shutil.copytree(trained, work)
    call = make_call(work, tmp_path)
    before = tree_hash(work)
    msg = one_line_error(call, capsys)
    assert re.search(expected, msg), msg
    assert tree_hash(work) == before, f"{name}: the refused command changed the workdir"


# ------------------------------------------------------------------ data preparation
def _files(tmp, name, content: bytes):
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(content)
    (src / "ok.txt").write_bytes(b"a fine document\n")
    return str(src / "*")


def _prepare(files, tmp, *extra):
    from mdlm_jax.data import prepare

    argv = ["--name", "text_files", "--files", files, "--data_dir", str(tmp / "data"), *extra]
    return lambda: prepare.main(argv)


def _prompt_answer(files, tmp):
    from mdlm_jax.data import prompt_answer

    return lambda: prompt_answer.main(["--files", files, "--data_dir", str(tmp / "data")])


def _bad_tokenizer(tmp):
    (tmp / "tok").mkdir()
    (tmp / "tok" / "tokenizer.json").write_text('{"version": "1.0", "model": {')
    return _prepare(_files(tmp, "a.txt", b"one document\n"), tmp, "--tokenizer", "hf",
                    "--tokenizer_path", str(tmp / "tok"))


DATA_CATALOGUE = [
    ("non-UTF-8 text file", lambda t: _prepare(_files(t, "latin1.txt", "caf\xe9".encode(
        "latin-1")), t), r"latin1\.txt: not UTF-8 text \(byte 3 is 0xe9\).*convert"),
    ("binary file named .txt", lambda t: _prepare(_files(t, "img.txt", b"PK\x00\x00bin"), t),
     r"img\.txt: holds NUL bytes, so it is a binary file"),
    ("malformed JSON line", lambda t: _prepare(_files(
        t, "d.jsonl", b'{"text": "a"}\n\n{"text": "b",}\n'), t),
     r"d\.jsonl:3: malformed JSON .*fix or remove that line"),
    ("JSON line that is not an object", lambda t: _prepare(_files(
        t, "d.jsonl", b'{"text": "a"}\n[1, 2]\n'), t), r"d\.jsonl:2: a line must be a JSON"),
    ("empty corpus", lambda t: _prepare(str(_only(t, "blank.txt", b" \n")), t),
     r"holds 0 non-empty documents; a dataset needs at least 2"),
    ("corrupted tokenizer.json", _bad_tokenizer,
     r"tokenizer\.json is not a valid tokenizer\.json .*replace it"),
    ("prompt/answer with a malformed line", lambda t: _prompt_answer(str(_only(
        t, "pa.jsonl", b'{"prompt": "q", "answer": "a"}\n{"prompt": \n')), t),
     r"pa\.jsonl:2: malformed JSON"),
    ("prompt/answer file that is not UTF-8", lambda t: _prompt_answer(str(_only(
        t, "pa.jsonl", b'{"prompt": "q\xff", "answer": "a"}\n')), t),
     r"pa\.jsonl:1: not UTF-8 text"),
]


def _only(tmp, name, content: bytes):
    src = tmp / "only"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(content)
    return src / name


@pytest.mark.parametrize("name,make_call,expected", DATA_CATALOGUE,
                         ids=[c[0] for c in DATA_CATALOGUE])
def test_bad_data_is_one_line_and_builds_nothing(name, make_call, expected, tmp_path, capsys):
    call = make_call(tmp_path)
    msg = one_line_error(call, capsys)
    assert re.search(expected, msg), msg
    data = tmp_path / "data"
    left = sorted(str(p.relative_to(data)) for p in data.rglob("*")) if data.exists() else []
    assert left == [], f"{name}: a failed build left {left}"


# ------------------------------------------------------------------ the command line
@pytest.mark.parametrize("argv,expected", [
    (["train", "--config", "configs/missing.py", "--workdir", "W"],
     r"--config configs/missing\.py does not exist"),
    (["train", "--config", "configs/quickstart.py:bogus", "--workdir", "W"],
     r"unknown config args \['bogus'\]; valid: smoke"),
])
def test_bad_command_line_is_one_line(argv, expected, tmp_path):
    argv = [a.replace("W", str(tmp_path / "w")) for a in argv]
    r = subprocess.run([sys.executable, "-m", "mdlm_jax.main", *argv], capture_output=True,
                       text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__))))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------ faults, not mistakes
@pytest.mark.parametrize("when", ["save", "async write"])
def test_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(
        when, trained, tmp_path, monkeypatch, capsys):
    import errno

    import orbax.checkpoint as ocp

    from mdlm_jax import model_loading

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    real_save, real_wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished
    failed = []

    def full_disk(self, step, *args, **kwargs):
        if step <= N_STEPS:
            return real_save(self, step, *args, **kwargs)
        if when == "save":
            raise OSError(errno.ENOSPC, "No space left on device")
        failed.append(step)  # the background write fails; orbax reports it when waited on
        return True

    def wait(self):
        if failed:  # as tensorstore words it, wrapped by the async thread
            raise ValueError("Error writing ocdbt data: [errno 28] No space left on device")
        return real_wait(self)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait)
    msg = one_line_error(_train(tiny(train__num_steps=N_STEPS + 2, train__eval_at_end=False),
                                work), capsys)
    assert re.search(rf"no space left .* while saving step {N_STEPS + 2}; the newest "
                     rf"complete checkpoint, step {N_STEPS}, is intact", msg), msg
    monkeypatch.undo()
    _, params, step = model_loading.load_model(str(work), tiny())
    assert step == N_STEPS and params["embed"].shape == (258, 32)
    assert not (work / "train.lock").exists()


def test_stale_lock_of_a_killed_run_is_taken_over(trained, tmp_path):
    from conftest import run_captured

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(work / "train.lock", "w") as f:
        json.dump({"host": os.uname().nodename, "pid": dead.pid, "started": "x"}, f)
    summary, console = run_captured(tiny(train__num_steps=N_STEPS + 1,
                                         train__eval_at_end=False), work)
    assert summary["start_step"] == N_STEPS and summary["end_step"] == N_STEPS + 1
    assert not (work / "train.lock").exists()  # released at the end


def test_eval_skips_a_damaged_newest_checkpoint_with_a_warning(trained, tmp_path, capsys):
    from mdlm_jax import model_loading

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    truncate_arrays(work / "checkpoints" / str(N_STEPS))
    before = tree_hash(work / "checkpoints")
    _, _, step = model_loading.load_model(str(work), tiny())
    assert step == 2
    err = capsys.readouterr().err
    assert re.search(rf"warning: damaged checkpoint .*step {N_STEPS} \(unreadable.*it was "
                     r"kept; the newest complete checkpoint is step 2", err), err
    assert tree_hash(work / "checkpoints") == before  # the damaged step is kept


def test_non_finite_eval_is_refused_and_writes_nothing(trained, tmp_path, monkeypatch):
    import jax
    import numpy as np

    from mdlm_jax import evaluate, model_loading

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    real = model_loading.load_model

    def nan_params(*args, **kwargs):
        apply, params, step = real(*args, **kwargs)
        return apply, jax.tree.map(lambda x: x * np.nan, params), step

    monkeypatch.setattr(model_loading, "load_model", nan_params)
    before = tree_hash(work)
    with pytest.raises(FloatingPointError, match="the evaluation is not finite .*nothing "
                       "was written"):
        evaluate.run(tiny(), str(work))
    assert tree_hash(work) == before


def test_a_refused_first_run_leaves_no_workdir(tiny_config, tmp_path, capsys):
    work = tmp_path / "new"
    msg = one_line_error(_train(tiny(data__name="text_files",
                                     data__files=str(tmp_path / "none" / "*.txt")), work),
                         capsys)
    assert "python -m mdlm_jax.data.prepare" in msg
    assert not work.exists()
