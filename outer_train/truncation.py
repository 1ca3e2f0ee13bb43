"""Truncation schedules: how long each inner trajectory runs before its task is re-sampled.

A schedule draws a trajectory length ``T`` (an int32 number of inner updates) from a key and the
current outer step, inside ``jit``/``vmap``:

* :class:`ConstantSchedule` — ``T = length``;
* :class:`LogUniformSchedule` — ``log T ~ U[log min_length, log max_length]``, rounded down;

and both are *curriculum-able*: with ``ramp_steps > 0`` the upper length grows geometrically from
``start_length`` at outer step 0 to its final value at outer step ``ramp_steps``::

    upper(s) = exp((1 - r) log start_length + r log final),   r = min(1, s / ramp_steps).

``max_length`` is the static upper bound of every draw (what full-horizon estimators allocate and
what the learned optimizer is told as ``num_steps``).

:func:`initial_offsets` draws the random starting step of each task's *first* trajectory,
``offset ~ U{0, ..., T-1}``, so that a batch of vmapped tasks does not reset in lock step.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


def _check_length(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _ramp(start: int, final: int, ramp_steps: int, outer_step) -> jax.Array:
    """Geometric interpolation from ``start`` (outer step 0) to ``final`` (outer step ramp_steps)."""
    if ramp_steps <= 0 or start == final:
        return jnp.asarray(float(final), jnp.float32)
    r = jnp.clip(jnp.asarray(outer_step, jnp.float32) / ramp_steps, 0.0, 1.0)
    return jnp.exp((1.0 - r) * math.log(start) + r * math.log(final))


@dataclasses.dataclass(frozen=True)
class ConstantSchedule:
    """Every trajectory has ``length`` updates (optionally ramped up from ``start_length``)."""

    length: int
    start_length: int | None = None
    ramp_steps: int = 0

    def __post_init__(self):
        _check_length("length", self.length)
        if self.start_length is not None:
            _check_length("start_length", self.start_length)
            if self.start_length > self.length:
                raise ValueError(f"start_length ({self.start_length}) must be <= length ({self.length})")
        if not isinstance(self.ramp_steps, int) or self.ramp_steps < 0:
            raise ValueError(f"ramp_steps must be an int >= 0, got {self.ramp_steps!r}")

    @property
    def max_length(self) -> int:
        return self.length

    def sample(self, key: jax.Array, outer_step: jax.Array | int = 0) -> jax.Array:
        del key
        start = self.length if self.start_length is None else self.start_length
        upper = _ramp(start, self.length, self.ramp_steps, outer_step)
        return jnp.clip(jnp.floor(upper + 1e-4), 1, self.length).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class LogUniformSchedule:
    """``T = floor(exp(U[log min_length, log upper(s)]))`` clipped to ``[min_length, max_length]``."""

    min_length: int
    max_length: int
    start_length: int | None = None
    ramp_steps: int = 0

    def __post_init__(self):
        _check_length("min_length", self.min_length)
        _check_length("max_length", self.max_length)
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must be <= max_length ({self.max_length})")
        if self.start_length is not None:
            _check_length("start_length", self.start_length)
            if not self.min_length <= self.start_length <= self.max_length:
                raise ValueError("start_length must lie in [min_length, max_length]")
        if not isinstance(self.ramp_steps, int) or self.ramp_steps < 0:
            raise ValueError(f"ramp_steps must be an int >= 0, got {self.ramp_steps!r}")

    def sample(self, key: jax.Array, outer_step: jax.Array | int = 0) -> jax.Array:
        start = self.max_length if self.start_length is None else self.start_length
        upper = _ramp(start, self.max_length, self.ramp_steps, outer_step)
        u = jax.random.uniform(key, (), jnp.float32)
        log_t = (1.0 - u) * math.log(self.min_length) + u * jnp.log(upper + 1e-4)
        return jnp.clip(jnp.floor(jnp.exp(log_t)), self.min_length, self.max_length).astype(jnp.int32)


Schedule = ConstantSchedule | LogUniformSchedule


def make_schedule(kind: str, length: int, min_length: int | None = None,
                  start_length: int | None = None, ramp_steps: int = 0) -> Schedule:
    """Build a schedule by name: ``"constant"`` or ``"log_uniform"``."""
    if kind == "constant":
        return ConstantSchedule(length, start_length, ramp_steps)
    if kind == "log_uniform":
        lo = max(1, length // 10) if min_length is None else min_length
        return LogUniformSchedule(lo, length, start_length, ramp_steps)
    raise ValueError(f"unknown truncation schedule {kind!r}; expected 'constant' or 'log_uniform'")


def initial_offsets(key: jax.Array, lengths: jax.Array) -> jax.Array:
    """Random starting steps ``offset_i ~ U{0, ..., lengths_i - 1}`` (int32, same shape)."""
    lengths = jnp.asarray(lengths, jnp.int32)
    u = jax.random.uniform(key, lengths.shape, jnp.float32)
    return jnp.minimum(jnp.floor(u * lengths), lengths - 1).astype(jnp.int32)
