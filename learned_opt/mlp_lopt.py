"""Per-parameter MLP learned optimizer (the architecture of Metz et al. 2019, "Understanding and
correcting pathologies in the training of learned optimizers").

For every scalar parameter ``w`` with gradient ``g`` the optimizer keeps momenta
``m_k <- β_k m_k + (1-β_k) g`` at decays ``β_k`` (default 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999) and
a second moment ``v <- β_v v + (1-β_v) g²`` (``β_v = 0.999``). Its input features are

* ``g, w, m_1..m_K, sqrt(v)`` and the "rsqrt" features ``g/sqrt(v), m_k/sqrt(v)`` (``v`` floored at
  ``ε = 1e-24``), each column divided by its root-mean-square over the parameter's tensor
  (``x / sqrt(max(mean_tensor(x²), 1e-24))``),
  which makes the first update invariant to rescaling one tensor's gradients by ``c > 0``;
* time features of the 0-based step ``t``: ``tanh(t/s)`` for ``s`` in 1, 10, …, 10⁴ and, when the
  horizon ``T = num_steps`` is given, ``t/T`` and ``1 - t/T`` (zeros otherwise).

An MLP (default two hidden ReLU layers of 32) maps the features to a direction ``d`` and a
log-magnitude ``s``; the update (added to the parameter) is ``u = d · exp(α s) · β`` with
``α = β = 0.001`` so the untrained optimizer takes small, stable steps. With the defaults θ has
1,890 meta-parameters (``num_meta_params``).

Implementation: the per-parameter core (:class:`learned_opt.per_param.PerParameterLOpt`) flattens
all parameter leaves into one float32 vector (float64 if a leaf is float64), runs the network over
cache-sized row chunks and splits the update back into the params' tree; this module supplies
the accumulators (:class:`MLPLOptState`, kept in that flat layout), the features and the output
rule. The time features enter through the first layer's bias (they are the same for every row).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from learned_opt.base import Theta
from learned_opt.feature_math import (
    DEFAULT_TIMESCALES,
    direction_magnitude_step,
    next_count,
    num_time_features,
    param_gradient_features,
    time_features,
    update_moments,
)
from learned_opt.flat_layout import FlatLayout
from learned_opt.networks import DEFAULT_ROW_CHUNK, mlp_init
from learned_opt.per_param import PerParameterLOpt, StepInputs
from learned_opt.validation import check_floats_in, check_positive, check_positive_ints

DEFAULT_MOMENTUM_DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)


class MLPLOptState(NamedTuple):
    count: jax.Array  # int32 number of updates done (the 0-based step of the next update)
    momenta: jax.Array  # float32 (N, K): EMAs of the flat gradient at each momentum decay
    second_moment: jax.Array  # float32 (N,): EMA of the squared flat gradient


@dataclasses.dataclass(frozen=True)
class MLPLOpt(PerParameterLOpt):
    """Per-parameter MLP learned optimizer; see the module docstring for the math.

    Args:
      hidden_sizes: widths of the hidden layers of the per-parameter MLP.
      momentum_decays: decays ``β_k`` of the gradient momenta.
      second_moment_decay: decay of the squared-gradient accumulator.
      timescales: time scales ``s`` of the ``tanh(t/s)`` step features.
      exp_mult: ``α``, multiplier of the log-magnitude output.
      step_mult: ``β``, overall step scale.
      rsqrt_eps: floor ``ε`` of ``v`` in the rsqrt features ``1/sqrt(max(v, ε))``.
      row_chunk: rows per chunk of the per-parameter network (a speed knob only).
    """

    name = "mlp"

    hidden_sizes: tuple[int, ...] = (32, 32)
    momentum_decays: tuple[float, ...] = DEFAULT_MOMENTUM_DECAYS
    second_moment_decay: float = 0.999
    timescales: tuple[float, ...] = DEFAULT_TIMESCALES
    exp_mult: float = 0.001
    step_mult: float = 0.001
    rsqrt_eps: float = 1e-24
    row_chunk: int = DEFAULT_ROW_CHUNK

    def __post_init__(self) -> None:
        momentum_decays = check_floats_in("momentum_decays", self.momentum_decays, 0.0, 1.0)
        if not momentum_decays:
            raise ValueError("momentum_decays must not be empty")
        self._set(hidden_sizes=check_positive_ints("hidden_sizes", self.hidden_sizes),
                  momentum_decays=momentum_decays,
                  second_moment_decay=check_floats_in("second_moment_decay", [self.second_moment_decay], 0.0, 1.0)[0],
                  timescales=tuple(check_positive("timescales entry", s) for s in self.timescales),
                  exp_mult=check_positive("exp_mult", self.exp_mult),
                  step_mult=check_positive("step_mult", self.step_mult),
                  row_chunk=check_positive_ints("row_chunk", [self.row_chunk])[0],
                  rsqrt_eps=check_positive("rsqrt_eps", self.rsqrt_eps))

    @property
    def num_param_features(self) -> int:
        """Per-parameter (row) features: the parameter plus the 2K+3 gradient features."""
        return 1 + 2 * len(self.momentum_decays) + 3

    @property
    def num_features(self) -> int:
        return self.num_param_features + num_time_features(self.timescales)

    def init(self, key: jax.Array) -> Theta:
        return mlp_init(key, (self.num_features,) + self.hidden_sizes + (2,))

    def init_state(self, layout: FlatLayout) -> MLPLOptState:
        n, k = layout.padded, len(self.momentum_decays)
        return MLPLOptState(count=jnp.zeros([], jnp.int32), momenta=jnp.zeros((n, k), layout.dtype),
                            second_moment=jnp.zeros((n,), layout.dtype))

    def step(self, theta: Theta, inputs: StepInputs, state: MLPLOptState) -> tuple[jax.Array, MLPLOptState]:
        """Accumulators, features ``[w, g, m_k, sqrt(v), g/sqrt(v), m_k/sqrt(v)]`` + time features,
        and ``u = d · exp(α s) · β``."""
        layout = inputs.layout
        decays = jnp.asarray(self.momentum_decays, jnp.float32)
        momenta, v = update_moments(state.momenta, state.second_moment, inputs.g, decays, self.second_moment_decay)
        feats_fn = functools.partial(param_gradient_features, rsqrt_eps=self.rsqrt_eps)
        tf = time_features(state.count, inputs.num_steps, self.timescales, layout.dtype)
        # time features are the same for every row: fold them into the first layer's bias
        out = self.row_network(theta, (inputs.p, inputs.g, momenta, v), layout, len(self.hidden_sizes) + 1,
                               feats_fn, shared_inputs=tf)
        u = direction_magnitude_step(out, self.exp_mult, self.step_mult)
        return u, MLPLOptState(count=next_count(state.count), momenta=momenta, second_moment=v)
