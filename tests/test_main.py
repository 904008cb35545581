"""The command line: config errors are one clear line, a missing command prints the usage."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(*args, tmp_path):
    cmd = [sys.executable, "-m", "mdlm_jax.main", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_misspelled_config_key_names_the_nearest_valid_key(tmp_path):
    r = main("train", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "w"),
             "--config.optimizer.learning_rat=1", tmp_path=tmp_path)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{r.stderr}"
    assert "learning_rat" in lines[0] and "optimizer.learning_rate" in lines[0]
    assert not (tmp_path / "w").exists()


def test_wrong_type_for_a_key_is_a_clear_error(tmp_path):
    r = main("train", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "w"),
             "--config.train.num_steps=many", tmp_path=tmp_path)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "num_steps" in err and "many" in err, err
    assert "Traceback" not in err, err
    assert not (tmp_path / "w").exists()


def test_missing_command_prints_usage(tmp_path):
    r = main("--config", "configs/quickstart.py", "--workdir", str(tmp_path / "w"),
             tmp_path=tmp_path)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "usage" in out.lower() and "train" in out and "eval" in out
    assert "Traceback" not in out
