"""Meta-gradient estimators against independent references (finite differences, quadrature of the
smoothed objective, full-horizon gradients) on learnable SGD over quadratics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.base import LearnedOptimizer
from learned_opt.learnable_hand import LearnableSGD
from outer_train import ConstantSchedule, FixedTaskFamily, InnerProblem, make_estimator
from tasks.families import QuadraticFamily
from tasks.quadratic import QuadraticTask


def _family():
    return QuadraticFamily(dim=4, min_log10_cond=0.3, max_log10_cond=1.0, min_scale=0.5, max_scale=1.0)


def _theta(log_lr: float) -> dict:
    return {"log_lr": jnp.asarray(log_lr, jnp.float32)}


# --------------------------------------------------------------------- exact gradient agreement
def test_full_grad_matches_finite_differences():
    """∇ of the full-horizon (10-step) meta-loss by backprop (jax.checkpoint per step) equals
    central finite differences of the same objective evaluated without differentiation."""
    with jax.enable_x64(True):
        prob = InnerProblem(_family(), LearnableSGD(0.1), ConstantSchedule(10))
        est = make_estimator("full_grad", prob, num_tasks=3)
        theta = _theta(np.log(0.3))
        state = est.init(jax.random.PRNGKey(0), theta)
        task_key = jax.random.PRNGKey(1)
        grad, _, metrics = jax.jit(est.estimate)(theta, state, jax.random.PRNGKey(2), task_key)
        values = jax.jit(est.values)
        h = 2e-3
        up = float(jnp.mean(values(_theta(np.log(0.3) + h), state, task_key)))
        down = float(jnp.mean(values(_theta(np.log(0.3) - h), state, task_key)))
        fd = (up - down) / (2 * h)
        assert abs(fd) > 0.05  # a non-trivial gradient
        np.testing.assert_allclose(float(grad["log_lr"]), fd, rtol=2e-3)
        # the objective really is the mean normalized loss of one whole trajectory
        np.testing.assert_allclose(float(metrics["meta_loss"]),
                                   float(jnp.mean(values(theta, state, task_key))), rtol=1e-5)


@pytest.mark.slow
def test_full_es_and_smoothed_rp_estimate_the_smoothed_gradient():
    """E[full-horizon ES] and E[smoothed RP] = d/dθ E_z[F(θ + σz)], the latter computed by
    Gauss-Hermite quadrature of exact full-horizon gradients on the same tasks."""
    sigma = 0.3
    prob = InnerProblem(_family(), LearnableSGD(0.1), ConstantSchedule(10))
    theta = _theta(np.log(0.3))
    task_key = jax.random.PRNGKey(7)
    exact = make_estimator("full_grad", prob, num_tasks=4)
    state = exact.init(jax.random.PRNGKey(0), theta)
    nodes, weights = np.polynomial.hermite_e.hermegauss(24)
    weights = weights / weights.sum()
    grad_at = jax.jit(jax.vmap(lambda z: exact.estimate({"log_lr": theta["log_lr"] + sigma * z},
                                                        state, task_key, task_key)[0]["log_lr"]))
    target = float(np.sum(weights * np.asarray(grad_at(jnp.asarray(nodes, jnp.float32)))))
    eps_keys = jax.random.split(jax.random.PRNGKey(3), 400)
    for kind in ("full_es", "smoothed_rp"):
        kw = {"horizon": "full"} if kind == "smoothed_rp" else {}
        est = make_estimator(kind, prob, num_tasks=4, sigma=sigma, **kw)
        st = est.init(jax.random.PRNGKey(0), theta)

        def log_lr_grad(k, est=est, st=st):
            return est.estimate(theta, st, k, task_key)[0]["log_lr"]
        samples = np.asarray(jax.jit(jax.vmap(log_lr_grad))(eps_keys))
        mean, se = samples.mean(), samples.std(ddof=1) / np.sqrt(len(samples))
        assert se < 0.25 * abs(target), (kind, se, target)  # the check has power
        assert abs(mean - target) < 4 * se, (kind, mean, target, se)


# ------------------------------------------------------------------------------ PES unbiasedness
def _episode_sum(est, theta, key, num_unrolls):
    """Σ of the estimates over ``num_unrolls`` consecutive truncations from a fresh state."""
    def run(k):
        k_init, k_loop = jax.random.split(k)
        st = est.init(k_init, theta)

        def body(s, kk):
            g, s, _ = est(theta, s, kk)
            return s, g["log_lr"]

        _, gs = jax.lax.scan(body, st, jax.random.split(k_loop, num_unrolls))
        return jnp.sum(gs)

    return jax.jit(jax.vmap(run))(jax.random.split(key, 6))


@pytest.mark.slow
@pytest.mark.parametrize("meta_loss", ["train", "outer_valid"])
def test_pes_unbiased_where_truncation_is_biased(meta_loss):
    """SGD's log-lr on an ill-conditioned quadratic (κ = 100): averaged over whole episodes
    (T = 39 updates = 10 truncations of K = 4), PES matches the full-horizon ES gradient, while
    truncated backprop and truncated ES are an order of magnitude too small. With
    ``meta_loss="outer_valid"`` each loss is measured after the update instead of before it (the
    same trajectory, shifted by one step), and PES still matches full-horizon ES of that objective."""
    T, K, N = 39, 4, 64
    task = QuadraticTask(dim=10, condition_number=100.0, scale=0.01, seed=0)
    prob = InnerProblem(FixedTaskFamily(task), LearnableSGD(1.0), ConstantSchedule(T), clip=(-10.0, 10.0),
                        meta_loss=meta_loss)
    theta = _theta(0.0)
    # reference: full-horizon antithetic ES over 2048 trajectories (exact backprop, run once
    # when this test was written, gives -0.258 here)
    fes = make_estimator("full_es", prob, num_tasks=2048, sigma=0.01)
    g_full = float(jax.jit(fes)(theta, fes.init(jax.random.PRNGKey(0), theta), jax.random.PRNGKey(2))[0]["log_lr"])
    assert -0.33 < g_full < -0.19
    scale = K / T  # Σ over an episode of the per-truncation (1/K)-weighted losses = (T/K) · F
    results = {}
    for kind in ("pes", "tbptt", "es"):
        est = make_estimator(kind, prob, num_tasks=N, unroll_length=K, sigma=0.01, random_offsets=False)
        sums = np.asarray(_episode_sum(est, theta, jax.random.PRNGKey(5), (T + 1) // K)) * scale
        results[kind] = (sums.mean(), sums.std(ddof=1) / np.sqrt(len(sums)))
    pes_mean, pes_se = results["pes"]
    assert abs(pes_mean - g_full) < max(4 * pes_se, 0.05 * abs(g_full)), results
    for kind in ("tbptt", "es"):
        mean, se = results[kind]
        assert abs(mean - g_full) > 0.5 * abs(g_full) and abs(mean - g_full) > 6 * se, (kind, results)


# ---------------------------------------------------------------------- antithetic consistency
class _ThetaBlindSGD(LearnedOptimizer):
    """SGD at a fixed rate; θ exists but cannot affect the update."""

    name = "theta_blind"

    def init(self, key=None):
        return {"w": jnp.zeros(3, jnp.float32)}

    def opt_fn(self, theta, num_steps=None):
        def init_fn(params):
            return optax.EmptyState()

        def update_fn(grads, state, params=None, **extra):
            return jax.tree_util.tree_map(lambda g: -0.05 * g, grads), state

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@pytest.mark.parametrize("kind", ["es", "pes", pytest.param("full_es", marks=pytest.mark.slow),
                                  pytest.param("hybrid", marks=pytest.mark.slow)])
def test_antithetic_estimates_are_exactly_zero_when_theta_is_inert(kind):
    """± branches share task, data, loss noise and init, so V(θ+ε) == V(θ-ε) bit for bit."""
    fam = QuadraticFamily(dim=4, min_noise_std=0.1, max_noise_std=1.0)  # noisy: keys matter
    prob = InnerProblem(fam, _ThetaBlindSGD(), ConstantSchedule(6))
    est = make_estimator(kind, prob, num_tasks=3, unroll_length=4, sigma=0.1)
    theta = _ThetaBlindSGD().init()
    state = est.init(jax.random.PRNGKey(0), theta)
    f = jax.jit(est)
    for i in range(3):  # crosses resets (trajectories of 7 inner steps, random offsets)
        g, state, m = f(theta, state, jax.random.PRNGKey(10 + i))
        assert np.all(np.asarray(g["w"]) == 0.0), (kind, i, g)
        if kind == "pes":
            p = state.tasks.params["x"]
            assert np.array_equal(np.asarray(p[:, 0]), np.asarray(p[:, 1]))


@pytest.mark.slow
def test_pes_meta_training_moves_log_lr_toward_long_horizon_optimum():
    """Grid search of the full-horizon objective F(log lr) gives θ*; 80 outer Adam steps of PES
    from θ* - 1 close most of the gap."""
    from outer_train import TrainConfig, train
    T, K = 39, 4
    task = QuadraticTask(dim=10, condition_number=100.0, scale=0.01, seed=0)
    lopt = LearnableSGD(1.0)
    prob = InnerProblem(FixedTaskFamily(task), lopt, ConstantSchedule(T), clip=(-10.0, 10.0))
    full = make_estimator("full_es", prob, num_tasks=256, sigma=0.01)
    st = full.init(jax.random.PRNGKey(0), _theta(0.0))
    grid = np.linspace(-1.0, 1.0, 21)
    objective = jax.jit(jax.vmap(lambda t: jnp.mean(full.values({"log_lr": t}, st, jax.random.PRNGKey(1)))))
    values = np.asarray(objective(jnp.asarray(grid, jnp.float32)))
    best = float(grid[np.argmin(values)])
    assert -0.9 < best < 0.9  # an interior optimum
    start = best - 1.0
    lopt_start = LearnableSGD(float(np.exp(start)))
    prob_start = InnerProblem(FixedTaskFamily(task), lopt_start, ConstantSchedule(T), clip=(-10.0, 10.0))
    est = make_estimator("pes", prob_start, num_tasks=16, unroll_length=K, sigma=0.01)
    result = train(TrainConfig(optimizer="sgd", outer_steps=80, outer_lr=0.05, progress=False),
                   lopt=lopt_start, estimator=est)
    final = float(result.theta["log_lr"])
    assert abs(final - best) < 0.35 * abs(start - best), (start, final, best)
