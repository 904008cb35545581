"""Validation NELBO: consistent units, the uniform-model value, and Monte Carlo variance."""

import math

import jax
import numpy as np
import pytest

from mdlm_jax import evaluate, model
from mdlm_jax.parallel import mesh as mesh_lib


@pytest.fixture(scope="module")
def setup():
    from conftest import make_tiny_config

    cfg = make_tiny_config(eval__batch_size=16, eval__num_batches=1)
    mesh = mesh_lib.make_mesh(cfg.mesh)
    apply, _, _ = model.abstract(cfg.model)
    # a fresh DiT has a zero output head: every logit is 0, a uniform model
    params = jax.jit(model.init_fn(cfg.model))(jax.random.key(0))
    return cfg, mesh, apply, params


def run(setup, **overrides):
    cfg, mesh, apply, params = setup
    cfg = cfg.copy_and_resolve_references()
    for k, v in overrides.items():
        if "__" in k:
            group, key = k.split("__")
            cfg[group][key] = v
        else:
            cfg[k] = v
    return evaluate.evaluate(apply, params, cfg, mesh)


def test_units_are_consistent(setup):
    r = run(setup, eval__mc_samples=2)
    assert r["bits_per_token"] == pytest.approx(r["nats_per_token"] / math.log(2), rel=1e-12)
    assert r["perplexity"] == pytest.approx(math.exp(r["nats_per_token"]), rel=1e-12)
    assert r["tokens"] == 16 * 32 and r["sequences"] == 16 and r["mc_samples"] == 2
    assert "2 MC time samples" in evaluate.format_result(r, setup[0])


def test_uniform_model_scores_log_v_minus_one(setup):
    """Zero logits: log(257) nats per masked token (the mask id excluded), times the
    log-linear schedule's E[-alpha'] = 1 - eps. 3 sigma of this estimate is < 10%."""
    r = run(setup, eval__mc_samples=16)
    want = math.log(257) * (1 - 1e-3)
    assert r["nats_per_token"] == pytest.approx(want, rel=0.1)


def test_more_mc_samples_reduce_the_variance_across_seeds(setup):
    def spread(k):
        vals = [run(setup, eval__mc_samples=k, seed=s)["nats_per_token"]
                for s in range(10)]
        return np.std(vals, ddof=1)

    one, many = spread(1), spread(16)
    # independent samples: std falls by ~4x; demand at least 2x
    assert many < one / 2, f"std across seeds: {one:.4f} (1 sample) vs {many:.4f} (16)"


def test_any_batch_size_on_eight_devices(setup):
    """eval.batch_size=3 on 8 devices: padded to 8 with rows that score nothing."""
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    cfg, mesh, apply, params = setup
    assert mesh_lib.data_parallel_size(mesh) == 8
    r = run(setup, eval__batch_size=3, eval__mc_samples=1)
    assert r["tokens"] == 3 * 32 and r["sequences"] == 3


def test_bits_per_character_equal_bits_per_token_on_byte_tokens(setup):
    """The tiny config's char tokens of the (ASCII) embedded corpus: one character each."""
    r = run(setup, eval__mc_samples=1)
    assert r["characters"] == r["tokens"]
    assert r["bits_per_character"] == pytest.approx(r["bits_per_token"], rel=1e-12)
    assert "bits/character" in evaluate.format_result(r, setup[0])


def test_scored_characters_by_hand():
    from mdlm_jax.data.tokenizers import CharTokenizer, KJVBPETokenizer

    char = CharTokenizer()
    ids = list("né!".encode()) + [char.eos_id]  # 'é' is two byte tokens, one character
    tokens = np.array([ids, ids])
    scored = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 1, 0]], bool)  # row 2: 'n' and '!'
    assert evaluate.scored_characters(char, tokens, scored) == (3 + 1) + 2
    bpe = KJVBPETokenizer()
    ids = bpe.encode("In the beginning God") + [bpe.eos_id]
    assert len(ids) < 20  # subwords: fewer tokens than the 20 + 1 characters
    assert evaluate.scored_characters(bpe, np.array([ids]), np.ones((1, len(ids)), bool)) \
        == len("In the beginning God") + 1
