"""Noise schedules of masked diffusion.

``alpha(t)`` is the probability that a token is still clean at time t (alpha(0) = 1,
alpha(1) = 0); ``mask_prob(t) = 1 - alpha(t)``; the continuous-time NELBO weight is
``weight(t) = -alpha'(t) / (1 - alpha(t))``.

LLaDA's ``p_mask = (1 - eps) t + eps`` is the linear schedule with ``diffusion.time_eps``.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Schedule:
    name: str

    def alpha(self, t):
        raise NotImplementedError

    def dalpha(self, t):
        raise NotImplementedError

    def mask_prob(self, t):
        return 1.0 - self.alpha(t)

    def weight(self, t):
        return -self.dalpha(t) / (1.0 - self.alpha(t))

    def time_at(self, mask_prob):
        """The time whose mask probability is ``mask_prob`` (inverse of ``mask_prob``;
        clipped to [0, 1]): what a time-conditioned model is told for a given mask rate."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Linear(Schedule):
    name: str = "linear"

    def alpha(self, t):
        return 1.0 - t

    def mask_prob(self, t):
        return t

    def dalpha(self, t):
        return -jnp.ones_like(t)

    def weight(self, t):
        return 1.0 / t

    def time_at(self, mask_prob):
        return jnp.clip(mask_prob, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class LogLinear(Schedule):
    """MDLM: mask probability (1 - eps) t; total noise sigma(t) = -log(1 - (1 - eps) t)."""

    name: str = "loglinear"
    eps: float = 1e-3

    def alpha(self, t):
        return 1.0 - (1.0 - self.eps) * t

    def dalpha(self, t):
        return -(1.0 - self.eps) * jnp.ones_like(t)

    def weight(self, t):
        return 1.0 / t

    def time_at(self, mask_prob):
        return jnp.clip(mask_prob / (1.0 - self.eps), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Cosine(Schedule):
    name: str = "cosine"

    def alpha(self, t):
        return 1.0 - jnp.cos(0.5 * math.pi * (1.0 - t))

    def dalpha(self, t):
        return -0.5 * math.pi * jnp.sin(0.5 * math.pi * (1.0 - t))

    def time_at(self, mask_prob):  # mask_prob = cos(pi/2 (1 - t))
        return 1.0 - jnp.arccos(jnp.clip(mask_prob, 0.0, 1.0)) / (0.5 * math.pi)


@dataclasses.dataclass(frozen=True)
class Polynomial(Schedule):
    name: str = "polynomial"
    power: float = 2.0

    def alpha(self, t):
        return 1.0 - t**self.power

    def mask_prob(self, t):
        return t**self.power

    def dalpha(self, t):
        return -self.power * t ** (self.power - 1.0)

    def weight(self, t):
        return self.power / t

    def time_at(self, mask_prob):
        return jnp.clip(mask_prob, 0.0, 1.0) ** (1.0 / self.power)


_SCHEDULES = {"linear": Linear, "loglinear": LogLinear, "cosine": Cosine,
              "polynomial": Polynomial}


def get(name: str, **kwargs) -> Schedule:
    """A schedule by name: ``get('loglinear', eps=1e-3)``, ``get('polynomial', power=2)``."""
    if name not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; use one of {sorted(_SCHEDULES)}")
    return _SCHEDULES[name](**kwargs)


def from_config(diffusion_cfg) -> Schedule:
    name = diffusion_cfg.schedule
    if name == "loglinear":
        return get(name, eps=diffusion_cfg.schedule_eps)
    if name == "polynomial":
        return get(name, power=diffusion_cfg.schedule_power)
    return get(name)
