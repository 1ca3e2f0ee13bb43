"""Remat policies of backprop through unrolls (issue 15): every policy gives the gradient of the
default to float tolerance, and the vectorized estimator (single-branch path without a branch
axis, remat, batch-level reset ``cond``) equals ``jax.grad`` of each task unrolled alone.

The truncation (3 updates) is shorter than the unroll (7 steps), so every unroll crosses resets:
the reset ``lax.cond`` runs inside the rematerialized scan body.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from learned_opt.registry import get_optimizer
from outer_train import ConstantSchedule, InnerProblem, make_estimator
from outer_train.build import build_estimator, build_lopt
from outer_train.config import TrainConfig
from outer_train.estimators import REMAT_CHOICES, GradientEstimator
from outer_train.unroll import REMAT_POLICIES
from tasks.base import Task
from tasks.families import QuadraticFamily

NUM_TASKS, UNROLL, TRUNC = 3, 7, 3


class _TanhRegression(Task):
    """``mean((tanh(x w + b) s - y)²)``: data from the loss key, ``w`` from the init key."""

    name = "tanh_regression"

    def init(self, key):
        return {"w": 0.5 * jax.random.normal(key, (5, 3)), "b": jnp.zeros((3,)), "s": jnp.ones(())}

    def loss(self, params, key, batch):
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (8, 5))
        y = 0.3 * jax.random.normal(ky, (8, 3))
        return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) * params["s"] - y) ** 2)


class _Family:
    """A task family whose members differ only in their initial parameters (through the key)."""

    def sample(self, key):
        return {"seed": jax.random.randint(key, (), 0, 1000)}

    def task_fn(self, cfg):
        return _TanhRegression()


def _close(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    err = np.max(np.abs(a - b))
    assert scale > 0, f"{what}: the reference is all zero"
    assert err <= rtol * scale, f"{what}: differs by {err:.3g} (scale {scale:.3g})"


def _problem(opt="mlp"):
    lopt = get_optimizer(opt)
    return lopt, InnerProblem(_Family(), lopt, ConstantSchedule(TRUNC), normalizer="none")


def _estimate(est, theta, seed=1):
    state = jax.jit(est.init)(jax.random.PRNGKey(seed), theta)
    grad, _, metrics = jax.jit(est.estimate)(theta, state, jax.random.PRNGKey(seed + 1),
                                             jax.random.PRNGKey(seed + 2))
    assert int(metrics["num_nonfinite"]) == 0
    return ravel_pytree(grad)[0], metrics, state


# tbptt stays in the default suite; the other two estimators (~50 s each on 2 cores) run in the slow stage.
@pytest.mark.parametrize("kind", ["tbptt", pytest.param("full_grad", marks=pytest.mark.slow),
                                  pytest.param("hybrid", marks=pytest.mark.slow)])
def test_every_remat_policy_gives_the_same_gradient(kind):
    lopt, prob = _problem()
    theta = lopt.init(jax.random.PRNGKey(0))
    kw = dict(num_tasks=NUM_TASKS, unroll_length=UNROLL, sigma=0.01)
    ref, ref_metrics, _ = _estimate(make_estimator(kind, prob, remat="none", **kw), theta)
    assert float(ref_metrics["frac_reset"]) > 0 or kind == "full_grad"  # the unroll crosses resets
    for policy in REMAT_CHOICES:
        if policy == "none":
            continue
        g, metrics, _ = _estimate(make_estimator(kind, prob, remat=policy, **kw), theta)
        _close(g, ref, 1e-5, f"{kind} remat={policy} vs none")
        _close(metrics["meta_loss"], ref_metrics["meta_loss"], 1e-6, f"{kind} remat={policy} meta_loss")


@pytest.mark.parametrize("policy", REMAT_POLICIES)
def test_tbptt_equals_grad_of_each_task_unrolled_alone(policy):
    """Reference: per task, ``jax.grad`` of its weighted meta-loss through
    :meth:`InnerProblem.unroll_task` (branch axis of size 1 kept, per-task reset ``cond``, no
    remat) with the estimator's keys; the estimate is their mean."""
    lopt, prob = _problem()
    theta = lopt.init(jax.random.PRNGKey(0))
    est = make_estimator("tbptt", prob, num_tasks=NUM_TASKS, unroll_length=UNROLL, remat=policy)
    grad, metrics, state = _estimate(est, theta)
    assert float(metrics["frac_reset"]) > 0

    flat, unravel = ravel_pytree(theta)
    _, k_unroll = jax.random.split(jax.random.PRNGKey(3))
    task_keys = jax.random.split(k_unroll, NUM_TASKS)

    @jax.jit
    def grad_i(flat_theta, ts_i, key_i):
        def value(f):
            theta_b = jax.tree_util.tree_map(lambda x: x[None], unravel(f))
            _, out = prob.unroll_task(theta_b, ts_i, key_i, UNROLL)
            return jnp.sum(out.valid.astype(jnp.float32) / UNROLL * out.meta[:, 0])
        return jax.grad(value)(flat_theta)

    per_task = [grad_i(flat, jax.tree_util.tree_map(lambda x, i=i: x[i], state.tasks), task_keys[i])
                for i in range(NUM_TASKS)]
    _close(grad, np.mean(np.stack([np.asarray(g) for g in per_task]), axis=0), 1e-5,
           f"tbptt remat={policy} vs per-task jax.grad")


