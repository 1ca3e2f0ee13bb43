"""Metrics over loss curves: normalization, speed-up over tuned Adam, win fractions, intervals.

Normalization (TaskSet style). With ``L_init`` the loss at initialization and ``L_best`` the best
loss any baseline reached on the task,

    n(L) = clip((L - L_best) / (L_init - L_best), -2, 2),   n(NaN) = n(±inf) = 2,

so the initial loss maps to 1, the best baseline to 0, and anything that blows up to 2.

Speed-up over tuned Adam. Let ``E_A(t) = min_{s <= t} min_r L_{A,r}(s)`` be the monotone lower
envelope of Adam's curves (over the swept learning rates ``r``, or only the tuned one) and
``E_M`` the envelope of the method's curve. With ``L* = L_M(T)`` the method's final loss,

    t_M = min{t : E_M(t) <= L*},   t_A = min{t : E_A(t) <= L*},   speed-up = t_A / t_M,

where both first-passage times are linearly interpolated between recorded points. A curve replayed
against itself gives exactly 1; a curve that reaches every loss in half the steps gives 2. When Adam
never reaches ``L*`` within its budget ``T_A`` the speed-up is censored: ``T_A / t_M`` is a lower
bound and is flagged. A method whose final loss is not below its initial loss gets 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

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


def lower_envelope(losses: np.ndarray) -> np.ndarray:
    """Running minimum along the last axis, treating NaN as +inf (a NaN never improves it)."""
    x = np.asarray(losses, dtype=np.float64)
    x = np.where(np.isnan(x), np.inf, x)
    return np.minimum.accumulate(x, axis=-1)


def first_passage(x: Sequence[float], losses: Sequence[float], target: float) -> float:
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
    """Speed-up of one curve over an Adam envelope (see module docstring)."""

    value: float  # t_A / t_M (a lower bound when ``censored``); NaN when the method's final loss is not finite
    censored: bool  # Adam never reached the method's final loss: ``value`` is a lower bound
    method_steps: float  # t_M
    adam_steps: float  # t_A (the Adam budget when censored)


def speedup(method_x: Sequence[float], method_losses: Sequence[float],
            adam_curves: Iterable[tuple[Sequence[float], Sequence[float]]]) -> SpeedUp:
    """Speed-up of a method over Adam, via the lower envelope of ``adam_curves`` ``[(x, losses)]``.

    ``x`` is the cost axis (gradient evaluations or steps) and starts at 0 for the initial point.
    The Adam curves may have different x grids; their envelope is taken pointwise after merging
    their grids (each curve held constant between its own points — a curve is only credited with a
    loss once it has actually recorded it).
    """
    mx = np.asarray(method_x, dtype=np.float64)
    ml = np.asarray(method_losses, dtype=np.float64)
    curves = [(np.asarray(x, np.float64), np.asarray(l, np.float64)) for x, l in adam_curves]
    if not curves:
        raise ValueError("speedup needs at least one Adam curve")
    target = float(ml[-1]) if ml.size else math.nan
    if not math.isfinite(target):
        return SpeedUp(math.nan, False, math.nan, math.nan)
    t_m = first_passage(mx, ml, target)
    ax, al = merge_envelope(curves)
    t_a = first_passage(ax, al, target)
    censored = not math.isfinite(t_a)
    if censored:
        t_a = float(ax[-1])
    if t_m <= 0:
        # the method never got below its initial loss: no progress, no speed-up
        return SpeedUp(0.0, censored, t_m, t_a)
    return SpeedUp(t_a / t_m, censored, t_m, t_a)


def merge_envelope(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise lower envelope of several ``(x, losses)`` curves on the union of their grids."""
    grid = np.unique(np.concatenate([np.asarray(x, np.float64) for x, _ in curves]))
    best = np.full(grid.shape, np.inf)
    for x, l in curves:
        env = lower_envelope(l)
        # value of this curve's envelope at each grid point: last recorded point with x_i <= g
        idx = np.searchsorted(x, grid, side="right") - 1
        vals = np.where(idx >= 0, env[np.clip(idx, 0, None)], np.inf)
        best = np.minimum(best, vals)
    return grid, best


def mean_over_curve(x: Sequence[float], norm_losses: Sequence[float]) -> float:
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


def geometric_mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Geometric mean with a t interval computed in log space (for ratios such as speed-ups)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    iv = mean_ci(np.log(x), level)
    if iv.n == 0:
        return iv
    return Interval(math.exp(iv.mean), math.exp(iv.lo), math.exp(iv.hi), iv.n)


def fraction_better(method_scores: Sequence[float], reference_scores: Sequence[float],
                    tol: float = 0.0) -> Optional[float]:
    """Fraction of paired entries where the method's (lower-is-better) score beats the reference
    by more than ``tol``; pairs with a missing (NaN) reference are skipped; ``None`` if none remain."""
    m = np.asarray(method_scores, dtype=np.float64)
    r = np.asarray(reference_scores, dtype=np.float64)
    if m.shape != r.shape:
        raise ValueError(f"score arrays differ in shape: {m.shape} vs {r.shape}")
    keep = ~np.isnan(r)
    if not np.any(keep):
        return None
    m = np.where(np.isnan(m), np.inf, m[...])
    return float(np.mean(m[keep] < r[keep] - tol))
