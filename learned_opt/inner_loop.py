"""One optax-over-a-task loop, and the hand-designed baselines as one traced-hyperparameter family.

:func:`optax_scan` runs an optax transform for ``num_steps`` steps inside one ``lax.scan`` and
records a user function of the parameters at step 0, every ``record_every`` steps and at the end.
The evaluation runner and the tasksets baseline sweep both run their first-order methods through
it (``vmap``-ed over hyperparameters and seeds), so "Adam on a task" means the same program
everywhere in the project.

:func:`hand_designed` is Adam, SGD with momentum and their cosine-decayed variants as *one*
transform whose choice and learning rate are traced arrays: a whole sweep over
``{Adam, SGD+momentum} × {constant, cosine} × learning rates`` is a single ``vmap`` and a single
compilation. With ``adam=1, cosine=0`` its updates are those of ``optax.adam(lr)``; with
``adam=0`` those of ``optax.sgd(lr, momentum=0.9)``; ``cosine=1`` multiplies the step by
``optax.cosine_decay_schedule(1, num_steps)`` evaluated at the step count (tested against optax).

:data:`LEARNING_RATE_GRID` is the project's one learning-rate grid: 10 half-decades,
``1e-4 … 10**0.5``; the evaluation protocol and the tasksets normalization statistics both use it.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

#: The project-wide learning-rate grid: 10 values, half-decade steps from 1e-4 to ~3.16.
LEARNING_RATE_GRID: tuple[float, ...] = tuple(float(f"{v:.6g}") for v in np.logspace(-4, 0.5, 10))


class InnerRun(NamedTuple):
    """What :func:`optax_scan` returns."""

    params: Any  # parameters after the last step
    batch_loss: jax.Array  # [num_steps] the training loss of every step (before its update)
    records: Any  # pytree of [num_records] arrays: record(params) at record_steps(...)


def record_steps(num_steps: int, record_every: int) -> np.ndarray:
    """Steps at which :func:`optax_scan` records: ``0, E, 2E, …`` and ``num_steps``."""
    chunks = math.ceil(num_steps / record_every)
    return np.array([min(num_steps, c * record_every) for c in range(chunks + 1)], dtype=np.int64)


def optax_scan(opt: optax.GradientTransformation, loss_fn: Callable[[Any, Any], jax.Array],
               params: Any, step_inputs: Any, *, num_steps: int, record_every: int,
               record: Callable[[Any], Any]) -> InnerRun:
    """Run ``opt`` on ``loss_fn`` for ``num_steps`` steps; traceable (``jit``/``vmap`` it).

    Step ``t`` computes ``loss, g = value_and_grad(loss_fn)(params, step_inputs[t])`` and applies
    ``opt.update(g, state, params, loss=loss)`` (``ExtraArgs`` transforms such as learned
    optimizers receive the minibatch loss; plain transforms ignore it).

    Args:
      opt: an optax transform.
      loss_fn: ``(params, step_input) -> scalar``; ``step_input`` is step ``t``'s slice of
        ``step_inputs`` (its batch indices and key, say).
      params: the initial parameters (a pytree).
      step_inputs: a pytree whose leaves have leading axis ``num_steps``.
      num_steps: number of optimizer steps ``T``.
      record_every: record every ``E`` steps (the last chunk may be shorter: it ends at ``T``).
      record: ``params -> pytree of scalars`` evaluated at :func:`record_steps`.
    """
    if num_steps < 1 or record_every < 1:
        raise ValueError(f"num_steps and record_every must be >= 1, got {num_steps}, {record_every}")
    opt = optax.with_extra_args_support(opt)
    chunks = math.ceil(num_steps / record_every)
    pad = chunks * record_every - num_steps  # padding steps of the last chunk change nothing
    step_inputs = jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]), step_inputs)

    def step(carry, inp):
        p, s = carry
        t, x = inp
        loss, g = jax.value_and_grad(loss_fn)(p, x)
        upd, s2 = opt.update(g, s, p, loss=loss)
        p2 = optax.apply_updates(p, upd)
        live = t < num_steps
        keep = lambda new, old: jnp.where(live, new, old)  # noqa: E731
        return (jax.tree_util.tree_map(keep, p2, p), jax.tree_util.tree_map(keep, s2, s)), loss

    def chunk(carry, c):
        start = c * record_every
        xs = jax.tree_util.tree_map(
            lambda a: jax.lax.dynamic_slice_in_dim(a, start, record_every), step_inputs)
        carry, losses = jax.lax.scan(step, carry, (start + jnp.arange(record_every), xs))
        return carry, (losses, record(carry[0]))

    rec0 = record(params)
    (p_final, _), (losses, recs) = jax.lax.scan(chunk, (params, opt.init(params)), jnp.arange(chunks))
    records = jax.tree_util.tree_map(lambda a0, a: jnp.concatenate([a0[None], a]), rec0, recs)
    return InnerRun(p_final, losses.reshape(-1)[:num_steps], records)


class HandDesignedState(NamedTuple):
    count: jax.Array  # steps taken (int32)
    mu: Any  # first moment (Adam) or momentum trace (SGD)
    nu: Any  # second moment (Adam; unused by SGD)


def hand_designed(learning_rate: Any, adam: Any, cosine: Any, num_steps: int, *, b1: float = 0.9,
                  b2: float = 0.999, eps: float = 1e-8, momentum: float = 0.9
                  ) -> optax.GradientTransformation:
    """Adam or SGD with momentum, constant or cosine-decayed, with traceable choices.

    With ``a = adam`` (0 or 1), ``c = cosine`` (0 or 1), gradient ``g_t`` and ``t`` counted from 1:

        m_t = b1 m_{t-1} + (1 - b1) g_t          (a = 1)      m_t = momentum m_{t-1} + g_t   (a = 0)
        v_t = b2 v_{t-1} + (1 - b2) g_t^2
        d_t = (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)   (a = 1)     d_t = m_t   (a = 0)
        s_t = 1/2 (1 + cos(pi min(t - 1, T) / T))   (c = 1)           s_t = 1       (c = 0)
        update_t = -learning_rate · s_t · d_t

    i.e. ``optax.adam`` / ``optax.sgd(momentum=0.9)`` and, with ``c = 1``, the same under
    ``optax.cosine_decay_schedule(learning_rate, T)``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")

    def init(params):
        zeros = lambda p: jnp.zeros_like(p)  # noqa: E731
        return HandDesignedState(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(zeros, params),
                                 jax.tree_util.tree_map(zeros, params))

    def update(updates, state, params=None):
        del params
        grads = updates
        is_adam = jnp.asarray(adam) > 0.5
        mu = jax.tree_util.tree_map(
            lambda m, g: jnp.where(is_adam, b1 * m + (1 - b1) * g, momentum * m + g), state.mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, grads)
        count = jnp.asarray(optax.safe_int32_increment(state.count))
        frac = jnp.minimum(state.count, num_steps).astype(jnp.float32) / num_steps
        scale = jnp.where(jnp.asarray(cosine) > 0.5, 0.5 * (1 + jnp.cos(jnp.pi * frac)), 1.0)
        step = jnp.asarray(learning_rate) * scale

        def direction(m, v):
            t = count.astype(m.dtype)
            m_hat = m / (1 - jnp.asarray(b1, m.dtype) ** t)
            v_hat = v / (1 - jnp.asarray(b2, m.dtype) ** t)
            d = jnp.where(is_adam, m_hat / (jnp.sqrt(v_hat) + eps), m)
            return (-step * d).astype(m.dtype)

        return jax.tree_util.tree_map(direction, mu, nu), HandDesignedState(count, mu, nu)

    return optax.GradientTransformation(init, update)
