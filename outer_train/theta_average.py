"""An exponential moving average of θ kept inside the outer optimizer's state.

With decay ``β`` in (0, 1), after outer step ``t`` (θ_t the parameters that step produced)

    a_t = β·a_{t−1} + (1 − β)·θ_t,        a_0 = 0,
    θ̄_t = a_t / (1 − β^t)                 (the bias-corrected average; θ̄_t = θ_t for t = 1),

a weighted average of θ_1 … θ_t whose weights fall by β per step (about ``1/(1 − β)`` steps of
memory). The truncated meta-gradient is noisy and the final θ of a run sits wherever the last few
hundred steps left it; θ̄ averages that noise out (Polyak–Ruppert / weight averaging).

:func:`theta_average` is an optax ``GradientTransformation`` that leaves the updates unchanged and
only records ``θ + updates`` — chained *last*, after the transformations that produce the final
update, so ``θ + updates`` is the new θ. Keeping the average in the optimizer state means the
trainer's step, its non-finite-step rollback and its exact resume carry it with no further code;
:func:`averaged_theta` reads it back.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ThetaAverageState(NamedTuple):
    """``count`` updates seen and the uncorrected average ``a_t`` (same tree as θ)."""

    count: jax.Array
    average: Any


def check_decay(decay: Any, what: str = "decay") -> float:
    """``decay`` as a float in (0, 1); ``ValueError`` naming ``what`` otherwise."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < float(decay) < 1.0:
        raise ValueError(f"{what} must be a number in (0, 1) (the EMA decay per outer step), got {decay!r}")
    return float(decay)


def theta_average(decay: float) -> optax.GradientTransformation:
    """Track ``θ̄``, the bias-corrected EMA of the parameters after each update (module docstring)."""
    beta = check_decay(decay)

    def init(params):
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros_like(jnp.asarray(p)), params)
        return ThetaAverageState(count=jnp.zeros((), jnp.int32), average=zeros)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("theta_average needs params: call update(updates, state, params)")
        new = optax.apply_updates(params, updates)
        average = jax.tree_util.tree_map(lambda a, p: beta * a + (1.0 - beta) * p, state.average, new)
        return updates, ThetaAverageState(count=state.count + 1, average=average)

    return optax.GradientTransformation(init, update)


def debiased(state: ThetaAverageState, decay: float) -> Any:
    """``θ̄ = a_t / (1 − β^t)``; ``ValueError`` before the first update (there is no average yet)."""
    t = int(state.count)
    if t == 0:
        raise ValueError("no θ average yet: the run has made no outer step")
    scale = 1.0 / (1.0 - check_decay(decay) ** t)
    return jax.tree_util.tree_map(lambda a: a * jnp.asarray(scale, jnp.asarray(a).dtype), state.average)


def find_state(opt_state: Any) -> ThetaAverageState | None:
    """The :class:`ThetaAverageState` inside an outer optimizer state (a chain's tuple), if any."""
    if isinstance(opt_state, ThetaAverageState):
        return opt_state
    if isinstance(opt_state, tuple):
        for part in opt_state:
            found = find_state(part)
            if found is not None:
                return found
    return None


def averaged_theta(opt_state: Any, decay: float) -> Any:
    """The bias-corrected θ̄ held in ``opt_state``; ``ValueError`` if it holds no average."""
    state = find_state(opt_state)
    if state is None:
        raise ValueError("the outer optimizer state holds no θ average (config key 'theta_average' is 0)")
    return debiased(state, decay)
