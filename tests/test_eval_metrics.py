"""Metrics: normalization, speed-up over tuned Adam (envelope, first passage), intervals."""
import math

import numpy as np
import pytest
from scipy import stats

from eval import metrics


# ---------------------------------------------------------------- normalization
def test_normalize_maps_init_to_one_and_best_to_zero():
    n = metrics.normalize_loss([5.0, 1.0, 3.0], init=5.0, best=1.0)
    np.testing.assert_allclose(n, [1.0, 0.0, 0.5])


def test_normalize_clips_and_maps_nonfinite_to_two():
    n = metrics.normalize_loss([100.0, -100.0, np.nan, np.inf, -np.inf, 2.0 + 1e-9],
                               init=2.0, best=1.0)
    np.testing.assert_allclose(n[:5], [2.0, -2.0, 2.0, 2.0, 2.0])
    assert n[5] == pytest.approx(1.0)
    # a loss slightly below best is negative but inside the clip range
    assert metrics.normalize_loss(0.5, 2.0, 1.0) == pytest.approx(-0.5)


def test_normalize_rejects_degenerate_stats():
    with pytest.raises(ValueError, match="init > best"):
        metrics.normalize_loss(1.0, init=1.0, best=1.0)
    with pytest.raises(ValueError, match="finite"):
        metrics.normalize_loss(1.0, init=np.nan, best=0.0)


# ---------------------------------------------------------------- speed-up
def _adam_like_curve(T=200, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(T + 1, dtype=float)
    # decreasing loss with noise: not monotone, so the envelope matters
    return x, 3.0 * np.exp(-x / 60.0) + 0.1 + 0.02 * rng.standard_normal(T + 1)


def test_speedup_of_a_curve_against_itself_is_exactly_one():
    x, l = _adam_like_curve()
    s = metrics.speedup(x, l, x, l)
    assert s.value == 1.0 and s.reached


def test_speedup_of_curve_reaching_every_loss_in_half_the_steps_is_two():
    x, l = _adam_like_curve()
    s = metrics.speedup(x / 2.0, l, x, l)  # same losses recorded at half the cost
    assert s.value == pytest.approx(2.0)


def test_speedup_is_monotone_in_speed():
    x, l = _adam_like_curve(seed=1)
    values = [metrics.speedup(x * k, l, x, l).value for k in (4.0, 2.0, 1.0, 0.5, 0.25)]
    np.testing.assert_allclose(values, [0.25, 0.5, 1.0, 2.0, 4.0])


def test_speedup_when_the_method_never_reaches_the_baseline_best():
    x = np.arange(11.0)
    base = np.linspace(1.0, 0.0, 11)
    worse = np.linspace(1.0, 0.5, 11)  # ends where the baseline was at step 5
    s = metrics.speedup(x, worse, x, base)
    assert not s.reached and s.value == pytest.approx(0.5)
    flat = np.ones(11)
    assert metrics.speedup(x, flat, x, base).value == 0.0
    assert metrics.speedup(x, np.r_[base[:-1], np.nan], x, base).value == pytest.approx(0.9)
    assert metrics.speedup(x, np.full(11, np.nan), x, base).value == 0.0


def test_first_passage_interpolates():
    assert metrics.first_passage([0, 10], [1.0, 0.0], 0.25) == pytest.approx(7.5)
    assert metrics.first_passage([0, 10], [1.0, 0.5], 0.25) == math.inf
    # NaN never improves the envelope
    assert metrics.first_passage([0, 1, 2], [1.0, np.nan, 0.0], 0.5) == pytest.approx(1.5)


# ---------------------------------------------------------------- others
def test_mean_ci_matches_scipy_t_interval():
    v = [0.1, 0.4, 0.35, 0.2, 0.5]
    iv = metrics.mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert (iv.lo, iv.hi) == pytest.approx((lo, hi))
    assert metrics.mean_ci([np.nan, 2.0]).n == 1


def test_divergence_and_fractions():
    assert metrics.is_diverged([1.0, np.nan, 0.5])
    assert metrics.is_diverged([1.0, 0.5, 1.5])
    assert not metrics.is_diverged([1.0, 0.5, 0.7])


def test_mean_over_curve_trapezoid():
    assert metrics.mean_over_curve([0, 1, 2], [1.0, 0.0, 0.0]) == pytest.approx(0.25)
