"""Metrics over loss curves: normalization, speed-up over tuned Adam, win fractions, intervals.

Normalization (TaskSet style). With ``L_init`` the loss at initialization and ``L_best`` the best
loss any baseline reached on the task,

    n(L) = clip((L - L_best) / (L_init - L_best), -2, 2),   n(NaN) = n(±inf) = 2,

so the initial loss maps to 1, the best baseline to 0, and anything that blows up to 2.

Speed-up over a baseline (VeLO's measure, see :mod:`eval.protocol`): ``L*`` is the baseline's
best loss, ``t_B`` and ``t_M`` the first cost at which the running minimum of each curve reaches it
(linearly interpolated between recorded points); speed-up ``t_B / t_M``. A curve compared with
itself gives exactly 1; one that reaches every loss in half the steps gives 2.

Intervals: Wilson score intervals for win fractions, seeded percentile bootstrap for means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

NORM_CLIP = 2.0



def as_float(v: Any) -> float:
    """A number from its JSON form in results (``None`` -> NaN, ``"inf"``/``"-inf"`` -> ±inf)."""
    if v is None:
        return math.nan
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return float(v)


def normalize_loss(loss, init: float, best: float, clip: float = NORM_CLIP) -> np.ndarray:
    """``(loss - best) / (init - best)`` clipped to ``[-clip, clip]``; NaN/±inf map to ``clip``.

    ``init`` and ``best`` must be finite with ``init > best`` (a task where the baselines never
    moved the loss has no scale to normalize by).
    """
    init = float(init)
    best = float(best)
    if not (math.isfinite(init) and math.isfinite(best)):
        raise ValueError(f"normalization stats must be finite, got init={init}, best={best}")
    if not init > best:
        raise ValueError(f"normalization needs init > best, got init={init}, best={best}")
    x = np.asarray(loss, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        n = (x - best) / (init - best)
    n = np.where(np.isfinite(n), n, clip)
    return np.clip(n, -clip, clip)


def lower_envelope(losses: ArrayLike) -> np.ndarray:
    """Running minimum along the last axis, treating NaN as +inf (a NaN never improves it)."""
    x = np.asarray(losses, dtype=np.float64)
    x = np.where(np.isnan(x), np.inf, x)
    return np.minimum.accumulate(x, axis=-1)


def first_passage(x: ArrayLike, losses: ArrayLike, target: float) -> float:
    """First ``x`` at which the monotone lower envelope of ``losses`` reaches ``target``.

    Linear interpolation between consecutive recorded points (the envelope is piecewise linear in
    ``x``); ``inf`` when the target is never reached. ``x`` must be non-decreasing.
    """
    xs = np.asarray(x, dtype=np.float64)
    env = lower_envelope(losses)
    if xs.shape != env.shape or xs.ndim != 1 or xs.size == 0:
        raise ValueError(f"x and losses must be 1-D of equal length, got {xs.shape} and {env.shape}")
    if np.any(np.diff(xs) < 0):
        raise ValueError("x must be non-decreasing")
    if not math.isfinite(target) and not (target == math.inf):
        return math.inf
    hit = np.nonzero(env <= target)[0]
    if hit.size == 0:
        return math.inf
    i = int(hit[0])
    if i == 0:
        return float(xs[0])
    lo, hi = env[i - 1], env[i]  # lo > target >= hi
    if not math.isfinite(lo):
        return float(xs[i])
    frac = (lo - target) / (lo - hi)
    return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))


@dataclass(frozen=True)
class SpeedUp:
    """Speed-up of a method over a baseline (see :mod:`eval.protocol`)."""

    value: float  # t_B / t_M, or t_B(L_M) / T when the method never reaches L*
    reached: bool  # the method reached the baseline's best loss L*
    target: float  # L*
    method_steps: float  # t_M (inf when not reached)
    baseline_steps: float  # t_B


def speedup(method_x: ArrayLike, method_losses: ArrayLike,
            baseline_x: ArrayLike, baseline_losses: ArrayLike, floor: float = -math.inf) -> SpeedUp:
    """Speed-up of a method over a baseline on their (seed-median) loss curves.

    ``L* = max(min of the baseline curve, floor)`` (``floor``: the loss below which differences
    are not resolved, e.g. ``L_best`` plus the tie band; without it, two runs that both converge
    to a noise floor are ranked by float noise); ``t_B`` and ``t_M`` the first (interpolated) cost at which
    the running minimum of each curve reaches ``L*``; speed-up ``t_B / t_M``. If the method never
    reaches ``L*``: ``t_B(L_M) / x_M[-1]``, where ``L_M`` is the method's best loss and ``t_B(L_M)``
    the cost at which the baseline reached it (a value below 1). A baseline that never improves on
    its first point gives 1 when the method does not either. Non-finite method curves give 0.
    """
    bx, bl = np.asarray(baseline_x, np.float64), np.asarray(baseline_losses, np.float64)
    mx, ml = np.asarray(method_x, np.float64), np.asarray(method_losses, np.float64)
    benv = lower_envelope(bl)
    target = max(float(benv[-1]), float(floor))
    if not math.isfinite(target):
        return SpeedUp(math.nan, False, target, math.nan, math.nan)
    t_b = first_passage(bx, bl, target)
    t_m = first_passage(mx, ml, target)
    if math.isfinite(t_m):
        if t_m <= mx[0]:
            value = 1.0 if t_b <= bx[0] else math.inf
        else:
            value = (t_b - bx[0]) / (t_m - mx[0])
        return SpeedUp(float(value), True, target, t_m, t_b)
    best_m = float(lower_envelope(ml)[-1])
    if not math.isfinite(best_m) or best_m >= float(benv[0]):
        return SpeedUp(0.0, False, target, math.inf, t_b)
    t_bm = first_passage(bx, bl, best_m)
    return SpeedUp(float((t_bm - bx[0]) / (mx[-1] - mx[0])), False, target, math.inf, t_b)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (default 95%); ``(nan, nan)`` for n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def bootstrap_mean_ci(values: Sequence[float], samples: int = 2000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and a seeded percentile-bootstrap interval (NaN values are
    an error: callers map divergences to their normalized score first)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_mean_ci needs finite values")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (samples, x.size))].mean(axis=1)
    a = (1 - level) / 2
    return (float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def mean_over_curve(x: ArrayLike, norm_losses: ArrayLike) -> float:
    """Average of a normalized curve over its cost axis (trapezoid rule; plain mean for 1 point)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(norm_losses, dtype=np.float64)
    if ys.size == 1 or xs[-1] == xs[0]:
        return float(np.mean(ys))
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def is_diverged(losses: Sequence[float]) -> bool:
    """A run diverged if any recorded loss is non-finite or it ends above its own initial loss."""
    x = np.asarray(losses, dtype=np.float64)
    if x.size == 0:
        return False
    if not np.all(np.isfinite(x)):
        return True
    return bool(x[-1] > x[0])


@dataclass(frozen=True)
class Interval:
    """Mean with a two-sided 95% Student-t confidence interval (``lo == hi == mean`` for n = 1)."""

    mean: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n}

    def __str__(self) -> str:
        if self.n <= 1 or not math.isfinite(self.hi - self.lo):
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of the finite entries of ``values``."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(np.mean(x))
    if n == 1:
        return Interval(m, m, m, 1)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(x, ddof=1) / math.sqrt(n))
    return Interval(m, m - half, m + half, n)
