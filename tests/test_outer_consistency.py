"""Estimators: one task run on its own (no task vmap) gives the same per-task meta-loss, gradient
and carried state as the same task inside the vmapped batch (issue 12).

The task has the parameter shapes that exposed compilation-dependent rounding in the
hierarchical optimizer: an all-equal matrix, a zero bias and a scalar gain. The per-task
references are computed from :meth:`InnerProblem.unroll_task` with the estimator's own keys and
weights, independently of the estimator's batched code path.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from learned_opt.registry import get_optimizer
from outer_train import ConstantSchedule, FixedTaskFamily, InnerProblem, make_estimator
from tasks.base import Task

NUM_TASKS, UNROLL = 2, 4


class _ConstantBlocks(Task):
    """``mean((tanh(x w + b) s - y)²)`` with ``w`` all-equal, ``b = 0``, ``s`` scalar at init
    (``y`` and the data ``x`` are drawn from the loss key; the initial key only sets ``s``)."""

    name = "constant_blocks"

    def init(self, key):
        return {"w": jnp.full((6, 4), 0.3), "b": jnp.zeros((4,)),
                "s": 1.5 + 0.5 * jax.random.uniform(key, ())}

    def loss(self, params, key, batch):
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (8, 6))
        y = 0.3 * jax.random.normal(ky, (8, 4))
        return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) * params["s"] - y) ** 2)


def _close(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    err = np.max(np.abs(a - b))
    assert err <= rtol * scale, f"{what}: differs by {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("kind,opt,eager", [pytest.param("tbptt", "hierarchical", True, marks=pytest.mark.slow),
                                            ("es", "hierarchical", False),
                                            ("tbptt", "mlp", False)])
def test_one_task_alone_equals_its_row_in_the_batch(kind, opt, eager):
    """``eager``: the single-task reference runs with ``jax.disable_jit()`` (scan as a Python loop),
    so it shares no compiled code with the batched, jitted estimator (with the pre-fix one-pass
    variance this case fails: ~4e-5 relative)."""
    lopt = get_optimizer(opt)
    prob = InnerProblem(FixedTaskFamily(_ConstantBlocks()), lopt, ConstantSchedule(10), normalizer="none")
    est = make_estimator(kind, prob, num_tasks=NUM_TASKS, unroll_length=UNROLL, sigma=0.01)
    theta = lopt.init(jax.random.PRNGKey(0))
    state = jax.jit(est.init)(jax.random.PRNGKey(1), theta)
    eps_key, task_key = jax.random.PRNGKey(2), jax.random.PRNGKey(3)
    grad, new_state, metrics = jax.jit(est.estimate)(theta, state, eps_key, task_key)

    flat, unravel = ravel_pytree(theta)
    _, k_unroll = jax.random.split(task_key)
    task_keys = jax.random.split(k_unroll, NUM_TASKS)
    eps = est.perturbations(eps_key, theta)

    def meta_value(flat_theta, ts_i, key_i):
        """V_i: the weighted meta-loss of one task, unrolled alone (branch axis of size 1)."""
        theta_b = jax.tree_util.tree_map(lambda x: x[None], unravel(flat_theta))
        final, out = prob.unroll_task(theta_b, ts_i, key_i, UNROLL)
        w = out.valid.astype(jnp.float32) / UNROLL
        return jnp.sum(w * out.meta[:, 0]), final

    maybe_jit = (lambda f: f) if eager else jax.jit
    value_and_grad = maybe_jit(jax.value_and_grad(meta_value, has_aux=True))
    value = maybe_jit(meta_value)
    per_task = []
    for i in range(NUM_TASKS):
        ts_i = jax.tree_util.tree_map(lambda x, i=i: x[i], state.tasks)
        if kind == "tbptt":
            with jax.disable_jit(eager):
                (_, final), g_i = value_and_grad(flat, ts_i, task_keys[i])
            carried = final
        else:
            v_plus, final = value(flat + eps[i], ts_i, task_keys[i])
            v_minus, _ = value(flat - eps[i], ts_i, task_keys[i])
            g_i = eps[i] * (v_plus - v_minus) / (2 * est.sigma ** 2)
            carried = final  # ES carries the + branch
        per_task.append(g_i)
        # the carried inner state of task i equals row i of the batched state
        for name in ("w", "b", "s"):
            _close(new_state.tasks.params[name][i], carried.params[name], 1e-5, f"{kind}/{opt} task {i} params {name}")
    assert int(metrics["num_nonfinite"]) == 0
    reference = np.mean(np.stack([np.asarray(g) for g in per_task]), axis=0)
    assert np.max(np.abs(reference)) > 0  # a non-trivial meta-gradient
    # ES divides the difference of two nearly equal meta-losses by 2σ², which turns their 1e-7
    # float32 rounding into ~1e-5 of the estimate: a correspondingly looser tolerance there
    _close(ravel_pytree(grad)[0], reference, 1e-4 if kind == "es" else 1e-5, f"{kind}/{opt} meta-gradient")
