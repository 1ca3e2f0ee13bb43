"""Hand-designed optimizers whose hyperparameters are meta-parameters θ.

They serve as meta-training baselines and for validating gradient estimators against closed
forms. θ stores the hyperparameters in unconstrained log space:

===================  ===========================  ==========================================
optimizer            θ keys                       hyperparameter
===================  ===========================  ==========================================
LearnableSGD         ``log_lr``                   ``lr = exp(log_lr)``
LearnableMomentum    ``log_lr``,                  ``lr = exp(log_lr)``,
                     ``log_one_minus_momentum``   ``β = 1 - exp(log_one_minus_momentum)``
LearnableAdam        ``log_lr``,                  ``lr = exp(log_lr)``,
                     ``log_one_minus_b1``,        ``b1 = 1 - exp(log_one_minus_b1)``,
                     ``log_one_minus_b2``,        ``b2 = 1 - exp(log_one_minus_b2)``,
                     ``log_eps``                  ``eps = exp(log_eps)``
===================  ===========================  ==========================================

The updates are those of optax (``g`` the gradient, ``t`` the 1-based step count):

* SGD: ``u = -lr g``;
* momentum (heavy ball, optax.sgd(momentum=β)): ``m <- g + β m``, ``u = -lr m``;
* Adam: ``m <- (1-b1) g + b1 m``, ``v <- (1-b2) g² + b2 v``,
  ``u = -lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``; the square root is given derivative 0
  at ``v = 0`` so that θ-gradients stay finite for parameters whose gradient is exactly zero.

Exactness at the initial θ: each hyperparameter ``h`` is evaluated as ``h₀ · exp(θ - θ₀)`` with
``θ₀ = float32(log h₀)`` the constructor value — the same function of θ as ``exp(θ)`` up to the
float32 rounding of ``log h₀`` (a relative 1e-8), but equal to ``h₀`` *bit for bit* at ``θ = θ₀``;
likewise ``1-b`` and ``b`` are formed from the Python double ``1-b₀``. So ``LearnableAdam()`` at
``init(key)`` reproduces ``optax.adam(1e-3)`` exactly, and ``LearnableSGD(lr)`` reproduces ``optax.sgd(lr)``.

Computation is in float32 (float64 for float64 params); updates are returned in each
parameter's dtype, accumulators are kept in the computation dtype. The optimizer state is a
NamedTuple whose ``count`` is an int32 step counter.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt.base import LearnedOptimizer, Theta
from learned_opt.feature_math import next_count
from learned_opt.validation import check_decay, check_num_steps, check_positive, check_theta


def _log32(value: float) -> np.float32:
    return np.float32(math.log(value))


def _theta_float(x: jax.Array) -> jax.Array:
    """A θ entry as float32 (or float64 when it is float64)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _scaled(theta_value: jax.Array, h0: float) -> jax.Array:
    """``h₀ · exp(θ - float32(log h₀))`` — equals ``exp(θ)``, exactly ``h₀`` at the initial θ."""
    return h0 * jnp.exp(_theta_float(theta_value) - _log32(h0))


def _decay_pair(theta_value: jax.Array, b0: float) -> tuple[jax.Array, jax.Array]:
    """``(b, 1-b)`` from ``θ = log(1-b)``; exactly ``(b₀, 1-b₀)`` at the initial θ."""
    one_minus_b0 = 1.0 - b0
    r = jnp.exp(_theta_float(theta_value) - _log32(one_minus_b0))
    return b0 + one_minus_b0 * (1.0 - r), one_minus_b0 * r


