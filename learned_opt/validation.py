"""Argument checks shared by the learned optimizers: each raises a clear ``TypeError`` /
``ValueError`` naming the offending option, θ key or extra argument."""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def check_floats_in(name: str, values: Any, lo: float, hi: float) -> tuple:
    """Tuple of floats, each in ``[lo, hi)``; TypeError/ValueError naming ``name`` otherwise."""
    try:
        out = tuple(float(v) for v in values)
    except TypeError as e:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from e
    for v in out:
        if not lo <= v < hi:
            raise ValueError(f"{name} entries must lie in [{lo}, {hi}), got {v}")
    return out


def check_positive_ints(name: str, values: Any) -> tuple:
    """Tuple of ints >= 1."""
    try:
        out = tuple(int(v) for v in values)
    except TypeError as e:
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}") from e
    if any(v < 1 for v in out):
        raise ValueError(f"{name} entries must be >= 1, got {out}")
    return out


def _as_float(name: str, value: Any) -> float:
    """``float(value)`` of a real number (bools and other types are a TypeError naming ``name``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A finite float > 0."""
    value = _as_float(name, value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def check_nonnegative(name: str, value: Any) -> float:
    """A finite float >= 0."""
    value = _as_float(name, value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def check_theta(theta: Any, required: Sequence[str], owner: str) -> None:
    """ValueError naming the first missing key of θ."""
    if not isinstance(theta, dict):
        raise TypeError(f"{owner}: theta must be a dict, got {type(theta).__name__}")
    missing = [k for k in required if k not in theta]
    if missing:
        raise ValueError(f"{owner}: theta is missing key(s) {missing}; has {sorted(theta)}")


def check_num_steps(num_steps: Any, owner: str) -> int | Array | None:
    """``num_steps`` as a positive int, ``None``, or a scalar integer JAX array (a traced horizon,
    e.g. the per-trajectory length during meta-training; values below 1 are treated as 1)."""
    if num_steps is None:
        return None
    if isinstance(num_steps, jax.Array) and not isinstance(num_steps, bool):
        if num_steps.ndim != 0 or not jnp.issubdtype(num_steps.dtype, jnp.integer):
            raise ValueError(f"{owner}: an array num_steps must be an integer scalar, got "
                             f"shape {num_steps.shape} dtype {num_steps.dtype}")
        return num_steps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"{owner}: num_steps must be a positive int or None, got {num_steps!r}")
    return int(num_steps)


def take_loss(extra: dict, name: str, dtype: Any = jnp.float32) -> Array | None:
    """The scalar extra argument ``name`` (e.g. ``loss``, ``valid_loss``) as ``dtype``, or None."""
    value = extra.get(name)
    if value is None:
        return None
    value = jnp.asarray(value)
    if value.ndim != 0:
        raise ValueError(f"update extra argument {name!r} must be a scalar, got shape {value.shape}")
    return value.astype(dtype)


def check_decay(name: str, value: Any) -> float:
    """A real number in ``[0, 1)`` (a moving-average decay)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_theta_shapes(theta: Any, expected: dict, owner: str) -> None:
    """θ has every key of ``expected`` (key -> shape), each with that shape as its trailing
    dimensions; ValueError naming the missing keys, or every key whose shape differs."""
    check_theta(theta, list(expected), owner)
    wrong = []
    for key, shape in expected.items():
        got = tuple(jnp.shape(theta[key]))
        if len(got) < len(shape) or (shape and got[-len(shape):] != tuple(shape)):
            wrong.append(f"theta[{key!r}] has shape {got}, expected {tuple(shape)}")
    if wrong:
        raise ValueError(f"{owner}: " + "; ".join(wrong))
