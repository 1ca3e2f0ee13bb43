"""Primitive draws used by the family samplers.

Every sampler receives one ``np.random.Generator`` made from its integer seed
(``np.random.default_rng(seed)``) and draws from it in a fixed order, so a seed always gives the
same cfg.  Values are converted to plain Python types (``int``, ``float``, ``str``, ``bool``)
immediately, so cfgs are JSON-serializable by construction; floats are rounded to 4 significant
digits so that a cfg printed, stored as JSON and read back is the same cfg (and has the same id).
"""
from __future__ import annotations

import math
from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")

#: Activation names the samplers draw from (all defined in ``tasks.nn.ACTIVATIONS``).
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "elu", "swish", "gelu", "sigmoid", "softplus",
                                "leaky_relu")
#: Initializer names the samplers draw from (all defined in ``tasks.nn.INITIALIZERS``).
INITIALIZERS: tuple[str, ...] = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
                                 "lecun_normal", "orthogonal")


def round_sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (a plain Python float)."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def choice(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One element of ``options``, uniformly (returns the element itself, not a NumPy scalar)."""
    if len(options) == 0:
        raise ValueError("choice: empty option list")
    value = options[int(rng.integers(len(options)))]
    if isinstance(value, np.generic):
        return value.item()
    return value


def uniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An integer uniform on ``[lo, hi]`` (both inclusive)."""
    if hi < lo:
        raise ValueError(f"uniform_int: empty range [{lo}, {hi}]")
    return int(rng.integers(lo, hi + 1))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A float with ``log x`` uniform on ``[log lo, log hi]``, rounded to 4 significant digits."""
    if not 0 < lo <= hi:
        raise ValueError(f"log_uniform: need 0 < lo <= hi, got [{lo}, {hi}]")
    return round_sig(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def log_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An integer in ``[lo, hi]`` with ``log x`` (approximately) uniform, as TaskSet samples widths."""
    if not 1 <= lo <= hi:
        raise ValueError(f"log_int: need 1 <= lo <= hi, got [{lo}, {hi}]")
    x = math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))
    return int(min(hi, max(lo, math.floor(x))))


def bernoulli(rng: np.random.Generator, p: float = 0.5) -> bool:
    return bool(rng.uniform() < p)
