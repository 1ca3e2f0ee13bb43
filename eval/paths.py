"""Optimizer paths on 2-D test functions, every method through ``learned_opt.minimize``.

For a 2-D task (``tasks.Function2DTask``: parameters ``{"xy": f[2]}``) the path of a method is its
sequence of iterates ``x_0, x_1, …`` as seen by ``minimize``'s per-iteration callback: Adam at
several learning rates, L-BFGS-B, and every evaluated first-order method without a sweep
(learned optimizers, fixed optax transforms).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import optax

from eval.methods import FirstOrderMethod

PATH_ADAM_RATES = (0.01, 0.1, 0.5)


def _xy(params: Any) -> list:
    leaves = [np.asarray(v, np.float64).reshape(-1) for v in _leaves(params)]
    return [float(v) for v in np.concatenate(leaves)]


def _leaves(params: Any) -> list:
    if isinstance(params, dict):
        out = []
        for v in params.values():
            out.extend(_leaves(v))
        return out
    return [params]


def minimize_path(task: Any, method: Any, num_steps: int, x0: Any, options: dict | None = None) -> dict:
    """Run ``learned_opt.minimize(task.loss, x0, method=method)`` and collect every iterate."""
    from learned_opt import minimize

    pts = [_xy(x0)]

    def fun(p):
        return task.loss(p, None, None)

    def callback(x):
        pts.append(_xy(x))
        return False

    opts = {"maxiter": int(num_steps)}
    if options:
        opts.update(options)
    res = minimize(fun, x0, method=method, callback=callback, options=opts)
    return {"xy": pts, "final_loss": float(res.fun), "nfev": int(getattr(res, "nfev", 0) or 0),
            "nit": int(getattr(res, "nit", 0) or 0), "success": bool(res.success)}


def compute_paths(task: Any, methods: Sequence[Any], num_steps: int, seed: int = 0,
                  adam_rates: Sequence[float] = PATH_ADAM_RATES) -> dict:
    """Paths of Adam (several rates), L-BFGS-B and the evaluated sweep-free first-order methods."""
    from eval.runner import init_params

    x0 = init_params(task, seed)
    paths = {}
    for lr in adam_rates:
        paths[f"adam lr={lr:g}"] = minimize_path(task, optax.adam(lr), num_steps, x0)
    paths["L-BFGS-B"] = minimize_path(task, "L-BFGS-B", num_steps, x0, {"maxfun": int(num_steps)})
    for m in methods:
        if isinstance(m, FirstOrderMethod) and not m.is_sweep:
            opt = m.make(dict(m.grid[0]), int(num_steps))
            paths[m.name] = minimize_path(task, opt, num_steps, x0)
    out = {"start": _xy(x0), "paths": paths}
    for attr in ("x_range", "y_range"):
        if hasattr(task, attr):
            out[attr] = [float(v) for v in getattr(task, attr)]
    if hasattr(task, "minimizers"):
        out["minimizers"] = [[float(a), float(b)] for a, b in task.minimizers]
    return out
