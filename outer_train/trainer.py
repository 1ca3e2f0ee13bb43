"""The outer-training loop: ``train(config) -> TrainResult``.

Each outer step is one jitted pure function of the whole :class:`TrainState`::

    g, est_state, m = estimator(θ, est_state, fold_in(key, step))
    ok = all(isfinite(g)) and isfinite(m["meta_loss"])
    θ, opt_state = outer_opt.update(g, ...)   if ok   else unchanged;   dropped += not ok

with ``outer_opt = clip_by_global_norm(grad_clip) ∘ adam(outer_lr)`` by default. The estimator
state always advances (so a diverged inner problem is reset rather than retried forever).

Every ``checkpoint_every`` steps (and at the end / when the time budget runs out) the full state
is written atomically to ``<out>/resume.npz`` (see :mod:`outer_train.checkpointing`) and θ to
``<out>/theta_<step:08d>.lopt`` (``learned_opt.save``; ``learned_opt.load(out)`` reads the newest),
and with ``theta_average`` β > 0 the moving average θ̄ to ``<out>/theta_average_<step:08d>.lopt``.
The run directory is locked for the whole run (:mod:`outer_train.run_lock`: a second process
training into it fails with a one-line error naming the holder's pid). The previous resume
checkpoint is kept as ``resume.prev.npz``; a damaged newest one is skipped with a warning.
``resume=True`` restores the state, truncates ``metrics.jsonl`` to it and continues: since the
step's key is ``fold_in(key, step)`` and everything else is in the state, the resumed run is
bit-identical to an uninterrupted one.

With more than one device (``config.devices``), the task axis of the estimator state is sharded
over a 1-D device mesh and θ is replicated (:mod:`outer_train.distributed`); in a multi-process
run only process 0 writes checkpoints, θ files and logs, and every process reads the checkpoint on
resume.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from outer_train import checkpointing
from outer_train.config import TrainConfig
from outer_train.metrics_log import MetricsLogger
from outer_train.run_lock import run_lock
from outer_train.theta_average import averaged_theta, theta_average


class TrainState(NamedTuple):
    """Everything needed to continue a run exactly."""

    theta: Any
    opt_state: Any
    est_state: Any
    step: jax.Array  # int32 outer steps done
    key: jax.Array  # base PRNG key; step s uses fold_in(key, s) (batches are drawn from it too)
    num_dropped: jax.Array  # int32 outer steps whose meta-gradient or meta-loss was NaN/inf


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns."""

    theta: Any
    lopt: Any
    step: int
    num_dropped: int
    history: list  # per-step metric dicts (this process's steps)
    out: str | None
    stopped: str  # "completed" or "time_budget"
    compile_seconds: float
    inner_steps_per_second: float
    num_devices: int = 1  # devices the task batch was sharded over (all processes)
    theta_average: Any = None  # θ̄, the bias-corrected EMA of θ (config key 'theta_average' > 0)


def outer_learning_rate(config: TrainConfig) -> float | optax.Schedule:
    """``outer_lr`` (constant) or, for ``outer_lr_schedule="warmup_cosine"``, a linear warmup
    from 0 over ``outer_warmup_steps`` followed by a cosine decay to ``outer_lr_final`` at
    ``outer_decay_steps`` (default ``outer_steps``) and constant ``outer_lr_final`` after it."""
    if config.outer_lr_schedule == "constant":
        return config.outer_lr
    final = config.outer_lr if config.outer_lr_final is None else config.outer_lr_final
    decay = config.outer_steps if config.outer_decay_steps is None else config.outer_decay_steps
    return optax.warmup_cosine_decay_schedule(0.0, config.outer_lr, config.outer_warmup_steps,
                                              max(decay, config.outer_warmup_steps + 1), end_value=final)


