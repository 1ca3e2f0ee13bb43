"""Helpers for the learned-optimizer tests: a small nonlinear problem, an update loop and the
warm-start checks (a grown θ reproduces its source's updates; its new block moves them)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax


def toy_problem(seed=0):
    """Parameters ``{w (7, 5), b (5,), s ()}`` and the loss ``mean((tanh(x w + b) s - 0.5)²)``."""
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.standard_normal((7, 5)), jnp.float32), "b": jnp.zeros(5),
              "s": jnp.asarray(2.0)}
    x = jnp.asarray(rng.standard_normal((16, 7)), jnp.float32)

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p["w"] + p["b"]) * p["s"] - 0.5) ** 2)

    return params, loss


def run_trace(opt, params, loss, steps=15, jit=True):
    """``steps`` updates of ``opt`` on ``loss`` from ``params`` (loss passed as extra arg); per step
    ``(loss, update, params after it, state after it)``."""
    state = opt.init(params)
    upd = jax.jit(opt.update) if jit else opt.update
    out = []
    for _ in range(steps):
        l, g = jax.value_and_grad(loss)(params)
        u, state = upd(g, state, params, loss=l)
        params = optax.apply_updates(params, u)
        out.append((float(l), u, params, state))
    return out


def run_updates(opt, params, loss, steps=15, jit=True):
    """``steps`` updates of ``opt`` on ``loss`` from ``params`` (loss passed as extra arg); the updates."""
    return [u for _, u, _, _ in run_trace(opt, params, loss, steps, jit)]


def random_theta(lopt, seed, scale=0.3):
    """A trained-like θ: every entry (including the zero-initialized blocks) random."""
    theta = lopt.init(jax.random.PRNGKey(seed))
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(theta))
    return {k: scale * jax.random.normal(kk, v.shape) for (k, v), kk in zip(sorted(theta.items()), keys)}


def check_warm_start(lopt, theta, grown_lopt, grown, changed, rtol, atol):
    """``grown_lopt`` at ``grown`` is ``lopt`` with ``changed`` set, has its θ shapes, and makes
    ``lopt``'s updates at ``theta`` over 15 steps; returns ``(reference updates, problem)``."""
    assert grown_lopt == dataclasses.replace(lopt, **changed)
    shapes = jax.tree_util.tree_map(jnp.shape, grown_lopt.init(jax.random.PRNGKey(0)))
    assert jax.tree_util.tree_map(jnp.shape, grown) == shapes
    params, loss = toy_problem()
    ref = run_updates(lopt.opt_fn(theta, num_steps=15), params, loss)
    out = run_updates(grown_lopt.opt_fn(grown, num_steps=15), params, loss)
    for a, b in zip(ref, out):
        for k in a:
            np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=rtol, atol=atol)
    return ref, (params, loss)


def moves_updates(lopt, theta, ref, problem) -> bool:
    """Whether ``lopt`` at ``theta`` makes updates of ``w`` differing from ``ref`` by more than 1e-6."""
    moved = run_updates(lopt.opt_fn(theta, num_steps=15), *problem)
    return max(float(jnp.max(jnp.abs(m["w"] - r["w"]))) for m, r in zip(moved, ref)) > 1e-6
