"""Noise schedules, time sampling and the forward masking process (PAPER.md section 1)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdlm_jax.config_base import base_config
from mdlm_jax.diffusion import forward, schedules

# (name, kwargs, closed-form weight w(t) = -alpha'(t) / (1 - alpha(t)))
CASES = [
    ("linear", {}, lambda t: 1.0 / t),
    ("loglinear", {"eps": 1e-3}, lambda t: 1.0 / t),
    ("loglinear", {"eps": 0.0}, lambda t: 1.0 / t),
    ("cosine", {}, lambda t: 0.5 * np.pi * np.tan(0.5 * np.pi * (1.0 - t))),
    ("polynomial", {"power": 2.0}, lambda t: 2.0 / t),
    ("polynomial", {"power": 3.0}, lambda t: 3.0 / t),
]
IDS = [f"{n}-{kw}" for n, kw, _ in CASES]
T = np.linspace(0.01, 0.99, 37).astype(np.float64)


@pytest.mark.parametrize("name,kwargs,closed", CASES, ids=IDS)
def test_mask_rate_is_zero_at_t0_and_one_at_t1(name, kwargs, closed):
    s = schedules.get(name, **kwargs)
    assert float(s.mask_prob(jnp.float32(0.0))) == pytest.approx(0.0, abs=1e-7)
    eps = kwargs.get("eps", 0.0)  # log-linear stops at 1 - eps by design (MDLM)
    assert float(s.mask_prob(jnp.float32(1.0))) == pytest.approx(1.0 - eps, abs=1e-6)
    assert float(s.alpha(jnp.float32(0.0))) == pytest.approx(1.0, abs=1e-7)
    # the mask rate grows with t: a schedule is a monotone path from data to all-mask
    rates = np.asarray(s.mask_prob(jnp.asarray(T, jnp.float32)))
    assert np.all(np.diff(rates) > 0), f"{name}: mask_prob is not increasing in t"


def test_loglinear_default_eps_is_mdlm():
    s = schedules.get("loglinear")
    assert float(s.mask_prob(jnp.float32(1.0))) == pytest.approx(1.0 - 1e-3, abs=1e-6)
    assert float(s.mask_prob(jnp.float32(0.5))) == pytest.approx(0.5 * (1 - 1e-3), rel=1e-6)


@pytest.mark.parametrize("name,kwargs,closed", CASES, ids=IDS)
def test_weight_matches_closed_form(name, kwargs, closed):
    s = schedules.get(name, **kwargs)
    got = np.asarray(s.weight(jnp.asarray(T, jnp.float32)))
    np.testing.assert_allclose(got, closed(T), rtol=2e-5,
                               err_msg=f"{name}: weight(t) differs from its closed form")


@pytest.mark.parametrize("name,kwargs,closed", CASES, ids=IDS)
def test_weight_matches_autodiff_of_alpha(name, kwargs, closed):
    """w(t) = -alpha'(t) / (1 - alpha(t)) with alpha' from jax.grad, not from ``dalpha``.

    rtol 1e-3: in float32, 1 - alpha(t) cancels for small t (polynomial: 1 - (1 - t^3)),
    so t starts at 0.05 here; the closed-form test above covers t = 0.01."""
    s = schedules.get(name, **kwargs)
    dalpha = jax.vmap(jax.grad(lambda t: s.alpha(t)))
    t = jnp.asarray(T[T >= 0.05], jnp.float32)
    want = -dalpha(t) / (1.0 - s.alpha(t))
    np.testing.assert_allclose(np.asarray(s.weight(t)), np.asarray(want), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(s.dalpha(t)), np.asarray(dalpha(t)), rtol=1e-5,
                               atol=1e-6)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="loglinear"):
        schedules.get("geometric")


def test_from_config_passes_eps_and_power():
    d = base_config().diffusion
    d.schedule, d.schedule_eps = "loglinear", 0.25
    assert float(schedules.from_config(d).mask_prob(jnp.float32(1.0))) == pytest.approx(0.75)
    d.schedule, d.schedule_power = "polynomial", 3.0
    assert float(schedules.from_config(d).mask_prob(jnp.float32(0.5))) == pytest.approx(0.125)


# ------------------------------------------------------------------ time sampling
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.1])
def test_antithetic_times_are_stratified_and_floored(batch, eps):
    for seed in range(5):
        t = np.asarray(forward.sample_times(jax.random.key(seed), batch, eps=eps,
                                            antithetic=True), np.float64)
        assert t.shape == (batch,)
        assert np.all(t >= eps - 1e-7) and np.all(t <= 1.0 + 1e-7)
        u = np.sort((t - eps) / (1.0 - eps))  # back to the unit interval
        gaps = np.diff(np.concatenate([u, [u[0] + 1.0]]))  # circular spacing
        np.testing.assert_allclose(gaps, 1.0 / batch, atol=1e-5,
                                   err_msg="antithetic times are not spaced by 1/B")


def test_antithetic_times_differ_between_keys():
    a = forward.sample_times(jax.random.key(0), 8)
    b = forward.sample_times(jax.random.key(1), 8)
    assert not np.allclose(np.sort(np.asarray(a)), np.sort(np.asarray(b)))


def test_independent_times_are_uniform_and_floored():
    t = np.asarray(forward.sample_times(jax.random.key(0), 20000, eps=0.1, antithetic=False))
    assert t.min() >= 0.1 - 1e-7 and t.max() <= 1.0
    assert t.mean() == pytest.approx(0.55, abs=0.01)
    # not stratified: some gaps are far from 1/B
    gaps = np.diff(np.sort(t))
    assert gaps.max() > 5 * (0.9 / 20000)


# ------------------------------------------------------------------ masking
def test_mask_tokens_rate_and_maskable():
    b, length, mask_id = 16, 512, 99
    x0 = jax.random.randint(jax.random.key(1), (b, length), 0, 50)
    p = jnp.linspace(0.05, 0.95, b)
    maskable = jax.random.bernoulli(jax.random.key(2), 0.7, (b, length))
    xt, masked = forward.mask_tokens(jax.random.key(3), x0, p, mask_id, maskable)
    xt, masked, x0, maskable = map(np.asarray, (xt, masked, x0, maskable))
    assert not np.any(masked & ~maskable), "a non-maskable position was masked"
    np.testing.assert_array_equal(xt == mask_id, masked)
    np.testing.assert_array_equal(xt[~masked], x0[~masked])
    rate = (masked.sum(1) / maskable.sum(1))
    # binomial std of a row's rate is <= 0.5 / sqrt(0.7 * 512) ~ 0.027
    np.testing.assert_allclose(rate, np.asarray(p), atol=0.1)
    assert abs(float(np.mean(rate - np.asarray(p)))) < 0.02


def test_mask_tokens_extremes():
    x0 = jnp.arange(40).reshape(2, 20)
    xt, masked = forward.mask_tokens(jax.random.key(0), x0, jnp.array([0.0, 1.0]), 77)
    assert not np.any(np.asarray(masked[0])) and np.all(np.asarray(masked[1]))
    assert np.all(np.asarray(xt[1]) == 77)
    np.testing.assert_array_equal(np.asarray(xt[0]), np.arange(20))


def test_sample_times_eps_matches_llada_p_mask():
    """LLaDA's p_mask = (1 - eps) t + eps is the linear schedule with time_eps."""
    eps = 1e-3
    t = forward.sample_times(jax.random.key(0), 4, eps=eps)
    assert float(jnp.min(t)) >= eps
    assert math.isclose(float(schedules.get("linear").mask_prob(jnp.float32(eps))), eps,
                        rel_tol=1e-4)
