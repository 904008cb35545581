"""Scoring at the answer slot: AR next-token, MDLM vs the sampler, attribution gradient."""

import context_support
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from context_support import suite_config

from mdlm_jax.context import harness, scoring, tasks
from mdlm_jax.diffusion import sampler
from mdlm_jax.parallel import mesh as mesh_lib

# the shared fixtures (see context_support)
ar_workdir = context_support.ar_workdir
mdlm_workdir = context_support.mdlm_workdir
one_device_mesh = context_support.one_device_mesh


def _items(model, cx, points):
    return [(p, *harness.encode_point(p, model, cx)) for p in points]


def _run(runner, items, method="score"):
    """As the harness does: a full batch of 8 (one shape, compiled once per session)."""
    return runner.run(method, items + [items[-1]] * (8 - len(items)))[:len(items)]


def _points(k, n=3, location="right"):
    return [harness.experiments.Point("colour", "largest", i,
                                      tasks.Layout(1, 2 + i, location=location), extra=k)
            for i in range(n)]


def test_ar_scoring_is_the_next_token_distribution(ar_workdir, one_device_mesh):
    cfg = suite_config(ar_workdir)
    model = harness.load_model(cfg, one_device_mesh)
    assert model.causal
    runner = harness.Runner(model, cfg.context, one_device_mesh)
    items = _items(model, cfg.context, _points(0, n=2) + _points(0, n=1, location="middle"))
    outs = _run(runner, items)
    letters = list(tasks.letter_ids(model.tokenizer))
    last = jax.jit(lambda p, x: model.apply(p, x)[0, -1])
    for (_, _, enc, _), out in zip(items, outs):
        prefix = jnp.asarray(enc.tokens[:enc.slot])[None]  # nothing after the slot, no padding
        logits = last(model.params, prefix)
        probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32)))
        np.testing.assert_allclose(out["letter_probs"], probs[letters], rtol=1e-4, atol=1e-7)
        assert int(np.argmax(out["letter_probs"])) == int(np.argmax(probs[letters]))
        assert int(out["pred"]) == int(np.argmax(probs))


@pytest.mark.parametrize("k", [0, 5])
def test_mdlm_scoring_equals_the_samplers_first_step(mdlm_workdir, one_device_mesh, k):
    cfg = suite_config(mdlm_workdir)
    model = harness.load_model(cfg, one_device_mesh)
    runner = harness.Runner(model, cfg.context, one_device_mesh)
    items = _items(model, cfg.context, _points(k, n=2))
    outs = _run(runner, items)
    for (_, _, enc, masks), out in zip(items, outs):
        assert masks == k + 1
        s = sampler.Settings(strategy="confidence", steps=1, gen_length=1, block_length=1,
                             extra_masks=k, temperature=0.0, mask_id=model.mask_id,
                             max_length=512)
        canvas, start = sampler.build_canvas(enc.tokens[:enc.slot], s, 1)
        np.testing.assert_array_equal(canvas[0], enc.tokens)
        got = jax.jit(lambda p, c, s=s, start=start: sampler.generate(
            model.apply, p, c, jax.random.key(0), s, gen_start=start)["tokens"])(
            model.params, canvas)
        assert int(got[0, start]) == int(out["pred"])
        assert int(out["pred"]) != model.mask_id


def test_scores_do_not_depend_on_the_mesh_or_the_batch(mdlm_workdir, one_device_mesh):
    cfg = suite_config(mdlm_workdir)
    model = harness.load_model(cfg, one_device_mesh)
    items = _items(model, cfg.context, _points(2, n=8))
    one = _run(harness.Runner(model, cfg.context, one_device_mesh), items)
    mesh8 = mesh_lib.make_mesh(cfg.mesh)
    model8 = harness.load_model(cfg, mesh8)
    eight = harness.Runner(model8, cfg.context, mesh8).run("score", items[::-1])[::-1]
    for a, b in zip(one, eight):
        assert int(a["pred"]) == int(b["pred"])
        np.testing.assert_allclose(a["letter_probs"], b["letter_probs"], rtol=1e-4, atol=1e-7)


def test_attribution_gradient_matches_finite_differences(mdlm_workdir, one_device_mesh):
    cfg = suite_config(mdlm_workdir)
    model = harness.load_model(cfg, one_device_mesh)
    runner = harness.Runner(model, cfg.context, one_device_mesh)
    (item,) = _items(model, cfg.context, _points(2, n=1))
    enc = item[2]
    tokens = jnp.asarray(enc.tokens)[None]
    seg = jnp.ones_like(tokens)
    slot = jnp.asarray([enc.slot])
    out = jax.jit(lambda p, *a: scoring.attribution(model.apply, p, *a, runner.spec))(
        model.params, tokens, seg, slot)
    pred = int(out["pred"][0])
    embeds = model.params["embed"][tokens]
    d = embeds.shape[-1]
    h = 1e-2
    picked = jax.jit(lambda e: scoring.answer_logits(
        model.apply, model.params, jnp.tile(tokens, (2 * d, 1)), jnp.tile(seg, (2 * d, 1)),
        jnp.tile(slot, 2 * d), runner.spec, embeds_BxLxD=e)[:, pred])
    for pos in (3, enc.slot - 1, enc.slot):
        eye = jnp.zeros((2 * d,) + embeds.shape[1:]).at[
            jnp.arange(2 * d), pos, jnp.tile(jnp.arange(d), 2)].set(
            jnp.concatenate([jnp.full(d, h), jnp.full(d, -h)]))
        f = np.asarray(picked(embeds + eye), np.float64)
        fd = (f[:d] - f[d:]) / (2 * h)
        np.testing.assert_allclose(float(out["grad_norm"][0, pos]), np.linalg.norm(fd),
                                   rtol=2e-2)
    assert float(out["grad_norm"][0, enc.slot]) > 0
