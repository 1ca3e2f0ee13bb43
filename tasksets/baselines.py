"""The baseline sweep that defines a task's normalization statistics.

``compute_norm_stats(cfg, num_steps=T)`` measures

* ``loss_init`` -- the evaluation loss at initialization, averaged over the init seeds;
* ``loss_best`` -- the lowest seed-averaged evaluation loss reached within ``T`` steps by
  Adam at any of the swept learning rates (checked every ``T / num_eval_points`` steps), and, on
  full-batch tasks, by L-BFGS-B run for at most ``T`` iterations on the exact objective.

The evaluation loss is :meth:`tasks.Task.eval_loss` (train-time noise off: the exact expected loss
of noisy problems, dropout off) on one fixed batch (the whole training split when the task is
full-batch or the split holds at most ``eval_examples`` examples, else a fixed random subset of
that size), so the initial and best losses are measured on the same objective.
The Adam runs go through the project's one inner loop (:func:`learned_opt.inner_loop.optax_scan`)
over the project's one learning-rate grid, ``vmap``-ed over the rates with the seed traced;
training batches are drawn inside the scan from the split's arrays, which are passed as arguments
(not baked into the program as constants).
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt.inner_loop import LEARNING_RATE_GRID, hand_designed, optax_scan, record_steps
from tasks.base import Task

#: Adam learning rates of the sweep: the project's one grid (10 half-decades from 1e-4).
DEFAULT_LEARNING_RATES: tuple[float, ...] = LEARNING_RATE_GRID
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
    """``params -> evaluation loss``: :meth:`tasks.Task.eval_loss` on ``eval_batch`` (train-time
    noise off: the exact expected loss of noisy problems, dropout off)."""
    return lambda params: task.eval_loss(params, eval_batch)


def _finite_min(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.min()) if x.size else float("nan")


def _adam_sweep(task: Task, *, num_steps: int, learning_rates: Sequence[float],
                seeds: Sequence[int], num_eval_points: int, eval_batch: Any) -> dict:
    """Adam for every (learning rate, seed) pair through the project's one inner loop
    (:func:`learned_opt.inner_loop.optax_scan`), ``vmap``-ed over the rates and called per seed;
    evaluation-loss curves ``[n_lr, n_seed, num_records]`` (index 0 = at initialization)."""
    every = max(1, math.ceil(num_steps / max(1, num_eval_points)))
    train = task.datasets.train if task.datasets is not None else None
    has_data = train is not None
    arrays = {k: np.asarray(v) for k, v in train.arrays.items()} if train is not None else None
    batch_size = train.batch_size if train is not None else 0
    n = next(iter(arrays.values())).shape[0] if arrays is not None else 0
    eval_loss = _eval_fn(task, eval_batch)

    def run_one(lr, seed, arrays):
        k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))

        def loss_fn(p, t):
            kb, kl = jax.random.split(jax.random.fold_in(k_run, t))
            batch = None
            if has_data:
                idx = jax.random.randint(kb, (batch_size,), 0, n)
                batch = {name: a[idx] for name, a in arrays.items()}
            return task.loss(p, kl, batch)

        opt = hand_designed(lr, 1.0, 0.0, num_steps)  # = optax.adam(lr)
        out = optax_scan(opt, loss_fn, task.init(k_init), jnp.arange(num_steps), num_steps=num_steps,
                         record_every=every, record=eval_loss)
        return out.records

    fn = jax.jit(jax.vmap(run_one, in_axes=(0, None, None)))
    lrs = jnp.asarray(learning_rates, jnp.float32)
    curves = np.stack([np.asarray(fn(lrs, np.uint32(seed), arrays), np.float64) for seed in seeds], axis=1)
    return {"curves": curves, "steps": [int(v) for v in record_steps(num_steps, every)]}


def _lbfgs(task: Task, *, max_iter: int, seed: int, eval_batch: Any) -> Optional[dict]:
    """L-BFGS-B on the exact (full-batch, noise-off) objective from ``init(seed)``, through
    ``learned_opt.minimize``."""
    from learned_opt import minimize

    params0 = jax.jit(task.init)(jax.random.split(jax.random.PRNGKey(seed))[0])
    fun = _eval_fn(task, eval_batch)
    res = minimize(fun, params0, method="L-BFGS-B", options={"maxiter": int(max_iter)})
    loss = float(jax.jit(fun)(res.x))
    return {"loss": loss if math.isfinite(loss) else None, "nit": int(getattr(res, "nit", -1)),
            "source": "learned_opt.minimize"}


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
