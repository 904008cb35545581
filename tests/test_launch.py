"""The launch scripts' dry runs print exactly what each host would run, and run nothing."""

import os
import shlex
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dry_run(script, *args, **env):
    full = dict(os.environ, DRY_RUN="1", PATH="/usr/bin:/bin", **env)
    return subprocess.run(["bash", f"launch/{script}", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=30)


def test_tpu_pod_dry_run_prints_the_worker_command():
    r = dry_run("tpu_pod.sh", "--config.train.num_steps=5", "--config.data.files=/d/*.jsonl",
                TPU_NAME="pod", ZONE="us-east5-a", CONFIG="configs/llada_1b.py:fsdp",
                WORKDIR="/mnt/gcs/run")
    assert r.returncode == 0, r.stderr  # gcloud is not on PATH: nothing was run
    out = r.stdout
    assert "gcloud compute tpus tpu-vm ssh pod --zone us-east5-a --worker=all" in out, out
    train = [ln.strip() for ln in out.splitlines() if "mdlm_jax.main train" in ln]
    assert len(train) == 1, out
    assert shlex.split(train[0]) == [
        "MDLM_DISTRIBUTED=auto", "python", "-m", "mdlm_jax.main", "train", "--config",
        "configs/llada_1b.py:fsdp", "--workdir", "/mnt/gcs/run", "--config.train.num_steps=5",
        "--config.data.files=/d/*.jsonl"]
    assert "source launch/xla_flags.sh tpu" in out


def test_slurm_dry_run_prints_one_command_per_node():
    r = dry_run("slurm_gpu.sbatch", "--config.train.num_steps=5", NODES="3",
                CONFIG="configs/mdlm_owt_small.py", WORKDIR="/shared/run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3, r.stdout
    for i, line in enumerate(lines):
        assert line.startswith(f"dry run: node {i} of 3 (process {i}):"), line
        cmd = shlex.split(line.split("MDLM_DISTRIBUTED=auto", 1)[1])
        assert cmd == ["python", "-m", "mdlm_jax.main", "train", "--config",
                       "configs/mdlm_owt_small.py", "--workdir", "/shared/run",
                       "--config.train.num_steps=5"]


def test_missing_settings_are_named():
    r = dry_run("slurm_gpu.sbatch", CONFIG="configs/quickstart.py")
    assert r.returncode != 0 and "set WORKDIR" in r.stderr
