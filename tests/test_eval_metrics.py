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


def test_speedup_of_adam_own_curve_is_one():
    x, l = _adam_like_curve()
    s = metrics.speedup(x, l, [(x, l)])
    assert s.value == pytest.approx(1.0)
    assert not s.censored


def test_speedup_of_curve_reaching_every_loss_in_half_the_steps_is_two():
    x, l = _adam_like_curve()
    # same losses recorded at half the cost
    s = metrics.speedup(x / 2.0, l, [(x, l)])
    assert s.value == pytest.approx(2.0)
    # the same, as a curve over the full horizon that stays at its best after the half-way point
    T = len(x) - 1
    fast = l[np.minimum(2 * np.arange(T + 1), T)]
    fast = metrics.lower_envelope(fast)
    env = metrics.lower_envelope(l)
    s2 = metrics.speedup(x, fast, [(x, env)])
    assert s2.value == pytest.approx(2.0, rel=0.02)


def test_speedup_is_monotone_in_speed():
    x, l = _adam_like_curve(seed=1)
    values = [metrics.speedup(x * k, l, [(x, l)]).value for k in (4.0, 2.0, 1.0, 0.5, 0.25)]
    assert all(a < b for a, b in zip(values, values[1:]))
    np.testing.assert_allclose(values, [0.25, 0.5, 1.0, 2.0, 4.0])


def test_speedup_more_adam_curves_never_increase_it():
    x, l = _adam_like_curve(seed=2)
    other = 3.0 * np.exp(-x / 30.0) + 0.12  # a faster-at-first learning rate
    alone = metrics.speedup(x, l, [(x, l)]).value
    both = metrics.speedup(x, l, [(x, l), (x, other)]).value
    assert both <= alone + 1e-12
    assert both < 1.0  # the faster rate reaches intermediate losses sooner


def test_speedup_censored_when_adam_never_reaches():
    x = np.arange(11.0)
    adam = np.linspace(1.0, 0.5, 11)
    better = np.linspace(1.0, 0.1, 11)
    s = metrics.speedup(x, better, [(x, adam)])
    assert s.censored
    assert s.value == pytest.approx(10.0 / 10.0)
    nan_run = metrics.speedup(x, np.r_[better[:-1], np.nan], [(x, adam)])
    assert math.isnan(nan_run.value)


def test_first_passage_interpolates():
    assert metrics.first_passage([0, 10], [1.0, 0.0], 0.25) == pytest.approx(7.5)
    assert metrics.first_passage([0, 10], [1.0, 0.5], 0.25) == math.inf
    # NaN never improves the envelope
    assert metrics.first_passage([0, 1, 2], [1.0, np.nan, 0.0], 0.5) == pytest.approx(1.5)


def test_merge_envelope_on_different_grids():
    g, e = metrics.merge_envelope([(np.array([0.0, 10.0]), np.array([1.0, 0.2])),
                                   (np.array([0.0, 5.0]), np.array([1.0, 0.5]))])
    np.testing.assert_allclose(g, [0, 5, 10])
    np.testing.assert_allclose(e, [1.0, 0.5, 0.2])


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
    assert metrics.fraction_better([0.1, 0.5, np.nan], [0.2, 0.4, 0.3]) == pytest.approx(1 / 3)
    assert metrics.fraction_better([0.1], [np.nan]) is None


def test_mean_over_curve_trapezoid():
    assert metrics.mean_over_curve([0, 1, 2], [1.0, 0.0, 0.0]) == pytest.approx(0.25)
