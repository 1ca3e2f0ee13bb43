"""Per-task meta-gradient clipping to the median norm (``task_grad_clip``) against a numpy reference."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt.learnable_hand import LearnableSGD
from outer_train import ConstantSchedule, InnerProblem, MixtureEstimator, TrainConfig, make_estimator
from outer_train.build import build_estimator
from outer_train.estimators import clip_to_median_norm
from tasks.families import QuadraticFamily


def _reference(g: np.ndarray, ok: np.ndarray, ratio: float, equalize: bool = False) -> tuple[np.ndarray, float]:
    norms = np.linalg.norm(g, axis=1)
    median = float(np.median(norms[ok]))
    out = g.copy()
    for j in np.flatnonzero(ok):
        if norms[j] > 0 and (equalize or norms[j] > ratio * median):  # a zero row stays zero
            out[j] = g[j] * ratio * median / norms[j]
    return out, float(norms[ok].max() / median)


@pytest.mark.parametrize("ratio", [1.0, 2.5])
def test_clip_to_median_norm_matches_reference(ratio):
    rng = np.random.default_rng(0)
    g = rng.normal(size=(7, 5)) * np.array([1.0, 0.2, 3.0, 1e4, 0.7, 1.5, 0.01])[:, None]
    ok = np.array([True, True, True, True, True, False, True])
    g[5] = np.nan  # a dropped row stays as it is and does not enter the median
    got, spread = clip_to_median_norm(jnp.asarray(g), jnp.asarray(ok), ratio)
    want, want_spread = _reference(g, ok, ratio)
    np.testing.assert_allclose(np.asarray(got)[ok], want[ok], rtol=1e-6)
    assert np.all(np.isnan(np.asarray(got)[5]))
    np.testing.assert_allclose(float(spread), want_spread, rtol=1e-6)
    assert float(spread) > 1e3  # the outlier row was there, and it no longer dominates:
    norms = np.linalg.norm(np.asarray(got)[ok], axis=1)
    assert norms.max() <= ratio * np.median(np.linalg.norm(g[ok], axis=1)) * (1 + 1e-6)


@pytest.mark.parametrize("ratio", [1.0, 2.5])
def test_equalize_gives_every_row_the_median_norm(ratio):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(6, 4)) * np.array([1.0, 1e-5, 3.0, 1e4, 0.7, 0.2])[:, None]
    ok = np.array([True, True, True, True, False, True])
    got, spread = clip_to_median_norm(jnp.asarray(g), jnp.asarray(ok), ratio, equalize=True)
    want, want_spread = _reference(g, ok, ratio, equalize=True)
    got = np.asarray(got)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5)
    np.testing.assert_allclose(got[4], g[4], rtol=1e-6)  # a dropped row is left alone
    median = np.median(np.linalg.norm(g[ok], axis=1))
    np.testing.assert_allclose(np.linalg.norm(got[ok], axis=1), ratio * median, rtol=1e-5)
    # directions are kept: the tiny row is lengthened, not replaced
    np.testing.assert_allclose(got[1] / np.linalg.norm(got[1]), g[1] / np.linalg.norm(g[1]), rtol=1e-5)
    np.testing.assert_allclose(float(spread), want_spread, rtol=1e-5)


def test_equalize_keeps_a_zero_row_zero():
    g = jnp.asarray([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    got, _ = clip_to_median_norm(g, jnp.ones(3, bool), 1.0, equalize=True)
    np.testing.assert_allclose(np.asarray(got), [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)


def test_clip_to_median_norm_without_ok_rows_is_nan_spread():
    g = jnp.ones((3, 2))
    got, spread = clip_to_median_norm(g, jnp.zeros(3, bool), 1.0)
    np.testing.assert_array_equal(np.asarray(got), np.ones((3, 2)))
    assert np.isnan(float(spread))


def _members(scales=(0.3, 1.0, 30.0)):
    """ES on learnable SGD for quadratics whose curvatures differ by 100x (so do the meta-gradients)."""
    members = []
    for s in scales:
        fam = QuadraticFamily(dim=4, min_log10_cond=0.3, max_log10_cond=1.0, min_scale=s, max_scale=s)
        prob = InnerProblem(fam, LearnableSGD(0.05 / s), ConstantSchedule(12))
        members.append(make_estimator("es", prob, num_tasks=2, unroll_length=4, sigma=0.1))
    return tuple(members)


@pytest.mark.slow  # ~100 s on 2 cores: one compile per member estimator
def test_mixture_clip_equals_clipped_mean_of_member_estimates():
    """The mixture's estimate = the numpy-clipped mean of its members' estimates, each computed alone
    with the key the mixture hands it."""
    members = _members()
    theta = {"log_lr": jnp.asarray(np.log(0.05), jnp.float32)}
    key = jax.random.PRNGKey(3)
    for ratio, equalize in ((1.0, False), (1.5, False), (0.0, True)):
        mix = MixtureEstimator(members, task_grad_clip=ratio, task_grad_equalize=equalize)
        state = mix.init(jax.random.PRNGKey(0), theta)
        grad, _, metrics = jax.jit(mix)(theta, state, key)
        keys = jax.random.split(key, len(members))
        rows = np.stack([np.ravel(np.asarray(m(theta, s, k)[0]["log_lr"]))
                         for m, s, k in zip(members, state.members, keys)])
        want, spread = _reference(rows, np.ones(len(rows), bool), ratio or 1.0, equalize)
        assert spread > 2.0  # the members' estimates really differ (7.7 here), so clipping acts
        np.testing.assert_allclose(np.asarray(grad["log_lr"]), want.mean(0)[0], rtol=1e-5)
        np.testing.assert_allclose(float(metrics["task_grad_spread"]), spread, rtol=1e-5)
    # off (0) and a ratio no norm reaches agree exactly
    off = MixtureEstimator(members)
    wide = MixtureEstimator(members, task_grad_clip=1e12)
    state = off.init(jax.random.PRNGKey(0), theta)
    np.testing.assert_allclose(np.asarray(jax.jit(off)(theta, state, key)[0]["log_lr"]),
                               np.asarray(jax.jit(wide)(theta, state, key)[0]["log_lr"]), rtol=1e-6)


def test_estimator_clip_bounds_every_task_row():
    """Within one estimator, N tasks of very different loss scales: with r = 1 the mean estimate is
    no longer than the median task's, and it matches the unclipped one when r is huge."""
    fam = QuadraticFamily(dim=4, min_log10_cond=0.3, max_log10_cond=1.0, min_scale=0.1, max_scale=100.0)
    prob = InnerProblem(fam, LearnableSGD(0.001), ConstantSchedule(12))
    theta = {"log_lr": jnp.asarray(np.log(0.001), jnp.float32)}
    key = jax.random.PRNGKey(5)
    got = {}
    for ratio in (0.0, 1.0, 1e12):
        est = make_estimator("es", prob, num_tasks=6, unroll_length=4, sigma=0.1, task_grad_clip=ratio)
        state = est.init(jax.random.PRNGKey(0), theta)
        got[ratio] = jax.jit(est)(theta, state, key)
    np.testing.assert_allclose(float(got[0.0][0]["log_lr"]), float(got[1e12][0]["log_lr"]), rtol=1e-6)
    spread = float(got[1.0][2]["task_grad_spread"])
    assert spread > 2.0  # the tasks' meta-gradients really differ (3.8 here)
    assert abs(float(got[1.0][0]["log_lr"])) < abs(float(got[0.0][0]["log_lr"]))


