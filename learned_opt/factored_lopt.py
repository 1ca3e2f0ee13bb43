"""Small learned optimizer with Adafactor-style factored second moments (in the spirit of the
small per-parameter MLPs of Metz et al. 2022, "Practical tradeoffs between memory, compute, and
performance in learned optimizers").

Accumulators (all decays are meta-parameters, ``β = sigmoid(θ_logit)``):

* momenta ``m_k <- β_k m_k + (1-β_k) g`` for ``k = 1..K`` (default K = 3);
* factored second moments for ``j = 1..J`` (default J = 3). For a tensor with ≥ 2 dimensions,
  viewed as ``(..., R, C)``, with ``q = g² + 1e-30``: row statistics
  ``r_j <- β_j r_j + (1-β_j) mean_C(q)`` and column statistics ``c_j <- β_j c_j + (1-β_j) mean_R(q)``
  (``R + C`` numbers per matrix instead of ``R·C``), and the reconstruction
  ``v̂_j = r_j ⊗ c_j / max(mean_R(r_j), 1e-15)``. Tensors with fewer than 2 dimensions keep a full ``v_j``.

Per-parameter features, each divided by its root-mean-square over the parameter's tensor:
``g, w, m_k, g/sqrt(v̂_j), m_k/sqrt(v̂_k), 1/sqrt(v̂_j)`` (``v̂`` floored at 1e-24), plus the step's time features
(:func:`learned_opt.feature_math.time_features`). A tiny tanh MLP (tanh rather than ReLU: with
so few hidden units ReLUs are often all inactive, which zeroes the update and its θ-gradient)
(default hidden widths 8 and 4) outputs a direction ``d`` and log-magnitude ``s``; the update is
``u = d · exp(α s) · β`` with ``α = β = 0.001``. Default meta-parameter count: 228.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from learned_opt.base import Theta
from learned_opt.feature_math import (
    DEFAULT_TIMESCALES,
    direction_magnitude_step,
    ema,
    next_count,
    num_time_features,
    safe_rsqrt,
    time_features,
)
from learned_opt.flat_layout import FlatLayout, pad_rows
from learned_opt.networks import DEFAULT_ROW_CHUNK, mlp_init
from learned_opt.per_param import PerParameterLOpt, StepInputs
from learned_opt.validation import check_floats_in, check_positive, check_positive_ints

_Q_EPS = 1e-30  # added to g² so row/column statistics are strictly positive
_NORM_FLOOR = 1e-15  # floor of mean_R(r) in the reconstruction
_RSQRT_FLOOR = 1e-24  # floor of v̂ in 1/sqrt(v̂)


class FactoredLOptState(NamedTuple):
    count: jax.Array  # int32 number of updates done
    momenta: jax.Array  # float32 (N, K)
    factored: jax.Array  # float32 (M, J): per tensor, rows then columns (≥2-D) or the full v (<2-D)


def _factored_sizes(layout: FlatLayout) -> list[tuple[int, int, int]]:
    """Per tensor ``(lead, R, C)`` for non-empty ≥2-D tensors, ``(0, n, 0)`` for the rest (full
    accumulator; empty tensors have none)."""
    out = []
    for shape, n in zip(layout.shapes, layout.sizes):
        if len(shape) >= 2 and n > 0:
            out.append((int(math.prod(shape[:-2])), int(shape[-2]), int(shape[-1])))
        else:
            out.append((0, n, 0))
    return out


def _factored_len(layout: FlatLayout) -> int:
    return sum(lead * (r + c) if lead else r for lead, r, c in _factored_sizes(layout))


def factored_second_moments(g: jax.Array, acc: jax.Array, decays: jax.Array,
                            layout: FlatLayout) -> tuple[jax.Array, jax.Array]:
    """Update the factored accumulators ``acc`` (M, J) with flat gradient ``g`` (N,).

    Returns ``(new_acc, v_hat)`` where ``v_hat`` (N, J) is the reconstructed second moment.
    """
    q = jnp.square(g) + _Q_EPS
    j = acc.shape[1]
    one_minus = 1.0 - decays
    new_pieces, vhat_pieces = [], []
    pos = 0
    for (lead, R, C), off, n in zip(_factored_sizes(layout), layout.offsets, layout.sizes):
        if lead == 0:  # full accumulator for scalars / vectors
            old = acc[pos:pos + n]
            new = decays * old + one_minus * q[off:off + n, None]
            new_pieces.append(new)
            vhat_pieces.append(new)
            pos += n
            continue
        qt = q[off:off + n].reshape(lead, R, C)
        old_r = acc[pos:pos + lead * R].reshape(lead, R, j)
        old_c = acc[pos + lead * R:pos + lead * (R + C)].reshape(lead, C, j)
        new_r = decays * old_r + one_minus * jnp.mean(qt, axis=2)[..., None]
        new_c = decays * old_c + one_minus * jnp.mean(qt, axis=1)[..., None]
        # mean row statistic, floored so that tiny/zero gradients keep finite θ-derivatives
        norm = jnp.maximum(jnp.mean(new_r, axis=1, keepdims=True), _NORM_FLOOR)  # (lead, 1, J)
        vhat = (new_r / norm)[:, :, None, :] * new_c[:, None, :, :]
        new_pieces += [new_r.reshape(lead * R, j), new_c.reshape(lead * C, j)]
        vhat_pieces.append(vhat.reshape(n, j))
        pos += lead * (R + C)
    cat = lambda xs: jnp.concatenate(xs, axis=0) if xs else jnp.zeros((0, j), acc.dtype)
    return cat(new_pieces), cat(vhat_pieces)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def factored_features(g: jax.Array, p: jax.Array, m: jax.Array, vhat: jax.Array) -> jax.Array:
    """Rows ``[g, w, m_k, g/sqrt(v̂_j), m_k/sqrt(v̂_k), 1/sqrt(v̂_j)]`` (``v̂`` floored at 1e-24),
    shape ``(N, 2 + 4K)``, before per-tensor normalization."""
    rs = safe_rsqrt(vhat, _RSQRT_FLOOR)
    return jnp.concatenate([g[:, None], p[:, None], m, g[:, None] * rs, m * rs, rs], axis=1)


@dataclasses.dataclass(frozen=True)
class FactoredMLPLOpt(PerParameterLOpt):
    """Tiny per-parameter MLP over Adafactor-style features with learned accumulator decays.

    Args:
      hidden_sizes: hidden widths of the per-parameter MLP.
      momentum_decays: initial momentum decays (learned; one momentum per entry).
      second_moment_decays: initial factored second-moment decays (learned), same length as
        ``momentum_decays`` (momentum ``k`` is paired with second moment ``k`` in the features).
      timescales: time scales of the ``tanh(t/s)`` step features.
      exp_mult, step_mult: ``α`` and ``β`` of ``u = d · exp(α s) · β``.
      row_chunk: rows per chunk of the per-parameter network (a speed knob; results do not
        depend on it beyond float rounding).
    """

    name = "factored_mlp"

    hidden_sizes: tuple[int, ...] = (8, 4)
    momentum_decays: tuple[float, ...] = (0.5, 0.9, 0.99)
    second_moment_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    timescales: tuple[float, ...] = DEFAULT_TIMESCALES
    exp_mult: float = 0.001
    step_mult: float = 0.001
    row_chunk: int = DEFAULT_ROW_CHUNK

    def __post_init__(self) -> None:
        momentum_decays = check_floats_in("momentum_decays", self.momentum_decays, 1e-6, 1.0)
        second_moment_decays = check_floats_in("second_moment_decays", self.second_moment_decays, 1e-6, 1.0)
        if not momentum_decays or len(momentum_decays) != len(second_moment_decays):
            raise ValueError("momentum_decays and second_moment_decays must be non-empty and of equal "
                             f"length, got {len(momentum_decays)} and {len(second_moment_decays)}")
        self._set(hidden_sizes=check_positive_ints("hidden_sizes", self.hidden_sizes),
                  momentum_decays=momentum_decays, second_moment_decays=second_moment_decays,
                  timescales=tuple(check_positive("timescales entry", s) for s in self.timescales),
                  exp_mult=check_positive("exp_mult", self.exp_mult),
                  step_mult=check_positive("step_mult", self.step_mult),
                  row_chunk=check_positive_ints("row_chunk", [self.row_chunk])[0])

    @property
    def num_param_features(self) -> int:
        k = len(self.momentum_decays)
        return 2 + 4 * k  # g, w, m_k, g/sqrt(v̂_j), m_k/sqrt(v̂_k), 1/sqrt(v̂_j)

    @property
    def num_features(self) -> int:
        return self.num_param_features + num_time_features(self.timescales)

    def init(self, key: jax.Array) -> Theta:
        theta = mlp_init(key, (self.num_features,) + self.hidden_sizes + (2,))
        theta["momentum_decay_logits"] = jnp.asarray([_logit(b) for b in self.momentum_decays], jnp.float32)
        theta["second_moment_decay_logits"] = jnp.asarray(
            [_logit(b) for b in self.second_moment_decays], jnp.float32)
        return theta

    def init_state(self, layout: FlatLayout) -> FactoredLOptState:
        k = len(self.momentum_decays)
        return FactoredLOptState(count=jnp.zeros([], jnp.int32), momenta=jnp.zeros((layout.padded, k), layout.dtype),
                                 factored=jnp.zeros((_factored_len(layout), k), layout.dtype))

    def step(self, theta: Theta, inputs: StepInputs, state: FactoredLOptState) -> tuple[jax.Array, FactoredLOptState]:
        """Learned-decay momenta and factored second moments, :func:`factored_features` + time
        features through a tanh MLP, and ``u = d · exp(α s) · β``."""
        layout, g = inputs.layout, inputs.g
        momenta = ema(state.momenta, g, jax.nn.sigmoid(theta["momentum_decay_logits"]))
        beta_v = jax.nn.sigmoid(theta["second_moment_decay_logits"])
        factored, vhat = factored_second_moments(g, state.factored, beta_v, layout)
        tf = time_features(state.count, inputs.num_steps, self.timescales, layout.dtype)
        out = self.row_network(theta, (g, inputs.p, momenta, pad_rows(vhat, layout)), layout,
                               len(self.hidden_sizes) + 1, factored_features,
                               shared_inputs=tf, activation=jnp.tanh)
        u = direction_magnitude_step(out, self.exp_mult, self.step_mult)
        return u, FactoredLOptState(next_count(state.count), momenta, factored)


__all__ = ["FactoredMLPLOpt", "FactoredLOptState", "factored_features", "factored_second_moments"]
