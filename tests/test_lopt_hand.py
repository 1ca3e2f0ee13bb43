"""Learnable hand-designed optimizers against optax and against closed forms."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.learnable_hand import LearnableAdam, LearnableMomentum, LearnableSGD


def problem():
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params = {"w": jax.random.normal(k1, (6, 4)), "b": jnp.zeros((4,)), "s": jnp.asarray(1.5)}
    x = jax.random.normal(k2, (16, 6))

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p["w"] + p["b"]) - 0.5) ** 2) + 0.1 * p["s"] ** 4

    return params, loss


def trajectory(tx, params, loss, steps=50):
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        u, s = tx.update(g, s, p, loss=value) if isinstance(tx, optax.GradientTransformationExtraArgs) \
            else tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    out = []
    for _ in range(steps):
        params, state = step(params, state)
        out.append(params)
    return out


def assert_trajectories_match(a, b, rtol=1e-6, atol=1e-8):
    for pa, pb in zip(a, b):
        for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("lopt, reference", [
    (LearnableAdam(), optax.adam(1e-3)),
    (LearnableAdam(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-6), optax.adam(0.05, b1=0.8, b2=0.99, eps=1e-6)),
    (LearnableSGD(0.1), optax.sgd(0.1)),
    (LearnableMomentum(0.05, 0.9), optax.sgd(0.05, momentum=0.9)),
], ids=["adam-default", "adam-custom", "sgd", "momentum"])
def test_initial_theta_matches_optax_over_50_steps(lopt, reference):
    params, loss = problem()
    ours = trajectory(lopt.opt_fn(lopt.init(jax.random.PRNGKey(0))), params, loss)
    theirs = trajectory(reference, params, loss)
    assert_trajectories_match(ours, theirs)
    # and the run is not trivial: the parameters moved
    assert float(jnp.max(jnp.abs(ours[-1]["w"] - params["w"]))) > 1e-3


def test_theta_is_log_space_hyperparameters():
    """θ set to the logs of other hyperparameters reproduces optax.adam with those values."""
    lopt = LearnableAdam()
    theta = {"log_lr": jnp.float32(math.log(0.02)), "log_one_minus_b1": jnp.float32(math.log(1 - 0.7)),
             "log_one_minus_b2": jnp.float32(math.log(1 - 0.95)), "log_eps": jnp.float32(math.log(1e-4))}
    params, loss = problem()
    ours = trajectory(lopt.opt_fn(theta), params, loss, steps=30)
    theirs = trajectory(optax.adam(0.02, b1=0.7, b2=0.95, eps=1e-4), params, loss, steps=30)
    assert_trajectories_match(ours, theirs, rtol=2e-5, atol=1e-6)

    sgd = LearnableSGD()
    ours = trajectory(sgd.opt_fn({"log_lr": jnp.float32(math.log(0.3))}), params, loss, steps=10)
    theirs = trajectory(optax.sgd(0.3), params, loss, steps=10)
    assert_trajectories_match(ours, theirs, rtol=2e-6, atol=1e-7)


def test_sgd_meta_gradient_matches_closed_form_finite_differences():
    """d/d log_lr of the loss after K SGD steps on a quadratic vs central differences of the
    closed form f = ½ x_Kᵀ A x_K with x_K = (I - lr A)^K x_0 (float64)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
        a = q @ np.diag([0.5, 1.0, 2.0, 3.0, 4.0]) @ q.T
        x0 = rng.normal(size=5)
        k = 6

        # the documented map θ -> lr: lr = lr₀ exp(θ - float32(log lr₀)) (= exp(θ) to float32 rounding)
        theta0 = float(np.float32(math.log(0.1)))

        def closed_form(log_lr):
            m = np.eye(5) - 0.1 * math.exp(log_lr - theta0) * a
            xk = np.linalg.matrix_power(m, k) @ x0
            return 0.5 * xk @ a @ xk

        lopt = LearnableSGD(0.1)
        a_j = jnp.asarray(a)

        def unrolled(log_lr):
            tx = lopt.opt_fn({"log_lr": log_lr})
            x = {"x": jnp.asarray(x0)}
            s = tx.init(x)
            for _ in range(k):
                g = {"x": a_j @ x["x"]}
                u, s = tx.update(g, s, x)
                x = optax.apply_updates(x, u)
            return 0.5 * x["x"] @ a_j @ x["x"]

        for log_lr in (math.log(0.05), math.log(0.2)):
            theta = jnp.float64(log_lr)
            assert abs(float(unrolled(theta)) - closed_form(log_lr)) < 1e-12
            h = 1e-6
            fd = (closed_form(log_lr + h) - closed_form(log_lr - h)) / (2 * h)
            grad = float(jax.grad(unrolled)(theta))
            assert grad == pytest.approx(fd, rel=1e-6, abs=1e-12)


def test_momentum_meta_gradient_matches_finite_differences():
    """θ-gradients of LearnableMomentum through 8 unrolled steps vs central differences (float64)."""
    with jax.enable_x64(True):
        a = jnp.asarray(np.diag([0.3, 1.0, 2.5]))
        x0 = {"x": jnp.asarray([1.0, -2.0, 0.5])}
        lopt = LearnableMomentum(0.1, 0.8)

        def unrolled(theta):
            tx = lopt.opt_fn(theta)
            x, s = x0, tx.init(x0)
            for _ in range(8):
                u, s = tx.update({"x": a @ x["x"]}, s, x)
                x = optax.apply_updates(x, u)
            return 0.5 * x["x"] @ a @ x["x"]

        theta = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), lopt.init(None))
        grads = jax.grad(unrolled)(theta)
        for key in theta:
            h = 1e-6
            plus = dict(theta, **{key: theta[key] + h})
            minus = dict(theta, **{key: theta[key] - h})
            fd = (float(unrolled(plus)) - float(unrolled(minus))) / (2 * h)
            assert float(grads[key]) == pytest.approx(fd, rel=1e-5, abs=1e-10), key


@pytest.mark.parametrize("bad", [{"learning_rate": 0.0}, {"learning_rate": -1.0}, {"b1": 1.0},
                                 {"b2": -0.1}, {"eps": 0.0}, {"learning_rate": "fast"}])
def test_invalid_hyperparameters(bad):
    with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
        LearnableAdam(**bad)