@pytest.mark.parametrize("bad", [0.5, -1.0, True, "1"])
def test_bad_task_grad_clip_is_rejected(bad):
    with pytest.raises((ValueError, TypeError), match="task_grad_clip"):
        TrainConfig(task_grad_clip=bad)
    with pytest.raises(ValueError, match="task_grad_clip"):
        MixtureEstimator(_members((1.0,)), task_grad_clip=bad)


@pytest.mark.parametrize("bad", [1, 0.0, "yes", None])
def test_bad_task_grad_equalize_is_rejected(bad):
    with pytest.raises(TypeError, match="task_grad_equalize"):
        TrainConfig(task_grad_equalize=bad)
    with pytest.raises(TypeError, match="task_grad_equalize"):
        MixtureEstimator(_members((1.0,)), task_grad_equalize=bad)


def test_config_hands_equalize_to_the_estimator():
    cfg = TrainConfig(task="quadratic", estimator="es", num_tasks=3, unroll_length=4, trunc_length=8,
                      task_grad_equalize=True)
    est = build_estimator(cfg, LearnableSGD(0.01))
    assert est.task_grad_equalize and est.task_grad_clip == 0.0
    assert not build_estimator(TrainConfig(task="quadratic", estimator="es"), LearnableSGD(0.01)).task_grad_equalize
