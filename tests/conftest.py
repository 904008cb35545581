"""Shared test set-up: 8 fake CPU devices, a private TFDS data dir, tiny configs.

Everything here runs before jax is imported by any test module, so the environment
variables below take effect (and are inherited by the subprocesses some tests start).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Broadcasting must be explicit: an array of lower rank is never silently padded with
# leading dims (a [D] scale meeting a [B, L, D] activation names its [1, 1, D] shape).
os.environ.setdefault("JAX_NUMPY_RANK_PROMOTION", "raise")

# Tests never read or write ~/tensorflow_datasets: a session-private data dir (the data
# package falls back to $TFDS_DATA_DIR when ``data.data_dir`` is empty).
_SESSION_DIR = tempfile.mkdtemp(prefix="mdlm_jax_tests_")
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
os.environ["TFDS_DATA_DIR"] = os.path.join(_SESSION_DIR, "tfds")

# Many tests (and their subprocesses) compile the same tiny programs; a session-local
# persistent compilation cache turns the repeats into cache hits. Set
# JAX_COMPILATION_CACHE_DIR yourself to keep it between sessions.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_SESSION_DIR, "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import functools  # noqa: E402
import pathlib  # noqa: E402
import runpy  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def load_config(name: str = "quickstart", arg=None):
    """``configs/<name>.py``'s ``get_config(arg)``."""
    get_config = runpy.run_path(str(CONFIGS / f"{name}.py"))["get_config"]
    return get_config(arg) if arg is not None else get_config()


def make_tiny_config(**overrides):
    """The quickstart config shrunk to a few-second CPU run.

    ``overrides`` are dotted keys with ``__`` for dots (``model__d_model=64``).
    """
    c = load_config("quickstart")
    m = c.model
    m.family = "dit"  # the tests name DiT projections (fc_in, fc_out)
    m.d_model, m.n_layers, m.n_heads, m.mlp_dim = 32, 2, 2, 64
    m.cond_dim, m.max_length = 32, 64
    # byte tokens (the quickstart ships a 2048-id BPE): small heads, one character per token
    c.data.tokenizer, m.vocab_size, c.diffusion.mask_id = "char", 258, 257
    c.data.seq_len, c.data.global_batch_size = 32, 8
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 3e-3, 5
    c.optimizer.ema_decay = 0.0
    c.train.num_steps, c.train.log_every = 20, 1
    c.train.sample_at_end, c.train.progress_bar = False, False
    c.checkpoint.every_steps = 1000
    c.eval.num_batches, c.eval.batch_size, c.eval.mc_samples = 1, 8, 1
    for key, value in overrides.items():
        node = c
        *path, leaf = key.split("__")
        for part in path:
            node = node[part]
        node[leaf] = value
    return c


@pytest.fixture
def tiny_config():
    """A factory: ``tiny_config(model__d_model=64, train__num_steps=5)``."""
    return make_tiny_config


@pytest.fixture(scope="session")
def session_dir():
    return pathlib.Path(_SESSION_DIR)


def tiny_model_config(family="dit", **overrides):
    """A 2-layer, width-32 model config (vocab 20 unless overridden)."""
    from mdlm_jax.config_base import base_config

    c = base_config().model
    c.family, c.vocab_size, c.d_model, c.n_layers, c.n_heads = family, 20, 32, 2, 2
    c.mlp_dim, c.cond_dim, c.max_length = 64, 16, 32
    for k, v in overrides.items():
        c[k] = v
    return c


class _Structure:
    """Hashable wrapper of a params shape tree (shapes and dtypes only)."""

    def __init__(self, tree):
        import jax

        self.tree = tree
        self.key = str([(jax.tree_util.keystr(p), tuple(s.shape), str(s.dtype))
                        for p, s in jax.tree_util.tree_flatten_with_path(tree)[0]])

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return self.key == other.key


@functools.cache
def _random_params(structure):
    """Random (not initialised) weights built with numpy, so nothing is compiled.

    Init zeroes the DiT head and adaLN; random weights make every path count. Norm scales
    are drawn around 1, everything else with std 0.2."""
    import jax
    import numpy as np

    rng = np.random.default_rng(0)

    def draw(path, s):
        x = rng.normal(size=s.shape).astype(s.dtype) * 0.2
        if jax.tree_util.keystr(path).endswith("['scale']"):
            x = x * 0.5 + 1.0
        return jax.numpy.asarray(x)

    return jax.tree_util.tree_map_with_path(draw, structure.tree)


@functools.cache
def _tiny_model(family, randomize, items):
    import jax

    from mdlm_jax import model

    cfg = tiny_model_config(family, **dict(items))
    apply, shapes, _ = model.abstract(cfg)
    if randomize:
        params = _random_params(_Structure(shapes))
    else:
        params = jax.jit(model.init_fn(cfg))(jax.random.key(0))
    return cfg, jax.jit(apply), params


def build_tiny_model(family="dit", *, randomize=True, **overrides):
    """``(model_cfg, jitted apply, params)`` of a tiny model. Variants with the same params
    structure (causal, scan_layers, remat, dtype, ...) share the same random params."""
    return _tiny_model(family, randomize, tuple(sorted(overrides.items())))


@pytest.fixture
def tiny_model():
    """A factory: ``cfg, apply, params = tiny_model('llama', n_kv_heads=1)``."""
    return build_tiny_model


def run_captured(config, workdir):
    """``train.run`` with its console output captured: ``(summary, console)``."""
    import contextlib
    import io

    from mdlm_jax import train

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary = train.run(config, str(workdir))
    return summary, out.getvalue()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(argv_of, *, timeout_s, extra_env=None):
    """Run ``argv_of(i)`` for i = 0, 1 as one JAX job of two local processes with 4 CPU
    devices each (joined on 127.0.0.1); returns the failures, one message per process
    that timed out or exited non-zero (with the end of its stderr)."""
    import subprocess

    port = free_port()
    procs = []
    for i in range(2):
        env = dict(os.environ)
        env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                   MDLM_COORDINATOR=f"127.0.0.1:{port}", MDLM_NUM_PROCESSES="2",
                   MDLM_PROCESS_ID=str(i),
                   PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                   **(extra_env or {}))
        procs.append(subprocess.Popen(argv_of(i), cwd=str(REPO), env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    failures = []
    for i, p in enumerate(procs):
        try:
            _, stderr = p.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            _, stderr = p.communicate()
            failures.append(f"process {i} timed out after {timeout_s}s\n{stderr[-4000:]}")
            continue
        if p.returncode != 0:
            failures.append(f"process {i} exited with {p.returncode}\n{stderr[-6000:]}")
    return failures


def flat_config_keys(c):
    """Dotted keys of a ConfigDict (``loss.terms`` counts as one key: its entries are data)."""
    from mdlm_jax.config_base import flat_keys

    return flat_keys(c, whole=("loss.terms",))
