"""Helpers for the learned-optimizer tests: a small nonlinear problem and an update loop."""
from __future__ import annotations

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


def run_updates(opt, params, loss, steps=15, jit=True):
    """``steps`` updates of ``opt`` on ``loss`` from ``params`` (loss passed as extra arg); the updates."""
    state = opt.init(params)
    upd = jax.jit(opt.update) if jit else opt.update
    out = []
    for _ in range(steps):
        l, g = jax.value_and_grad(loss)(params)
        u, state = upd(g, state, params, loss=l)
        out.append(u)
        params = optax.apply_updates(params, u)
    return out
