"""The ``sample`` command and the sample-quality metrics."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import json  # noqa: E402
import math  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mdlm_jax import model, sample  # noqa: E402
from mdlm_jax.config_base import base_config  # noqa: E402
from mdlm_jax.data.tokenizers import CharTokenizer  # noqa: E402
from mdlm_jax.diffusion import sample_metrics  # noqa: E402


def char_config():
    c = base_config()
    m = c.model
    m.family, m.d_model, m.n_layers, m.n_heads, m.mlp_dim = "llama", 32, 2, 4, 64
    m.vocab_size, m.max_length = 258, 64
    c.diffusion.mask_id = 257
    c.data.tokenizer, c.data.seq_len = "char", 64
    s = c.sampler
    s.gen_length, s.block_length, s.steps, s.batch_size = 16, 8, 8, 8
    s.prompt, s.extra_masks, s.strategy = "Hi", 3, "confidence"
    return c


def numpy_params(model_cfg, seed=0):
    _, shapes, _ = model.abstract(model_cfg)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape).astype(np.float32)), shapes)


def test_run_writes_jsonl_with_settings_and_never_overwrites(tmp_path, capsys):
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.checkpoint import save_params

    c = char_config()
    save_params(str(tmp_path), numpy_params(c.model), c, step=7)
    rows = sample.run(c, str(tmp_path))
    sample.write_jsonl(rows, str(tmp_path), 7, "confidence")
    folder = tmp_path / "samples"
    first = folder / "samples_step7_confidence.jsonl"
    second = folder / "samples_step7_confidence_1.jsonl"
    assert first.exists() and second.exists()
    lines = [json.loads(x) for x in first.read_text().splitlines()]
    assert len(lines) == 8 == len(rows)
    tok = CharTokenizer()
    for line in lines:
        assert line["extra_masks"] == 3 and line["strategy"] == "confidence"
        assert line["gen_length"] == 16 and len(line["token_ids"]) == 16
        assert line["prompt_ids"] == tok.encode("Hi") and line["seed"] == 0
        assert line["settings"]["block_length"] == 8 and line["step"] == 7
        assert 257 not in line["token_ids"]
        assert line["text"] == tok.decode(line["token_ids"])
    assert second.read_text() == first.read_text()
    assert "extra_masks=3" in capsys.readouterr().out


def test_sample_all_strategies_prints_one_sample_each(capsys):
    c = char_config()
    c.model.vocab_size, c.diffusion.mask_id, c.sampler.prompt = 40, 39, ""
    apply, _, _ = model.abstract(c.model)
    texts = sample.sample_all_strategies(apply, numpy_params(c.model), c, CharTokenizer())
    assert sorted(texts) == ["ancestral", "confidence", "threshold"]
    out = capsys.readouterr().out
    assert out.count("[sample ") == 3


def test_end_of_training_samples_on_eight_devices_inside_the_mesh(capsys):
    """The train loop samples inside ``jax.set_mesh``, on a data-parallel size (8) that
    does not divide the batch: every strategy must still print a sample."""
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.parallel import mesh as mesh_lib

    c = char_config()
    c.model.vocab_size, c.diffusion.mask_id, c.sampler.prompt = 40, 39, ""
    c.sampler.gen_length, c.sampler.block_length, c.sampler.steps = 8, 8, 4
    mesh = mesh_lib.make_mesh(c.mesh)
    apply, _, _ = model.abstract(c.model)
    with jax.set_mesh(mesh):
        texts = sample.sample_all_strategies(apply, numpy_params(c.model), c,
                                             CharTokenizer(), mesh=mesh)
    assert sorted(texts) == ["ancestral", "confidence", "threshold"]
    assert "skipped" not in capsys.readouterr().out


def test_prompt_ids_outside_the_vocabulary_are_refused():
    c = char_config()
    c.model.vocab_size, c.diffusion.mask_id = 40, 39
    apply, _, _ = model.abstract(c.model)
    with pytest.raises(ValueError, match="model.vocab_size=40"):
        sample.generate_batch(apply, {}, c, prompt_ids=CharTokenizer().encode("Hi"))


def test_unused_path_adds_a_suffix(tmp_path):
    (tmp_path / "a.jsonl").write_text("x")
    (tmp_path / "a_1.jsonl").write_text("x")
    assert sample.unused_path(str(tmp_path), "a").endswith("a_2.jsonl")


def test_unigram_entropy():
    assert sample_metrics.unigram_entropy([1, 1, 2, 2]) == pytest.approx(math.log(2))
    assert sample_metrics.unigram_entropy([5] * 9) == 0.0
    assert sample_metrics.mean_unigram_entropy([[1, 2, 3, 4], [7, 7]]) == pytest.approx(
        0.5 * math.log(4))


def test_ar_perplexity_of_a_uniform_model_is_the_vocab_size():
    vocab = 11

    def uniform(params, tokens, t=None, **_):
        return jnp.zeros(tokens.shape + (vocab,))

    toks = np.asarray([[1, 2, 3, 4], [5, 6, 0, 0]])
    valid = np.asarray([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    assert sample_metrics.ar_perplexity(uniform, {}, toks, valid) == pytest.approx(vocab)

    def peaked(params, tokens, t=None, **_):  # predicts token + 1 with prob ~1
        return 50.0 * jax.nn.one_hot((tokens + 1) % vocab, vocab)

    ppl = sample_metrics.ar_perplexity(peaked, {}, toks, valid)
    assert ppl == pytest.approx(1.0, abs=1e-3)
    q = sample_metrics.quality_metrics([[1, 2, 3], [4, 5]], eval_model=(peaked, {}))
    assert q["ar_perplexity"] == pytest.approx(1.0, abs=1e-3) and q["unigram_entropy"] > 0
