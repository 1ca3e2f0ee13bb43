"""The meta-training recipe knobs of issue 16: a traced per-trajectory horizon, the final-loss
weighted meta-objective and the warmup-cosine outer schedule.

References are independent of the code under test: the traced horizon against the static one,
the weighted meta-loss against a hand sum over the unroll's outputs, the schedule against its
closed form.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt import features as F
from learned_opt.registry import get_optimizer
from outer_train import ConstantSchedule, FixedTaskFamily, InnerProblem, make_estimator
from outer_train.config import TrainConfig
from outer_train.trainer import make_outer_optimizer, outer_learning_rate
from tasks.base import Task


class _Quadratic(Task):
    """``Σ_i c_i (x_i - 1)²`` with fixed curvatures (data-free)."""

    name = "recipe_quadratic"

    def init(self, key):
        return {"x": jax.random.normal(key, (5,)), "y": jnp.zeros((2, 3))}

    def loss(self, params, key, batch):
        c = jnp.arange(1.0, 6.0)
        return jnp.sum(c * (params["x"] - 1.0) ** 2) + jnp.sum((params["y"] - 0.5) ** 2)


def _random_theta(lopt, seed=0, scale=0.3):
    """θ with every leaf perturbed, so the time features change the update."""
    theta = lopt.init(jax.random.PRNGKey(seed))
    leaves, tree = jax.tree_util.tree_flatten(theta)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


# ------------------------------------------------------------------------------ traced horizon
@pytest.mark.parametrize("horizon", [1, 37, 200])
def test_time_features_traced_horizon_equal_static(horizon):
    for step in (0, 5, 36, 250):
        static = F.time_features(jnp.int32(step), horizon)
        traced = jax.jit(lambda n, s=step: F.time_features(jnp.int32(s), n))(jnp.int32(horizon))
        np.testing.assert_allclose(np.asarray(traced), np.asarray(static), rtol=1e-6, atol=1e-9)


def test_array_num_steps_must_be_an_integer_scalar():
    with pytest.raises(ValueError, match="integer scalar"):
        F.check_num_steps(jnp.ones((2,), jnp.int32), "X")
    with pytest.raises(ValueError, match="integer scalar"):
        F.check_num_steps(jnp.float32(3.0), "X")


def test_scheduled_adam_traced_horizon_equals_static():
    lopt = get_optimizer("scheduled_adam")
    theta = _random_theta(lopt)
    params = _Quadratic().init(jax.random.PRNGKey(3))
    grads = jax.grad(lambda p: _Quadratic().loss(p, None, None))(params)

    def run(num_steps):
        opt = lopt.opt_fn(theta, num_steps=num_steps)
        state = opt.init(params)
        upd = None
        for _ in range(3):
            upd, state = opt.update(grads, state, params, loss=jnp.float32(2.0))
        return upd

    static = run(40)
    traced = jax.jit(run)(jnp.int32(40))
    other = run(400)
    for k in params:
        np.testing.assert_allclose(np.asarray(traced[k]), np.asarray(static[k]), rtol=1e-5, atol=1e-8)
    assert not np.allclose(np.asarray(other["x"]), np.asarray(static["x"]))  # the horizon matters


def test_inner_problem_tells_the_trajectory_length():
    """With ``traced_horizon`` the optimizer sees each trajectory's own length: under a constant
    schedule of length L that is the same as telling it L statically — and not the same as
    telling it another horizon."""
    lopt = get_optimizer("scheduled_adam")
    theta = _random_theta(lopt)
    fam = FixedTaskFamily(_Quadratic())

    def unroll(num_steps):
        prob = InnerProblem(fam, lopt, ConstantSchedule(12), normalizer="none", num_steps=num_steps)
        theta_b = jax.tree_util.tree_map(lambda x: x[None], theta)
        ts = prob.init_task(theta_b, jax.random.PRNGKey(0), random_offset=False)
        _, out = jax.jit(lambda t, s: prob.unroll_task(t, s, jax.random.PRNGKey(1), 10))(theta_b, ts)
        return prob, np.asarray(out.loss)

    prob, told = unroll(None)
    assert prob.tells_length
    _, static = unroll(12)
    _, wrong = unroll(500)
    np.testing.assert_allclose(told, static, rtol=1e-5)
    assert not np.allclose(told, wrong, rtol=1e-5)
    mlp_prob = InnerProblem(fam, get_optimizer("mlp"), ConstantSchedule(12))
    assert not mlp_prob.tells_length


# --------------------------------------------------------------------------- meta weighting
@pytest.mark.parametrize("weighting,closed_form", [("linear", lambda p: 2 * p), ("cubic", lambda p: 4 * p ** 3)])
def test_weighting_progress_and_values(weighting, closed_form):
    lopt = get_optimizer("scheduled_adam")
    theta = lopt.init(jax.random.PRNGKey(0))
    length, unroll_len = 6, 8
    prob = InnerProblem(FixedTaskFamily(_Quadratic()), lopt, ConstantSchedule(length), normalizer="initial",
                        meta_weighting=weighting)
    theta_b = jax.tree_util.tree_map(lambda x: x[None], theta)
    ts = prob.init_task(theta_b, jax.random.PRNGKey(0), random_offset=False)
    _, out = prob.unroll_task(theta_b, ts, jax.random.PRNGKey(1), unroll_len)
    # steps 0..6 are one trajectory (step 0 masked: the loss of w_0), step 7 is the next's w_0
    np.testing.assert_allclose(np.asarray(out.progress[:7]), np.arange(7) / length, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.weight), closed_form(np.asarray(out.progress)), rtol=1e-6)
    # a trajectory's weights average 1 in the continuous limit (checked on a fine grid)
    grid = np.linspace(0.0, 1.0, 100_001)
    np.testing.assert_allclose(np.trapezoid(closed_form(grid), grid), 1.0, rtol=1e-6)
    assert list(np.asarray(out.valid)) == [False] + [True] * 6 + [False]

    est = make_estimator("es", prob, num_tasks=2, unroll_length=unroll_len, sigma=0.01, random_offsets=False)
    state = est.init(jax.random.PRNGKey(2), theta)
    vals = np.asarray(est.values(theta, state, jax.random.PRNGKey(3)))
    # hand reference: the same unroll per task with its own keys, Σ valid·ω(t/T)·ℓ_t / K
    k_init, k_unroll = jax.random.split(jax.random.PRNGKey(3))
    keys = InnerProblem.task_keys(k_unroll, 2, unroll_len)
    for i in range(2):
        ts_i = jax.tree_util.tree_map(lambda x, i=i: x[i:i + 1], state.tasks)
        _, out_i = prob.unroll_keys(jax.tree_util.tree_map(lambda x: x[None, None], theta), ts_i, keys[i:i + 1])
        valid = np.asarray(out_i.valid[0], np.float64)
        progress = np.asarray(out_i.progress[0], np.float64)
        ref = np.sum(valid * closed_form(progress) * np.asarray(out_i.meta[0, :, 0], np.float64)) / unroll_len
        np.testing.assert_allclose(vals[i], ref, rtol=1e-5)


def test_uniform_weighting_is_the_default_and_bad_weighting_is_rejected():
    fam = FixedTaskFamily(_Quadratic())
    prob = InnerProblem(fam, get_optimizer("mlp"), ConstantSchedule(5))
    assert prob.meta_weighting == "uniform"
    with pytest.raises(ValueError, match="meta_weighting"):
        InnerProblem(fam, get_optimizer("mlp"), ConstantSchedule(5), meta_weighting="final")
    with pytest.raises(ValueError, match="meta_weighting"):
        TrainConfig(meta_weighting="quadratic")


# ------------------------------------------------------------------------------ outer schedule
def test_warmup_cosine_outer_schedule_closed_form():
    cfg = TrainConfig(outer_optimizer="adamw", outer_lr=3e-3, outer_lr_final=1e-3, outer_lr_schedule="warmup_cosine",
                      outer_warmup_steps=10, outer_steps=110)
    lr = outer_learning_rate(cfg)
    assert callable(lr)
    assert float(lr(0)) == 0.0
    np.testing.assert_allclose(float(lr(5)), 1.5e-3, rtol=1e-6)
    np.testing.assert_allclose(float(lr(10)), 3e-3, rtol=1e-6)
    for step in (30, 60, 110):
        frac = (step - 10) / 100
        ref = 1e-3 + (3e-3 - 1e-3) * 0.5 * (1 + math.cos(math.pi * frac))
        np.testing.assert_allclose(float(lr(step)), ref, rtol=1e-5)
    opt = make_outer_optimizer(cfg)
    params = {"a": jnp.ones(3)}
    upd, _ = opt.update({"a": jnp.ones(3)}, opt.init(params), params)
    assert float(jnp.max(jnp.abs(upd["a"]))) == 0.0  # lr 0 at step 0
    assert outer_learning_rate(TrainConfig(outer_lr=2e-3)) == 2e-3


def test_outer_decay_steps_ends_the_cosine_then_holds_the_final_rate():
    """Extending a finished run (more ``outer_steps``, same ``outer_decay_steps``) keeps the
    schedule it was trained with and holds ``outer_lr_final`` afterwards."""
    base = dict(outer_optimizer="adamw", outer_lr=3e-3, outer_lr_final=1e-3, outer_lr_schedule="warmup_cosine",
                outer_warmup_steps=10)
    short = outer_learning_rate(TrainConfig(**base, outer_steps=110))
    longer = outer_learning_rate(TrainConfig(**base, outer_steps=400, outer_decay_steps=110))
    for step in (0, 5, 10, 50, 109, 110):
        np.testing.assert_allclose(float(longer(step)), float(short(step)), rtol=1e-6)
    for step in (111, 250, 400):
        np.testing.assert_allclose(float(longer(step)), 1e-3, rtol=1e-6)
    with pytest.raises(ValueError, match="outer_decay_steps"):
        TrainConfig(outer_decay_steps=0)


def test_adamw_outer_optimizer_decays_weights():
    cfg = TrainConfig(outer_optimizer="adamw", outer_lr=0.1, outer_weight_decay=0.5, grad_clip=0.0)
    opt = make_outer_optimizer(cfg)
    params = {"a": jnp.full((2,), 2.0)}
    upd, _ = opt.update({"a": jnp.zeros(2)}, opt.init(params), params)
    ref = optax.adamw(0.1, weight_decay=0.5)
    ref_upd, _ = ref.update({"a": jnp.zeros(2)}, ref.init(params), params)
    np.testing.assert_allclose(np.asarray(upd["a"]), np.asarray(ref_upd["a"]))
    np.testing.assert_allclose(np.asarray(upd["a"]), -0.1 * 0.5 * 2.0, rtol=1e-6)


@pytest.mark.parametrize("key,value,match", [("outer_optimizer", "lion", "outer_optimizer"),
                                             ("outer_lr_schedule", "linear", "outer_lr_schedule"),
                                             ("outer_warmup_steps", -1, "outer_warmup_steps")])
def test_bad_outer_settings_name_the_key(key, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{key: value})


# ------------------------------------------------------------------------ estimator strategies
def test_a_new_estimator_is_one_strategy_class():
    """A user-defined strategy (VeLO-style sign of the antithetic difference) plugs in without
    touching the estimator; one that re-implements ES reproduces the built-in ES exactly."""
    from outer_train.estimators import STRATEGIES, Strategy

    class MyES(Strategy):
        def combine(self, c):
            return c.eps * ((c.values[:, 0] - c.values[:, 1]) / (2 * c.sigma ** 2))[:, None], c.accum, {}

    class SignES(Strategy):
        def combine(self, c):
            return c.eps * jnp.sign(c.values[:, 0] - c.values[:, 1])[:, None] / c.sigma, c.accum, {}

    lopt = get_optimizer("sgd", learning_rate=0.05)
    prob = InnerProblem(FixedTaskFamily(_Quadratic()), lopt, ConstantSchedule(8), normalizer="none")
    theta = lopt.init(jax.random.PRNGKey(0))
    keys = (jax.random.PRNGKey(2), jax.random.PRNGKey(3))

    def grad_of(kind):
        est = make_estimator(kind, prob, num_tasks=3, unroll_length=4, sigma=0.01)
        state = est.init(jax.random.PRNGKey(1), theta)
        return est, jax.tree_util.tree_leaves(est.estimate(theta, state, *keys)[0])[0]

    _, ref = grad_of("es")
    est, mine = grad_of(MyES("my_es", perturb="antithetic"))
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(ref))
    assert est.antithetic and not est.differentiates and est.state_branches == 1
    est_s, sign = grad_of(SignES("sign_es", perturb="antithetic"))
    eps = est_s.perturbations(keys[0], theta)
    assert np.all(np.abs(np.asarray(sign)) <= np.max(np.abs(np.asarray(eps))) / 0.01 + 1e-6)
    assert "my_es" not in STRATEGIES  # nothing global was mutated
    with pytest.raises(ValueError, match="unknown estimator"):
        make_estimator("ess", prob)


# ------------------------------------------------------------------------ init_theta (fine-tuning)
def test_init_theta_starts_the_run_from_a_saved_theta(tmp_path):
    from learned_opt.checkpoint import save
    from outer_train.build import build_estimator, build_lopt
    from outer_train.trainer import init_state

    cfg = TrainConfig(task="quadratic", optimizer="scheduled_adam", estimator="pes", num_tasks=2,
                      unroll_length=2, trunc_length=6, outer_steps=1, progress=False, tensorboard=False,
                      optimizer_kwargs={"learning_rate": 0.01})
    lopt = build_lopt(cfg)
    fresh = lopt.init(jax.random.PRNGKey(0))
    saved = {k: v + 0.25 for k, v in fresh.items()}
    path = save(tmp_path / "start.lopt", lopt, saved)
    est = build_estimator(cfg, lopt)
    state = init_state(cfg.replace(init_theta=str(path)), lopt, est, make_outer_optimizer(cfg))
    for k in saved:
        np.testing.assert_array_equal(np.asarray(state.theta[k]), np.asarray(saved[k]))
    plain = init_state(cfg, lopt, est, make_outer_optimizer(cfg))
    assert any(not np.array_equal(np.asarray(plain.theta[k]), np.asarray(saved[k])) for k in saved)
    # another optimizer configuration (θ means something else) and a missing file are clear errors
    other = build_lopt(cfg.replace(optimizer_kwargs={"learning_rate": 0.003}))
    with pytest.raises(ValueError, match="init_theta"):
        init_state(cfg.replace(init_theta=str(path)), other, build_estimator(cfg, other), make_outer_optimizer(cfg))
    with pytest.raises(FileNotFoundError, match="init_theta"):
        init_state(cfg.replace(init_theta=str(tmp_path / "missing.lopt")), lopt, est, make_outer_optimizer(cfg))
    with pytest.raises(TypeError, match="init_theta"):
        TrainConfig(init_theta=3)