def _sqrt0(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` with derivative 0 (instead of ∞) at ``x = 0`` — same values, finite θ-gradients
    when a parameter's gradient is exactly zero."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _compute_dtype(x: Any) -> Any:
    """float32, or the leaf's dtype when it is wider (float64 under ``jax.enable_x64``)."""
    return jnp.promote_types(jnp.asarray(x).dtype, jnp.float32)


def _f32(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x).astype(_compute_dtype(x)), tree)


def _zeros32(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), _compute_dtype(x)), tree)


def _to_param_dtype(updates: Any, grads: Any) -> Any:
    return jax.tree_util.tree_map(lambda u, g: u.astype(jnp.asarray(g).dtype), updates, grads)


# ----------------------------------------------------------------------------------------- SGD
class SGDState(NamedTuple):
    count: jax.Array  # int32 number of updates done


@dataclasses.dataclass(frozen=True)
class LearnableSGD(LearnedOptimizer):
    """SGD with a learnable log learning rate: ``u = -exp(log_lr) · g``."""

    name = "sgd"

    learning_rate: float = 1e-2

    def __post_init__(self) -> None:
        self._set(learning_rate=check_positive("learning_rate", self.learning_rate))

    def init(self, key: jax.Array | None = None) -> Theta:
        del key  # deterministic: θ starts at the constructor's hyperparameters
        return {"log_lr": jnp.asarray(_log32(self.learning_rate))}

    def opt_fn(self, theta: Theta, num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
        check_theta(theta, ["log_lr"], type(self).__name__)
        check_num_steps(num_steps, type(self).__name__)
        lr0 = self.learning_rate

        def init_fn(params):
            del params
            return SGDState(count=jnp.zeros([], jnp.int32))

        def update_fn(updates, state, params=None, **extra):
            grads = updates  # the incoming updates are the gradients
            del params, extra
            lr = _scaled(theta["log_lr"], lr0)
            updates = jax.tree_util.tree_map(lambda g: -lr * g, _f32(grads))
            return _to_param_dtype(updates, grads), SGDState(count=next_count(state.count))

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ------------------------------------------------------------------------------------ momentum
class MomentumState(NamedTuple):
    count: jax.Array  # int32 number of updates done
    trace: Any  # float32 pytree like params: m <- g + β m


@dataclasses.dataclass(frozen=True)
class LearnableMomentum(LearnedOptimizer):
    """Heavy-ball momentum (optax.sgd(lr, momentum)) with learnable log lr and log(1-β)."""

    name = "momentum"

    learning_rate: float = 1e-2
    momentum: float = 0.9

    def __post_init__(self) -> None:
        self._set(learning_rate=check_positive("learning_rate", self.learning_rate),
                  momentum=check_decay("momentum", self.momentum))

    def init(self, key: jax.Array | None = None) -> Theta:
        del key
        return {"log_lr": jnp.asarray(_log32(self.learning_rate)),
                "log_one_minus_momentum": jnp.asarray(_log32(1.0 - self.momentum))}

    def opt_fn(self, theta: Theta, num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
        check_theta(theta, ["log_lr", "log_one_minus_momentum"], type(self).__name__)
        check_num_steps(num_steps, type(self).__name__)
        lr0, beta0 = self.learning_rate, self.momentum

        def init_fn(params):
            return MomentumState(count=jnp.zeros([], jnp.int32), trace=_zeros32(params))

        def update_fn(updates, state, params=None, **extra):
            grads = updates  # the incoming updates are the gradients
            del params, extra
            lr = _scaled(theta["log_lr"], lr0)
            beta, _ = _decay_pair(theta["log_one_minus_momentum"], beta0)
            trace = jax.tree_util.tree_map(lambda g, t: g + beta * t, _f32(grads), state.trace)
            updates = jax.tree_util.tree_map(lambda t: -lr * t, trace)
            return _to_param_dtype(updates, grads), MomentumState(next_count(state.count), trace)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------------------- Adam
class AdamState(NamedTuple):
    count: jax.Array  # int32 number of updates done
    mu: Any  # float32 first-moment EMA
    nu: Any  # float32 second-moment EMA


@dataclasses.dataclass(frozen=True)
class LearnableAdam(LearnedOptimizer):
    """Adam with learnable log lr, log(1-b1), log(1-b2), log eps; equals optax.adam at init."""

    name = "adam"

    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        self._set(learning_rate=check_positive("learning_rate", self.learning_rate),
                  b1=check_decay("b1", self.b1), b2=check_decay("b2", self.b2),
                  eps=check_positive("eps", self.eps))

    def init(self, key: jax.Array | None = None) -> Theta:
        del key
        return {"log_lr": jnp.asarray(_log32(self.learning_rate)),
                "log_one_minus_b1": jnp.asarray(_log32(1.0 - self.b1)),
                "log_one_minus_b2": jnp.asarray(_log32(1.0 - self.b2)),
                "log_eps": jnp.asarray(_log32(self.eps))}

    def opt_fn(self, theta: Theta, num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
        check_theta(theta, ["log_lr", "log_one_minus_b1", "log_one_minus_b2", "log_eps"],
                    type(self).__name__)
        check_num_steps(num_steps, type(self).__name__)
        lr0, b10, b20, eps0 = self.learning_rate, self.b1, self.b2, self.eps

        def init_fn(params):
            return AdamState(count=jnp.zeros([], jnp.int32), mu=_zeros32(params), nu=_zeros32(params))

        def update_fn(updates, state, params=None, **extra):
            grads = updates  # the incoming updates are the gradients
            del params, extra
            lr = _scaled(theta["log_lr"], lr0)
            eps = _scaled(theta["log_eps"], eps0)
            b1, one_minus_b1 = _decay_pair(theta["log_one_minus_b1"], b10)
            b2, one_minus_b2 = _decay_pair(theta["log_one_minus_b2"], b20)
            g32 = _f32(grads)
            mu = jax.tree_util.tree_map(lambda g, m: one_minus_b1 * g + b1 * m, g32, state.mu)
            nu = jax.tree_util.tree_map(lambda g, v: one_minus_b2 * (g ** 2) + b2 * v, g32, state.nu)
            count = next_count(state.count)
            # optax's own bias correction m / (1 - b^t) (a jitted helper, so results match bit for bit)
            mu_hat = optax.tree.bias_correction(mu, b1, count)
            nu_hat = optax.tree.bias_correction(nu, b2, count)
            updates = jax.tree_util.tree_map(lambda m, v: -lr * (m / (_sqrt0(v) + eps)), mu_hat, nu_hat)
            return _to_param_dtype(updates, grads), AdamState(count=count, mu=mu, nu=nu)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)
