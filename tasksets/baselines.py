"""The baseline sweep that defines a task's normalization statistics.

``compute_norm_stats(cfg, num_steps=T)`` measures

* ``loss_init`` -- the evaluation loss at initialization, averaged over the init seeds;
* ``loss_best`` -- the lowest seed-averaged evaluation loss reached within ``T`` steps by
  Adam at any of the swept learning rates (checked every ``T / num_eval_points`` steps), and, on
  full-batch tasks, by L-BFGS-B run for at most ``T`` iterations on the exact objective.

The evaluation loss is the task loss on one fixed batch (the whole training split when the task is
full-batch or the split holds at most ``eval_examples`` examples, else a fixed random subset of
that size) with a fixed key -- or the task's exact ``expected_loss(params)`` when it has one
(noisy problems) -- so the initial and best losses are measured on the same objective.
The Adam run is one ``jit``-compiled ``lax.scan`` with the learning rate and the seed as traced
arguments, compiled once and called for every (learning rate, seed) pair; training batches are
drawn inside the scan from the split's arrays, which are passed as arguments (not baked into the
program as constants).
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasks.base import Task

#: Adam learning rates of the sweep: 8 rates, half-decade steps from 1e-4 to ~0.3.
DEFAULT_LEARNING_RATES: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1)


def _eval_batch(task: Task, eval_examples: int) -> Any:
    """The fixed evaluation batch (``None`` for data-free tasks)."""
    if task.datasets is None:
        return None
    split = task.datasets.train
    if task.full_batch or split.num_examples <= eval_examples:
        return {k: np.asarray(v) for k, v in split.full().items()}
    idx = np.sort(np.random.default_rng(12345).permutation(split.num_examples)[:eval_examples])
    return {k: np.asarray(v)[idx] for k, v in split.arrays.items()}


def _eval_fn(task: Task, eval_batch: Any):
    """``params -> evaluation loss``: the task's exact ``expected_loss`` when it defines one
    (noisy synthetic problems), else its loss on ``eval_batch`` with a fixed key."""
    expected = getattr(task, "expected_loss", None)
    if callable(expected):
        return expected
    eval_key = jax.random.PRNGKey(2**31 - 1)

    def eval_loss(params):
        return task.loss(params, eval_key, eval_batch)

    return eval_loss


def _finite_min(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.min()) if x.size else float("nan")


def _adam_sweep(task: Task, *, num_steps: int, learning_rates: Sequence[float],
                seeds: Sequence[int], num_eval_points: int, eval_batch: Any) -> dict:
    """Run Adam for every (learning rate, seed) pair; evaluation-loss curves of shape
    ``[n_lr, n_seed, num_chunks + 1]`` (index 0 = at initialization) and the step of each point."""
    chunk = max(1, math.ceil(num_steps / max(1, num_eval_points)))
    num_chunks = math.ceil(num_steps / chunk)
    has_data = task.datasets is not None
    train_arrays = ({k: np.asarray(v) for k, v in task.datasets.train.arrays.items()}
                    if has_data else None)
    batch_size = task.datasets.train.batch_size if has_data else 0
    eval_loss = _eval_fn(task, eval_batch)

    def run_one(lr, seed, arrays):
        k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
        params = task.init(k_init)
        opt = optax.adam(lr)
        opt_state = opt.init(params)

        def step(carry, t):
            p, s, k = carry
            k, kb, kl = jax.random.split(k, 3)
            if has_data:
                n = next(iter(arrays.values())).shape[0]
                idx = jax.random.randint(kb, (batch_size,), 0, n)
                batch = {name: a[idx] for name, a in arrays.items()}
            else:
                batch = None
            grads = jax.grad(task.loss)(p, kl, batch)
            updates, s_new = opt.update(grads, s, p)
            p_new = optax.apply_updates(p, updates)
            live = t < num_steps  # padding steps of the last chunk leave the state unchanged
            p = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), p_new, p)
            s = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), s_new, s)
            return (p, s, k), None

        def run_chunk(carry, c):
            ts = c * chunk + jnp.arange(chunk)
            carry, _ = jax.lax.scan(step, carry, ts)
            return carry, eval_loss(carry[0])

        l0 = eval_loss(params)
        _, curve = jax.lax.scan(run_chunk, (params, opt_state, k_run), jnp.arange(num_chunks))
        return jnp.concatenate([l0[None], curve])

    # One program compiled once and called per (learning rate, seed): on CPU, XLA compiles the
    # vmapped sweep about twice as slowly as a single run, which dominates for small tasks.
    fn = jax.jit(run_one)
    curves = np.asarray([[fn(np.float32(lr), np.uint32(seed), train_arrays)
                          for seed in seeds] for lr in learning_rates], dtype=np.float64)
    steps = [min(num_steps, c * chunk) for c in range(num_chunks + 1)]
    return {"curves": curves, "steps": steps}


def _lbfgs(task: Task, *, max_iter: int, seed: int, eval_batch: Any) -> Optional[dict]:
    """L-BFGS-B on the exact (full-batch, fixed-key) objective from ``init(seed)``.

    Goes through ``learned_opt.minimize(..., method="L-BFGS-B")`` when that exists; otherwise
    runs ``scipy.optimize.minimize`` directly on the raveled parameters (float64 on the scipy side).
    """
    k_init, _ = jax.random.split(jax.random.PRNGKey(seed))
    params0 = task.init(k_init)
    fun = _eval_fn(task, eval_batch)

    value = jax.jit(fun)
    value_and_grad = jax.jit(jax.value_and_grad(fun))
    source = "learned_opt.minimize"
    try:
        from learned_opt import minimize  # noqa: WPS433 (optional: written in parallel)
        res = minimize(fun, params0, method="L-BFGS-B", options={"maxiter": int(max_iter)})
        x, nit = res.x, int(getattr(res, "nit", -1))
    except (ImportError, AttributeError, ModuleNotFoundError):
        import scipy.optimize
        from jax.flatten_util import ravel_pytree
        source = "scipy.optimize.minimize"
        flat0, unravel = ravel_pytree(params0)
        dtype = flat0.dtype

        def f64(z):
            v, g = value_and_grad(unravel(jnp.asarray(z, dtype)))
            g = np.asarray(ravel_pytree(g)[0], dtype=np.float64)
            v = float(v)
            if not math.isfinite(v):  # let the line search back off
                return float("inf"), np.zeros_like(g)
            return v, g

        r = scipy.optimize.minimize(f64, np.asarray(flat0, np.float64), jac=True,
                                    method="L-BFGS-B", options={"maxiter": int(max_iter)})
        x, nit = unravel(jnp.asarray(r.x, dtype)), int(r.nit)
    loss = float(value(x))
    return {"loss": loss if math.isfinite(loss) else None, "nit": nit, "source": source}


def compute_norm_stats(cfg_or_task: Any, *, num_steps: int,
                       learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
                       seeds: Sequence[int] = DEFAULT_SEEDS, num_eval_points: int = 20,
                       eval_examples: int = 512, lbfgs: Optional[bool] = None) -> dict:
    """Normalization statistics of one task from this project's own baseline sweep.

    ``cfg_or_task``: a cfg dict (built with :func:`tasksets.build_task`) or a ``Task``.
    ``lbfgs``: run L-BFGS-B too (default: exactly when the task is full-batch).
    Returns a JSON-serializable dict with ``loss_init``, ``loss_best``, ``best_method`` and the
    per-learning-rate details; ``"task_id"`` and ``"family"`` when a cfg was given.
    """
    from tasksets.build import build_task  # local: build imports the task modules
    from tasksets.ids import task_id

    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    learning_rates = [float(lr) for lr in learning_rates]
    if len(learning_rates) < 1 or any(not (lr > 0 and math.isfinite(lr)) for lr in learning_rates):
        raise ValueError(f"learning_rates must be positive finite floats, got {learning_rates}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")

    t0 = time.perf_counter()
    cfg = dict(cfg_or_task) if isinstance(cfg_or_task, dict) else None
    task = build_task(cfg) if cfg is not None else cfg_or_task
    if not isinstance(task, Task):
        raise TypeError(f"expected a cfg dict or a tasks.Task, got {type(cfg_or_task).__name__}")
    eval_batch = _eval_batch(task, eval_examples)
    sweep = _adam_sweep(task, num_steps=int(num_steps), learning_rates=learning_rates, seeds=seeds,
                        num_eval_points=num_eval_points, eval_batch=eval_batch)
    curves = sweep["curves"]  # [lr, seed, point]
    init_losses = curves[0, :, 0]  # identical across learning rates
    loss_init = float(np.mean(init_losses))
    mean_curves = curves.mean(axis=1)  # seed-averaged; a NaN in any seed poisons the point
    best_per_lr = [_finite_min(mean_curves[i, 1:]) for i in range(len(learning_rates))]
    final_per_lr = [float(mean_curves[i, -1]) for i in range(len(learning_rates))]
    finite = [(v, i) for i, v in enumerate(best_per_lr) if math.isfinite(v)]
    adam_best, best_i = min(finite) if finite else (float("nan"), -1)

    use_lbfgs = task.full_batch if lbfgs is None else bool(lbfgs)
    lbfgs_res = _lbfgs(task, max_iter=int(num_steps), seed=seeds[0], eval_batch=eval_batch) \
        if use_lbfgs else None

    candidates = []
    if math.isfinite(adam_best):
        candidates.append((adam_best, f"adam(lr={learning_rates[best_i]:g})"))
    if lbfgs_res is not None and lbfgs_res["loss"] is not None:
        candidates.append((lbfgs_res["loss"], "lbfgs"))
    if not candidates:
        raise RuntimeError(f"every baseline run diverged on {getattr(task, 'name', task)!r}")
    loss_best, best_method = min(candidates)

    def clean(v):
        return float(v) if math.isfinite(v) else None

    out = {
        "loss_init": loss_init,
        "loss_best": float(loss_best),
        "best_method": best_method,
        "num_steps": int(num_steps),
        "seeds": seeds,
        "adam": {
            "learning_rates": learning_rates,
            "best_loss_per_lr": [clean(v) for v in best_per_lr],
            "final_loss_per_lr": [clean(v) for v in final_per_lr],
            "best_lr": learning_rates[best_i] if best_i >= 0 else None,
            "eval_steps": sweep["steps"],
        },
        "lbfgs": lbfgs_res,
        "init_loss_per_seed": [float(v) for v in init_losses],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if cfg is not None:
        out["task_id"] = task_id(cfg)
        out["family"] = cfg.get("family")
    return out
