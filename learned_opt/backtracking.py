"""Backtracking on loss spikes: a safety wrapper for any optax optimizer that gets the loss.

``backtrack_on_spike(opt)`` watches the loss passed to ``update`` (``loss=``, the loss at the
current parameters). A step is a *spike* when the loss or any gradient is non-finite, or

    L_t > L_0 + |L_0 − μ_t| + k · σ_t

with ``L_0`` the first loss, ``μ_t`` an exponential moving average of the accepted losses
(decay ``β``) and ``σ_t²`` the matching moving variance: the loss has risen above where the run
started by more than the progress made so far, plus ``k`` standard deviations of its recent
noise, tested from the ``warmup``-th accepted loss on (before it, ``σ`` is not yet an estimate
of the noise: with ``σ = 0`` at the second step, minibatch noise alone crossed the bound on a
classifier and the shrunk steps froze the run). Minibatch noise and ordinary non-monotone
progress stay below that bound; a blow-up
(a learned step-size controller running away on a plateau, an overshooting Adam step) does not.

On a spike the wrapper undoes the previous update (returns ``−u_{t−1}``, so the parameters go
back to ``p_{t−1}``, whose loss was accepted), leaves the wrapped optimizer's state untouched
(the spike's gradient never enters its moments) and multiplies every later update by a further
``exp(−shrink)``. Otherwise the update is the wrapped optimizer's, scaled by the current factor
``exp(−shrink · n)`` after ``n`` spikes. Before any spike it is exactly the wrapped optimizer.
Two spikes in a row cannot walk back further than one step: the update undone is zeroed.

This is backtracking in the sense of a line search or a trust-region rejection (the step is
rejected and the radius shrunk), applied per step and with no extra loss evaluation.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from learned_opt.feature_math import LossStats, init_loss_stats, update_loss_stats
from learned_opt.validation import check_nonnegative, check_positive

Array = jax.Array


class BacktrackState(NamedTuple):
    """State of :func:`backtrack_on_spike`."""

    inner: Any  # the wrapped optimizer's state
    prev_update: Any  # the update returned last (zeros after a backtrack and at the start)
    loss_stats: LossStats  # of the accepted losses: count, L_0 (first), μ (mean[0]), σ² (var[0])
    log_scale: Array  # −shrink · (number of spikes)
    num_spikes: Array  # int32


def _tree_all_finite(tree: Any) -> Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def is_spike(state: BacktrackState, loss: Array, grads_finite: Array, num_sigmas: float, warmup: int) -> Array:
    """Whether ``loss`` (with the gradients' finiteness) is a spike given ``state`` (see the
    module docstring): never before the first loss has been accepted; non-finite values from then
    on; a loss above the bound once ``warmup`` losses have been accepted."""
    stats = state.loss_stats
    loss = jnp.asarray(loss, stats.mean.dtype)
    bound = stats.first + jnp.abs(stats.first - stats.mean[0]) + num_sigmas * jnp.sqrt(jnp.maximum(stats.var[0], 0.0))
    non_finite = ~jnp.isfinite(loss) | ~grads_finite
    return (stats.count > 0) & (non_finite | ((stats.count >= warmup) & (loss > bound)))


def backtrack_on_spike(opt: optax.GradientTransformation, *, num_sigmas: float = 4.0, shrink: float = 1.0,
                       decay: float = 0.9, warmup: int = 20) -> optax.GradientTransformationExtraArgs:
    """``opt`` with backtracking on loss spikes (see the module docstring).

    Args:
      opt: the wrapped optimizer; it receives ``params`` and the extra arguments unchanged.
      num_sigmas: ``k``, the noise allowance in moving standard deviations of the loss.
      shrink: every spike multiplies the later updates by ``exp(−shrink)``.
      decay: ``β`` of the moving mean and variance of the accepted losses.
      warmup: accepted losses before the bound is tested (non-finite values are spikes throughout).

    ``update`` needs ``loss=`` (the loss at the current parameters, the one the gradients are of).
    """
    num_sigmas = check_nonnegative("num_sigmas", num_sigmas)
    shrink = check_positive("shrink", shrink)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be an int >= 1, got {warmup!r}")
    decay = float(decay)
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must be in (0, 1), got {decay}")
    opt = optax.with_extra_args_support(opt)

    def init_fn(params: Any) -> BacktrackState:
        return BacktrackState(opt.init(params), jax.tree_util.tree_map(jnp.zeros_like, params),
                              init_loss_stats(1), jnp.zeros([], jnp.float32), jnp.zeros([], jnp.int32))

    def update_fn(updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, BacktrackState]:
        grads = updates  # the incoming updates are the gradients
        if "loss" not in extra or extra["loss"] is None:
            raise ValueError("backtrack_on_spike: update needs loss= (the loss at the current parameters)")
        loss = jnp.asarray(extra["loss"], jnp.float32)
        spike = is_spike(state, loss, _tree_all_finite(grads), num_sigmas, warmup)
        safe_grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
        u, inner = opt.update(safe_grads, state.inner, params, **extra)
        scale = jnp.exp(state.log_scale)
        u = jax.tree_util.tree_map(lambda x: (scale * x).astype(x.dtype), u)
        undo = jax.tree_util.tree_map(jnp.negative, state.prev_update)
        out = jax.tree_util.tree_map(lambda a, b: jnp.where(spike, a, b), undo, u)
        inner = jax.tree_util.tree_map(lambda a, b: jnp.where(spike, a, b), state.inner, inner)
        prev = jax.tree_util.tree_map(lambda x: jnp.where(spike, jnp.zeros_like(x), x), out)
        # a spike's loss never enters the statistics (update_loss_stats skips non-finite ones itself)
        folded = update_loss_stats(state.loss_stats, loss, jnp.asarray([decay]))
        stats = jax.tree_util.tree_map(lambda a, b: jnp.where(spike, a, b), state.loss_stats, folded)
        new = BacktrackState(inner, prev, stats, jnp.where(spike, state.log_scale - shrink, state.log_scale),
                             state.num_spikes + spike.astype(jnp.int32))
        return out, new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
