"""The transformer family behind ``apply``: attention direction, GQA, layer stacking, remat,
logit shift, segments, the embeddings path, dtypes and logical-axis metadata."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax import model
from mdlm_jax.model.transformer import validate_model_config

V, B, L = 20, 2, 16
LOGICAL = {"batch", "length", "embed", "heads", "kv_heads", "head_dim", "mlp", "vocab",
           "layers", "cond", "lora_rank"}


def tokens(seed=0):
    return jax.random.randint(jax.random.key(seed), (B, L), 0, V)


T_HALF = jnp.full((B,), 0.5)


def logits_of(apply, params, toks, t=T_HALF, **kw):
    """``apply`` is jitted (conftest); one signature per model keeps compiles few."""
    return np.asarray(apply(params, toks, t, **kw))


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_bidirectional_a_later_token_changes_earlier_logits(family, tiny_model):
    _, apply, params = tiny_model(family)
    x = tokens()
    y = x.at[:, -1].set((x[:, -1] + 1) % V)
    a, b = logits_of(apply, params, x), logits_of(apply, params, y)
    assert a.dtype == np.float32 and a.shape == (B, L, V)
    assert np.all(np.abs(a[:, 0] - b[:, 0]).max(-1) > 1e-4), "position 0 ignores position L-1"


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_causal_mode_is_causal(family, tiny_model):
    _, apply, params = tiny_model(family, causal=True)
    x = tokens(1)
    for j in (5, L - 1):
        y = x.at[:, j].set((x[:, j] + 3) % V)
        a, b = logits_of(apply, params, x), logits_of(apply, params, y)
        np.testing.assert_array_equal(a[:, :j], b[:, :j],
                                      err_msg=f"a change at {j} leaked to earlier logits")
        assert np.all(np.abs(a[:, j] - b[:, j]).max(-1) > 1e-4)


def test_gqa_equals_mha_with_repeated_kv_heads(tiny_model):
    """n_kv_heads < n_heads: query head h reads kv head h // (n_heads / n_kv_heads)."""
    cfg, apply, params = tiny_model("llama", n_heads=4, n_kv_heads=2, qkv_bias=True)
    attn = params["blocks"]["attn"]
    assert attn["k"]["kernel"].shape == (2, 32, 2, 8)
    assert attn["q"]["kernel"].shape == (2, 32, 4, 8)
    _, mha_apply, mha_params = tiny_model("llama", n_heads=4, qkv_bias=True)
    mha = jax.tree.map(lambda x: x, mha_params)
    for name in ("q", "o"):
        mha["blocks"]["attn"][name] = attn[name]
    for name in ("k", "v"):
        mha["blocks"]["attn"][name] = {
            "kernel": jnp.repeat(attn[name]["kernel"], 2, axis=2),
            "bias": jnp.repeat(attn[name]["bias"], 2, axis=1)}
    rest = {k: v for k, v in params.items() if k != "blocks"}
    mha.update(rest)
    for k in ("attn_norm", "mlp_norm", "gate", "up", "down"):
        mha["blocks"][k] = params["blocks"][k]
    x = tokens(2)
    np.testing.assert_allclose(logits_of(apply, params, x), logits_of(mha_apply, mha, x),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_scan_and_unrolled_layers_agree(family, tiny_model):
    _, scan_apply, params = tiny_model(family, scan_layers=True)
    _, loop_apply, loop_params = tiny_model(family, scan_layers=False)
    assert jax.tree.structure(params) == jax.tree.structure(loop_params)
    x, t = tokens(3), jnp.array([0.3, 0.9])
    np.testing.assert_allclose(logits_of(scan_apply, params, x, t),
                               logits_of(loop_apply, params, x, t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["full"])
def test_remat_changes_nothing_numerically(policy, tiny_model):
    _, apply, params = tiny_model("dit", time_conditioning=True)
    _, remat_apply, _ = tiny_model("dit", time_conditioning=True, remat_policy=policy)
    x, t = tokens(4), jnp.array([0.2, 0.7])

    def grads(ap):
        fn = lambda p: jnp.sum(jnp.sin(ap(p, x, t)))  # noqa: E731
        return jax.jit(jax.value_and_grad(fn))(params)

    (va, ga), (vb, gb) = grads(apply), grads(remat_apply)
    np.testing.assert_allclose(float(va), float(vb), rtol=1e-6)
    # recomputation may fuse differently: float32 round-off (relative to each leaf's scale)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_logit_shift_shifts_by_one(tiny_model):
    _, apply, params = tiny_model("llama")
    _, shift_apply, _ = tiny_model("llama", logit_shift=True)
    x = tokens(5)
    a, s = logits_of(apply, params, x), logits_of(shift_apply, params, x)
    np.testing.assert_array_equal(s[:, 1:], a[:, :-1])
    np.testing.assert_array_equal(s[:, 0], a[:, 0])
    assert not np.allclose(s, a)


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_segment_ids_block_attention_across_segments(family, tiny_model):
    _, apply, params = tiny_model(family)
    seg = jnp.broadcast_to((jnp.arange(L) >= 6).astype(jnp.int32), (B, L))
    x = tokens(6)
    y = x.at[:, 10].set((x[:, 10] + 1) % V)
    a = logits_of(apply, params, x, segment_ids_BxL=seg)
    b = logits_of(apply, params, y, segment_ids_BxL=seg)
    np.testing.assert_allclose(a[:, :6], b[:, :6], rtol=0, atol=1e-6,
                               err_msg="segment 0 saw a token of segment 1")
    assert np.all(np.abs(a[:, 6:10] - b[:, 6:10]).max(-1) > 1e-4)
    # without segments the same change does reach position 0
    c, d = logits_of(apply, params, x), logits_of(apply, params, y)
    assert np.abs(c[:, 0] - d[:, 0]).max() > 1e-4


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_embeddings_path_equals_token_path(family, tiny_model):
    _, apply, params = tiny_model(family)
    x = tokens(7)
    emb = model.embed_tokens(params["embed"], x)
    assert emb.shape == (B, L, 32)
    via_tokens = logits_of(apply, params, x)
    other = (x + 1) % V  # the embeddings, not the ids, must drive the model
    via_embeds = logits_of(apply, params, other, embeds_BxLxD=emb)
    np.testing.assert_allclose(via_embeds, via_tokens, rtol=1e-6, atol=1e-6)
    if family == "llama":  # gradient attribution: d logit / d embeddings reaches every position
        g = jax.jit(jax.grad(lambda e: apply(params, x, T_HALF, embeds_BxLxD=e)[0, 0, 3]))(emb)
        assert np.abs(np.asarray(g)[0, -1]).max() > 0


@pytest.mark.parametrize("family", ["dit", "llama"])
def test_bf16_compute_returns_float32_logits(family, tiny_model):
    _, apply, params = tiny_model(family)
    _, bf16_apply, _ = tiny_model(family, dtype="bfloat16")
    x = tokens(8)
    full, half = logits_of(apply, params, x), logits_of(bf16_apply, params, x)
    assert half.dtype == np.float32
    assert np.all(np.isfinite(half))
    assert not np.array_equal(full, half)  # bf16 really was used
    np.testing.assert_allclose(half, full, atol=0.1 * np.abs(full).max())


def test_dit_time_conditioning(tiny_model):
    _, apply, params = tiny_model("dit", time_conditioning=True)
    _, plain, _ = tiny_model("dit", time_conditioning=False)
    x = tokens(9)
    a = logits_of(apply, params, x, jnp.array([0.1, 0.1]))
    b = logits_of(apply, params, x, jnp.array([0.9, 0.9]))
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_array_equal(logits_of(plain, params, x, jnp.array([0.1, 0.1])),
                                  logits_of(plain, params, x, jnp.array([0.9, 0.9])))


@pytest.mark.parametrize("family,kw", [("dit", {}), ("llama", {}),
                                       ("llama", {"n_kv_heads": 1, "qkv_bias": True,
                                                  "tie_embeddings": True})])
def test_every_param_has_logical_axes(family, kw):
    from conftest import tiny_model_config

    cfg = tiny_model_config(family, **kw)
    _, shapes, axes = model.abstract(cfg)
    flat_shapes = jax.tree_util.tree_flatten_with_path(shapes)[0]
    flat_axes = dict(jax.tree_util.tree_flatten_with_path(
        axes, is_leaf=lambda x: isinstance(x, tuple))[0])
    assert len(flat_axes) == len(flat_shapes)
    for path, shape in flat_shapes:
        names = flat_axes[path]
        key = jax.tree_util.keystr(path)
        assert len(names) == len(shape.shape), f"{key}: axes {names} vs shape {shape.shape}"
        assert all(n in LOGICAL for n in names), f"{key}: axes {names} are not all named"
        if key.startswith("['blocks']"):
            assert names[0] == "layers" and shape.shape[0] == cfg.n_layers, key
    assert model.count_params(shapes) > 0


def test_abstract_matches_created_params(tiny_model):
    cfg, _, params = tiny_model("llama", randomize=False)
    _, shapes, _ = model.abstract(cfg)
    got = jax.tree.map(lambda x: (x.shape, x.dtype), params)
    want = jax.tree.map(lambda s: (s.shape, s.dtype), shapes)
    assert got == want


@pytest.mark.parametrize("bad,match", [
    ({"family": "gpt"}, "family"),
    ({"d_model": 30, "n_heads": 4}, "divisible"),
    ({"n_heads": 4, "n_kv_heads": 3}, "multiple"),
    ({"dtype": "float8"}, "dtype"),
    ({"family": "dit", "tie_embeddings": True}, "tie_embeddings"),
])
def test_invalid_model_configs_are_clear_errors(bad, match):
    from conftest import tiny_model_config

    with pytest.raises(ValueError, match=match):
        validate_model_config(tiny_model_config(**bad))