def make_outer_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip)`` (if > 0) followed by Adam, AdamW (decoupled weight decay
    ``outer_weight_decay``) or SGD at :func:`outer_learning_rate`; with ``theta_average`` β > 0,
    followed by :func:`outer_train.theta_average.theta_average` (updates unchanged; keeps θ̄)."""
    lr = outer_learning_rate(config)
    if config.outer_optimizer == "adam":
        base = optax.adam(lr)
    elif config.outer_optimizer == "adamw":
        base = optax.adamw(lr, weight_decay=config.outer_weight_decay)
    else:
        base = optax.sgd(lr)
    if config.grad_clip > 0:
        base = optax.chain(optax.clip_by_global_norm(config.grad_clip), base)
    if config.theta_average:
        # last in the chain: it records θ + (final update), the new θ
        return optax.chain(base, theta_average(config.theta_average))
    return base


def make_outer_step(estimator: Any, outer_opt: optax.GradientTransformation) -> Callable:
    """The pure outer step ``TrainState -> (TrainState, metrics)`` (jit it)."""

    def outer_step(state: TrainState):
        key = jax.random.fold_in(state.key, state.step)
        grad, est_state, metrics = estimator(state.theta, state.est_state, key)
        leaves = jax.tree_util.tree_leaves(grad)
        ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        ok = ok & jnp.isfinite(metrics["meta_loss"])
        safe_grad = jax.tree_util.tree_map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), grad)
        updates, opt_state = outer_opt.update(safe_grad, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        theta = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), theta, state.theta)
        opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), opt_state, state.opt_state)
        grad_norm = optax.tree.norm(grad)
        metrics = dict(metrics, grad_norm=grad_norm, applied=ok)
        new = TrainState(theta=theta, opt_state=opt_state, est_state=est_state, step=state.step + 1,
                         key=state.key, num_dropped=state.num_dropped + (~ok).astype(jnp.int32))
        return new, metrics

    return outer_step


def initial_theta_from(path: str, lopt: Any, fresh: Any) -> Any:
    """The θ of the checkpoint ``path`` as the starting point of a run of ``lopt`` (``fresh`` is
    ``lopt.init``'s θ, for the layout check). The checkpoint must have been saved for the same
    optimizer configuration — the same θ means something else under another one."""
    from learned_opt.checkpoint import load

    if not Path(path).is_file():
        raise FileNotFoundError(f"config key 'init_theta': no checkpoint file {path!r}")
    saved_lopt, theta = load(path)
    if saved_lopt.name != lopt.name or saved_lopt.config() != lopt.config():
        raise ValueError(f"config key 'init_theta': {path} was saved for {saved_lopt.name} "
                         f"{saved_lopt.config()}, but the run trains {lopt.name} {lopt.config()}")
    want = jax.tree_util.tree_map(jnp.shape, fresh)
    got = jax.tree_util.tree_map(jnp.shape, theta)
    if want != got:
        raise ValueError(f"config key 'init_theta': θ layout of {path} is {got}, the optimizer's is {want}")
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, jnp.asarray(b).dtype), theta, fresh)


def init_state(config: TrainConfig, lopt: Any, estimator: Any,
               outer_opt: optax.GradientTransformation,
               est_init: Callable[[jax.Array, Any], Any] | None = None) -> TrainState:
    """The step-0 state of a run (deterministic in ``config.seed``).

    ``est_init(key, theta)`` replaces ``jax.jit(estimator.init)`` (e.g. with sharded outputs).
    """
    k_theta, k_est, k_loop = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    theta = jax.tree_util.tree_map(jnp.asarray, lopt.init(k_theta))
    if config.init_theta is not None:
        theta = initial_theta_from(config.init_theta, lopt, theta)
    est_state = (jax.jit(estimator.init) if est_init is None else est_init)(k_est, theta)
    return TrainState(theta=theta, opt_state=outer_opt.init(theta), est_state=est_state,
                      step=jnp.zeros((), jnp.int32), key=k_loop, num_dropped=jnp.zeros((), jnp.int32))


class _Progress:
    """A tqdm bar over the outer steps or, when a ``time_budget`` is set, over the budget's seconds
    (whichever ends the run first is what the bar measures; the step count is in the postfix)."""

    def __init__(self, config: TrainConfig, initial: int):
        from tqdm import tqdm

        self.budget = None if config.time_budget is None else 60.0 * config.time_budget
        self.outer_steps = config.outer_steps
        total = self.outer_steps if self.budget is None else round(self.budget)
        self.bar = tqdm(total=total, initial=0 if self.budget else initial, desc=f"train {config.name}",
                        unit="step" if self.budget is None else "s", dynamic_ncols=True, file=sys.stderr,
                        leave=True)

    def update(self, step: int, elapsed: float, record: dict) -> None:
        if self.budget is None:
            self.bar.update(1)
        else:
            self.bar.n = min(round(elapsed), self.bar.total)
            self.bar.refresh()
        self.bar.set_postfix(step=f"{step}/{self.outer_steps}", meta_loss=f"{record['meta_loss']:.4f}",
                             steps_s=f"{record['inner_steps_per_s']:.0f}")

    def close(self) -> None:
        self.bar.close()


def _progress(config: TrainConfig, initial: int) -> _Progress | None:
    return _Progress(config, initial) if config.progress else None


def _save_theta(out: Path, step: int, lopt: Any, state: TrainState, config: TrainConfig) -> None:
    from learned_opt.checkpoint import AVERAGE_STEM, checkpoint_filename, save, save_step
    meta = {"outer_step": step, "config": config.to_dict()}
    save_step(out, step, lopt, jax.device_get(state.theta), metadata=meta)
    if config.theta_average and step > 0:
        theta_bar = jax.device_get(averaged_theta(state.opt_state, config.theta_average))
        save(out / checkpoint_filename(step, AVERAGE_STEM), lopt, theta_bar,
             metadata=dict(meta, theta_average=config.theta_average))


def train(config: TrainConfig, *, resume: bool = False, lopt: Any = None, estimator: Any = None,
          callback: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Meta-train according to ``config``; see the module docstring.

    ``lopt`` / ``estimator`` override the objects built from the config (for custom task families);
    ``callback(step, record)`` is called after every logged step. The run directory
    ``config.out`` is locked (:func:`outer_train.run_lock.run_lock`) from before anything is built
    until the function returns; in a multi-process run process 0 holds the lock.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    with contextlib.ExitStack() as stack:
        if config.out and jax.process_index() == 0:
            stack.enter_context(run_lock(config.out))
        return _train_locked(config, resume, lopt, estimator, callback)


def _train_locked(config: TrainConfig, resume: bool, lopt: Any, estimator: Any,
                  callback: Callable[[int, dict], None] | None) -> TrainResult:
    """:func:`train` once the run directory is locked."""
    from outer_train.build import build_estimator, build_lopt
    from outer_train.distributed import make_layout
    lopt = build_lopt(config) if lopt is None else lopt
    estimator = build_estimator(config, lopt) if estimator is None else estimator
    outer_opt = make_outer_optimizer(config)
    layout = make_layout(config.devices, estimator)  # None: one device, the plain path
    if layout is None:
        state = init_state(config, lopt, estimator, outer_opt)
    else:
        estimator = layout.shard_estimator(estimator)
        state = layout.put(init_state(config, lopt, estimator, outer_opt,
                                      est_init=layout.estimator_init(estimator)))
    writer = layout is None or layout.is_writer
    out = Path(config.out) if config.out else None
    if resume and out is None:
        raise ValueError("resume=True needs config.out (the run directory)")
    if layout is not None:
        layout.barrier("outer_train.start")  # nobody reads a checkpoint another process is writing
    resumed_from = None
    found = resume and out is not None and checkpointing.has_state(out)
    if layout is not None and resume and len(set(layout.flags(found))) > 1:
        raise ValueError(f"only some processes see a checkpoint in {out}: multi-process runs need the "
                         f"run directory on a filesystem shared by all hosts")
    if found:
        assert out is not None
        state, _ = checkpointing.load_state(out, state, warn=checkpointing.warn_stderr if writer else None)
        state = state if layout is None else layout.put(state)
        resumed_from = int(state.step)
    if layout is not None:
        layout.barrier("outer_train.resumed")
    if out is not None and writer:
        out.mkdir(parents=True, exist_ok=True)
        checkpointing.atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=1) + "\n")
    logger = MetricsLogger(out if writer else None, resume_step=resumed_from, tensorboard=config.tensorboard)
    step_fn = (jax.jit(make_outer_step(estimator, outer_opt)) if layout is None
               else layout.jit_step(make_outer_step(estimator, outer_opt), state))
    bar = _progress(config, int(state.step)) if writer else None
    history: list[dict] = []
    start_time = time.time()
    stopped = "completed"
    compile_seconds = math.nan
    total_inner, total_time = 0, 0.0
    last_saved = int(state.step)

    def checkpoint(s: TrainState) -> None:
        nonlocal last_saved
        if out is None:
            return
        step = int(s.step)
        host = s if layout is None else layout.gather(s)  # a collective across processes
        if writer:
            checkpointing.save_state(out, host, {"step": step, "config": config.to_dict()})
            _save_theta(out, step, lopt, host, config)
        if layout is not None:
            layout.barrier(f"outer_train.checkpoint.{step}")
        last_saved = step

    try:
        if out is not None and resumed_from is None:
            checkpoint(state)
        while int(state.step) < config.outer_steps:
            t0 = time.time()
            state, metrics = step_fn(state)
            metrics = jax.device_get(metrics)
            dt = time.time() - t0
            step = int(state.step)
            if math.isnan(compile_seconds):
                compile_seconds = dt
            else:
                total_inner += estimator.inner_steps
                total_time += dt
            record: dict[str, Any] = {"step": step}
            for k, v in metrics.items():
                record[k] = bool(v) if k == "applied" else float(v)
            record["num_dropped"] = int(state.num_dropped)
            record["inner_steps_per_s"] = estimator.inner_steps / dt if dt > 0 else math.inf
            record["seconds"] = round(time.time() - start_time, 4)
            logger.log(record)
            history.append(record)
            if callback is not None:
                callback(step, record)
            if bar is not None:
                bar.update(step, time.time() - start_time, record)
            if step % config.checkpoint_every == 0 or step == config.outer_steps:
                checkpoint(state)
            if config.time_budget is not None:
                over = time.time() - start_time > 60.0 * config.time_budget
                if over if layout is None else layout.agree(over):  # every process stops together
                    stopped = "time_budget"
                    break
        if int(state.step) != last_saved:
            checkpoint(state)
    finally:
        logger.close()
        if bar is not None:
            bar.close()
    theta_bar = None
    if config.theta_average and int(state.step) > 0:
        theta_bar = jax.device_get(averaged_theta(state.opt_state, config.theta_average))
    return TrainResult(theta=jax.device_get(state.theta), lopt=lopt, step=int(state.step),
                       num_dropped=int(state.num_dropped), history=history,
                       out=str(out) if out else None, stopped=stopped,
                       compile_seconds=compile_seconds,
                       inner_steps_per_second=total_inner / total_time if total_time > 0 else math.nan,
                       num_devices=1 if layout is None else layout.num_devices,
                       theta_average=theta_bar)