def test_single_branch_carried_state_keeps_its_branch_axis():
    """The single-branch unroll drops the branch axis internally; the carried state has it again
    and matches the unroll of the same tasks with the branch axis kept (two identical branches)."""
    lopt, prob = _problem()
    theta = lopt.init(jax.random.PRNGKey(0))
    ts1 = prob.init_tasks(jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (NUM_TASKS, 1) + x.shape), theta),
                          jax.random.PRNGKey(4))
    ts2 = ts1._replace(**{f: jax.tree_util.tree_map(lambda x: jnp.repeat(x, 2, axis=1), getattr(ts1, f))
                          for f in ("params", "opt_state", "model_state", "init_loss")})
    keys = prob.task_keys(jax.random.PRNGKey(5), NUM_TASKS, UNROLL)
    th = lambda b: jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (NUM_TASKS, b) + x.shape), theta)  # noqa: E731
    final1, out1 = jax.jit(prob.unroll_keys)(th(1), ts1, keys)
    final2, out2 = jax.jit(prob.unroll_keys)(th(2), ts2, keys)
    assert jax.tree_util.tree_structure(final1) == jax.tree_util.tree_structure(ts1)
    for a, b in zip(jax.tree_util.tree_leaves(final1), jax.tree_util.tree_leaves(ts1)):
        assert a.shape == b.shape
    assert out1.meta.shape == (NUM_TASKS, UNROLL, 1)
    _close(out1.meta[..., 0], out2.meta[..., 1], 1e-6, "meta, branch axis dropped vs kept")
    for a, b in zip(jax.tree_util.tree_leaves(final1.params), jax.tree_util.tree_leaves(final2.params)):
        _close(a[:, 0], b[:, 1], 1e-6, "carried params")


def test_full_remat_stores_less_than_none():
    """Machine-independent check that the policy reaches the compiled program: the backward pass
    of the ``"full"`` policy needs less temporary memory than storing every residual."""
    lopt, prob = _problem()
    theta = lopt.init(jax.random.PRNGKey(0))
    temp = {}
    for policy in ("none", "full"):
        est = make_estimator("tbptt", prob, num_tasks=NUM_TASKS, unroll_length=UNROLL, remat=policy)
        state = est.init(jax.random.PRNGKey(1), theta)
        compiled = jax.jit(est.estimate).lower(theta, state, jax.random.PRNGKey(2), jax.random.PRNGKey(3)).compile()
        memory = compiled.memory_analysis()
        assert memory is not None
        temp[policy] = memory.temp_size_in_bytes
    assert temp["full"] < temp["none"], temp


def test_remat_policy_resolution_and_errors():
    _, prob = _problem()
    assert make_estimator("tbptt", prob).remat_policy == "full"
    assert make_estimator("full_grad", prob).remat_policy == "full"
    assert make_estimator("tbptt", prob, remat="dots").remat_policy == "dots"
    assert make_estimator("pes", prob, remat="dots").remat_policy == "none"  # nothing is differentiated
    with pytest.raises(ValueError, match="remat must be one of"):
        GradientEstimator("tbptt", prob, remat="everything")
    with pytest.raises(ValueError, match="remat must be one of"):
        GradientEstimator("tbptt", prob, remat=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        prob.unroll_keys(None, None, jnp.zeros((1, 1, 2), jnp.uint32), checkpoint="sometimes")  # type: ignore[arg-type]


def test_config_remat_key():
    config = TrainConfig(task="quadratic", task_kwargs={"dim": 4}, estimator="tbptt", remat="none")
    est = build_estimator(config, build_lopt(config), QuadraticFamily(dim=4))
    assert isinstance(est, GradientEstimator) and est.remat == "none"
    assert TrainConfig().remat == "auto"
    assert TrainConfig.from_dict({**config.to_dict(), "remat": "dots"}).remat == "dots"
    with pytest.raises(ValueError, match="'remat'"):
        TrainConfig(remat="sometimes")
    with pytest.raises(ValueError, match="'remat'"):
        dataclasses.replace(config, remat="none ")
