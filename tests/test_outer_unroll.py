"""Truncation schedules, reset bookkeeping and vmap equivalence of the truncated step."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.learnable_hand import LearnableAdam, LearnableSGD
from outer_train import ConstantSchedule, InnerProblem, LogUniformSchedule, initial_offsets, make_estimator
from tasks.families import QuadraticFamily


def test_log_uniform_schedule_range_and_curriculum():
    sched = LogUniformSchedule(10, 1000)
    lengths = np.asarray(jax.vmap(sched.sample)(jax.random.split(jax.random.PRNGKey(0), 4000)))
    assert lengths.min() >= 10 and lengths.max() <= 1000
    # log-uniform: the median is near the geometric mean sqrt(10 * 1000) = 100
    assert 80 < np.median(lengths) < 125
    ramp = LogUniformSchedule(10, 1000, start_length=20, ramp_steps=100)
    early = np.asarray(jax.vmap(lambda k: ramp.sample(k, 0))(jax.random.split(jax.random.PRNGKey(1), 500)))
    late = np.asarray(jax.vmap(lambda k: ramp.sample(k, 200))(jax.random.split(jax.random.PRNGKey(1), 500)))
    assert early.max() <= 20 and late.max() > 500
    const = ConstantSchedule(100, start_length=10, ramp_steps=10)
    assert int(const.sample(None, 0)) == 10 and int(const.sample(None, 10)) == 100
    with pytest.raises(ValueError, match="min_length"):
        LogUniformSchedule(50, 10)


def test_initial_offsets_desynchronize():
    lengths = jnp.full((2000,), 50, jnp.int32)
    off = np.asarray(initial_offsets(jax.random.PRNGKey(0), lengths))
    assert off.min() == 0 and off.max() == 49
    assert abs(off.mean() - 24.5) < 1.5


def _problem(length=3, lopt=None):
    fam = QuadraticFamily(dim=3)
    return InnerProblem(fam, lopt or LearnableSGD(0.05), ConstantSchedule(length))


def test_reset_bookkeeping_and_plain_optax_agreement():
    """T = 3 updates per trajectory -> 4 inner steps: the task re-samples at steps 3, 7 (its
    counter restarts), the first step of each trajectory is masked, and the recorded losses are
    those of a plain optax.sgd loop from the same initial parameters."""
    prob = _problem(3)
    theta = LearnableSGD(0.05).init()
    theta_nb = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (2, 1)), theta)
    ts = jax.jit(lambda t, k: prob.init_tasks(t, k, random_offset=False))(theta_nb, jax.random.PRNGKey(0))
    new_ts, out = jax.jit(lambda t, s, k: prob.unroll(t, s, k, 10))(theta_nb, ts, jax.random.PRNGKey(1))
    reset = np.asarray(out.reset)
    valid = np.asarray(out.valid)
    np.testing.assert_array_equal(reset, np.tile([0, 0, 0, 1, 0, 0, 0, 1, 0, 0], (2, 1)).astype(bool))
    np.testing.assert_array_equal(valid, np.tile([0, 1, 1, 1, 0, 1, 1, 1, 0, 1], (2, 1)).astype(bool))
    np.testing.assert_array_equal(np.asarray(new_ts.step), [2, 2])
    # a new task was sampled at the reset (different target)
    assert not np.allclose(np.asarray(new_ts.cfg["target"]), np.asarray(ts.cfg["target"]))
    # the first trajectory's losses equal a plain optax.sgd run on the same task
    task = prob.family.task_fn(jax.tree_util.tree_map(lambda x: x[0], ts.cfg))
    params = jax.tree_util.tree_map(lambda x: x[0, 0], ts.params)
    opt = optax.sgd(0.05)
    state = opt.init(params)
    losses = []

    @jax.jit
    def sgd_step(params, state):
        loss, g = jax.value_and_grad(task.expected_loss)(params)
        u, state = opt.update(g, state)
        return loss, optax.apply_updates(params, u), state

    for _ in range(3):
        loss, params, state = sgd_step(params, state)
        losses.append(float(loss))
    losses.append(float(task.expected_loss(params)))  # measured in the reset step
    np.testing.assert_allclose(np.asarray(out.loss[0, :4, 0]), losses, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.meta[0, 1:4, 0]), np.asarray(losses[1:]) / losses[0], rtol=1e-5)


def test_pes_accumulator_replaced_at_reset():
    """Trajectories of T = 5 updates (6 inner steps), K = 4: the first call has no reset, so the
    accumulator becomes ε₁; the second resets at its 2nd step, so it is *replaced* by ε₂ (not
    ε₁ + ε₂); the third call's last step is a reset, so the accumulator becomes 0 (the fresh
    parameters depend on no perturbation yet)."""
    prob = _problem(5)
    est = make_estimator("pes", prob, num_tasks=2, unroll_length=4, sigma=0.1, random_offsets=False)
    theta = LearnableSGD(0.05).init()
    state = est.init(jax.random.PRNGKey(0), theta)
    f = jax.jit(est.estimate)
    eps_keys = jax.random.split(jax.random.PRNGKey(1), 3)
    eps = [np.asarray(est.perturbations(k, theta)) for k in eps_keys]
    _, state, m1 = f(theta, state, eps_keys[0], jax.random.PRNGKey(10))
    np.testing.assert_allclose(np.asarray(state.accum), eps[0], rtol=1e-6)
    assert float(m1["frac_reset"]) == 0.0
    _, state, m2 = f(theta, state, eps_keys[1], jax.random.PRNGKey(11))
    assert float(m2["frac_reset"]) == 1.0
    np.testing.assert_allclose(np.asarray(state.accum), eps[1], rtol=1e-6)
    assert not np.allclose(np.asarray(state.accum), eps[0] + eps[1], rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(state.tasks.step), [2, 2])  # 2 updates since the reset
    _, state, m3 = f(theta, state, eps_keys[2], jax.random.PRNGKey(12))
    assert float(m3["frac_reset"]) == 1.0
    np.testing.assert_array_equal(np.asarray(state.accum), np.zeros_like(eps[2]))
    np.testing.assert_array_equal(np.asarray(state.tasks.step), [0, 0])
    # both branches of a task restarted from identical parameters at the reset
    p = np.asarray(state.tasks.params["x"])
    np.testing.assert_array_equal(p[:, 0], p[:, 1])


def test_vmap_equivalence():
    """N vmapped inner problems == N separate (unvmapped) runs with the same keys."""
    prob = _problem(4, LearnableAdam(0.05))
    theta = LearnableAdam(0.05).init()
    n = 3
    theta_nb = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, 2)), theta)
    ts = jax.jit(prob.init_tasks)(theta_nb, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    new_ts, out = jax.jit(lambda t, s, k: prob.unroll(t, s, k, 7))(theta_nb, ts, key)
    keys = jax.random.split(key, n)
    single = jax.jit(lambda t, s, k: prob.unroll_task(t, s, k, 7))
    for i in range(n):
        take = lambda x, i=i: x[i]
        s_i, o_i = single(jax.tree_util.tree_map(take, theta_nb), jax.tree_util.tree_map(take, ts), keys[i])
        np.testing.assert_allclose(np.asarray(o_i.loss), np.asarray(out.loss[i]), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(o_i.reset), np.asarray(out.reset[i]))
        np.testing.assert_allclose(np.asarray(s_i.params["x"]), np.asarray(new_ts.params["x"][i]), rtol=1e-6)
