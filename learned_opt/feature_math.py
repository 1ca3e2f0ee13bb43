"""Feature math of the learned optimizers (pure functions of flat arrays and a static layout).

* :func:`ema` — exponential moving averages at several decays, ``m_k <- β_k m_k + (1-β_k) x``;
  :func:`update_moments` — the momenta plus the second moment ``v <- β_v v + (1-β_v) g²``;
* :func:`segment_rms_scales` — ``1 / sqrt(max(mean_{i in tensor}(x_i²), ε))`` per tensor and feature
  column, the normalizer applied to every feature (invariant to rescaling one tensor's inputs by ``c > 0``);
* :func:`time_features` — ``tanh(t / s)`` for several time scales ``s`` and, when a horizon
  ``T`` is known, ``[t/T, 1 - t/T]`` (zeros when it is not, so the feature count never changes);
* :func:`gradient_features` — ``[g, m_1..m_K, sqrt(v), g/sqrt(v), m_k/sqrt(v)]`` columns (``v`` floored);
  :func:`param_gradient_features` — the same with the parameter ``w`` as first column;
* :func:`direction_magnitude_step` — ``u = d · exp(α s) · β`` from the network's two outputs;
* :class:`LossStats` / :func:`update_loss_stats` / :func:`loss_features` — normalized loss
  features that are finite at step 0 and for any finite loss scale (no bias-correction division);
* :func:`trust_ratio_features` — ``tanh ρ`` of the actual over the first-order predicted change of
  the last step and its moving average (the trust-region signal of the scheduled optimizers).

Per-tensor reductions come from :mod:`learned_opt.flat_layout`, except the means of
:func:`segment_rms_scales`, which split the rows once (same sums; a cheaper backward pass: in a
same-process A/B on a busy 2-core machine, one MLPLOpt update's backward pass reads 20% fewer
bytes by XLA's count; medians 0.91x for one update and 0.92-0.94x for ``bench_outer.py``'s (e)
meta-gradient, within noise for layouts of several row chunks; the forward program is unchanged).

``x[:, None]`` and ``jnp.expand_dims(x, 1)`` trace to the same ``broadcast_in_dim``, so the
column constructions below are written either way without any effect on speed.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt.flat_layout import FlatLayout, segment_sum

Array = jax.Array

DEFAULT_TIMESCALES = (1.0, 10.0, 100.0, 1_000.0, 10_000.0)


def safe_rsqrt(x: Array, floor: float) -> Array:
    """``1/sqrt(max(x, floor))``: finite, with a finite derivative, even where ``x = 0``."""
    return jax.lax.rsqrt(jnp.maximum(x, floor))


def ema(acc: Array, x: Array, decays: Array) -> Array:
    """Moving averages at several decays: ``acc[:, k] <- β_k acc[:, k] + (1-β_k) x``.

    ``acc`` has shape ``(N, K)``, ``x`` shape ``(N,)`` (or ``(N, K)``), ``decays`` shape ``(K,)``.
    """
    if x.ndim == acc.ndim - 1:
        x = x[..., None]
    return decays * acc + (1.0 - decays) * x


def next_count(count: Array) -> Array:
    """The step counter after one more update: ``optax.safe_int32_increment`` (saturates at the
    int32 maximum), typed as an array."""
    return cast(Array, optax.safe_int32_increment(count))


def update_moments(momenta: Array, second_moment: Array, g: Array, decays: Array,
                   second_moment_decay: float) -> tuple[Array, Array]:
    """``(m_k <- β_k m_k + (1-β_k) g, v <- β_v v + (1-β_v) g²)`` for flat gradients ``g`` (N,),
    momenta (N, K) and second moment (N,)."""
    beta_v = second_moment_decay
    return ema(momenta, g, decays), beta_v * second_moment + (1.0 - beta_v) * jnp.square(g)


def horizon_fraction(step: Array, num_steps: int | Array, dtype: Any = jnp.float32) -> Array:
    """``clip(t/T, 0, 1)``, the fraction of the horizon ``T`` (static or traced, at least 1) done."""
    horizon = (jnp.maximum(jnp.asarray(num_steps, dtype), 1.0) if isinstance(num_steps, jax.Array)
               else float(max(int(num_steps), 1)))
    return jnp.clip(jnp.asarray(step, dtype) / horizon, 0.0, 1.0)


def time_features(step: Array, num_steps: int | Array | None,
                  timescales: Sequence[float] = DEFAULT_TIMESCALES, dtype: Any = jnp.float32) -> Array:
    """``[tanh(t/s) for s in timescales] + [t/T, 1 - t/T]`` (the last two are 0 without a horizon)."""
    t = jnp.asarray(step, dtype)
    feats = [jnp.tanh(t / s) for s in timescales]
    if num_steps is None:
        feats += [jnp.zeros((), dtype), jnp.zeros((), dtype)]
    else:
        frac = horizon_fraction(t, num_steps, dtype)
        feats += [frac, 1.0 - frac]
    return jnp.stack(feats)


def num_time_features(timescales: Sequence[float] = DEFAULT_TIMESCALES) -> int:
    return len(timescales) + 2


def _segment_mean_split(x: Array, layout: FlatLayout) -> Array:
    """:func:`~learned_opt.flat_layout.segment_mean` over the rows of ``x`` ``(P, ...)``, through
    one ``split`` of the (contiguous) tensors' rows instead of one slice per tensor: the same sums,
    but the backward pass is one ``concatenate`` of broadcast cotangents rather than one zero-padded
    ``P``-row array per tensor added together (which XLA:CPU materializes, ``T`` full-size passes)."""
    if layout.num_tensors == 0:
        return jnp.zeros((0,) + x.shape[1:], x.dtype)
    ends = np.cumsum(layout.sizes)
    cuts = [int(e) for e in ends[:-1]] + ([int(ends[-1])] if ends[-1] < x.shape[0] else [])
    pieces = jnp.split(x, cuts, axis=0)[: layout.num_tensors]
    counts = np.maximum(np.asarray(layout.sizes, np.float32), 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.stack([jnp.sum(piece, axis=0) for piece in pieces]) / counts


def segment_rms_scales(x: Array, layout: FlatLayout, floor: float = 1e-24) -> Array:
    """Per-tensor, per-column ``1/sqrt(max(mean_tensor(x²), floor))``, shape ``(T, F)``."""
    return safe_rsqrt(_segment_mean_split(jnp.square(x), layout), floor)


def gradient_features(g: Array, momenta: Array, v: Array, rsqrt_eps: float) -> Array:
    """Per-parameter gradient columns ``[g, m_1..m_K, sqrt(v), g/sqrt(v), m_k/sqrt(v)]``,
    shape ``(N, 2K+3)`` (before per-tensor normalization); ``1/sqrt(v)`` is
    :func:`safe_rsqrt` with floor ``rsqrt_eps`` (so entries with ``v = 0`` give 0, not NaN)."""
    r = safe_rsqrt(v, rsqrt_eps)
    g2 = g[:, None]
    r2 = r[:, None]
    return jnp.concatenate([g2, momenta, (v * r)[:, None], g2 * r2, momenta * r2], axis=1)


def param_gradient_features(p: Array, g: Array, momenta: Array, v: Array, rsqrt_eps: float) -> Array:
    """``[w, g, m_1..m_K, sqrt(v), g/sqrt(v), m_k/sqrt(v)]``, shape ``(N, 2K+4)``: the parameter
    followed by :func:`gradient_features` (the per-parameter inputs of the MLP and hierarchical
    optimizers, before per-tensor normalization)."""
    return jnp.concatenate([p[:, None], gradient_features(g, momenta, v, rsqrt_eps)], axis=1)


def direction_magnitude_step(out: Array, exp_mult: float, step_mult: float,
                             log_scale: Array | float = 0.0) -> Array:
    """``u = d · exp(α (s + log_scale)) · β`` with ``d = out[:, 0]``, ``s = out[:, 1]``."""
    return out[:, 0] * jnp.exp(exp_mult * (out[:, 1] + log_scale)) * step_mult


class LossStats(NamedTuple):
    """Running statistics of a scalar loss stream (float32 except ``count``)."""

    count: Array  # int32 number of finite losses seen
    first: Array  # the first finite loss
    mean: Array  # (D,) EMAs of the loss at decays β_d, initialized to the first loss
    var: Array  # (D,) EMAs of the squared deviation from the running mean


def init_loss_stats(num_decays: int, dtype: Any = jnp.float32) -> LossStats:
    """Empty loss statistics in ``dtype`` (the optimizer's computation dtype: float64 for float64
    parameters, so the loss features are not rounded to float32 there)."""
    # distinct buffers for every field, so the state can be donated to a jitted step
    return LossStats(jnp.zeros([], jnp.int32), jnp.zeros([], dtype),
                     jnp.zeros((num_decays,), dtype), jnp.zeros((num_decays,), dtype))


def loss_features(stats: LossStats, loss: Array) -> Array:
    """Features of the current ``loss`` relative to the stats *before* it, shape ``(D+1,)``:

    ``tanh((l - mean_d) / sqrt(var_d + 1e-6 mean_d² + 1e-16))`` for each decay and
    ``tanh((l - first) / (|first| + 1e-8))``. All zero before the first finite loss and for a
    non-finite ``l``; every denominator is ≥ 1e-8 and the square root's argument ≥ 1e-16 (finite
    derivative), so they are finite for any finite loss scale (losses starting at 0 or at 1e6
    alike) and no bias-correction division ``1/(1-β^t)`` is needed. Computed in the dtype of
    ``stats``.
    """
    l = jnp.asarray(loss).astype(stats.mean.dtype)
    ok = (stats.count > 0) & jnp.isfinite(l)
    l_safe = jnp.where(ok, l, 0.0)
    mean = jnp.where(ok, stats.mean, 0.0)
    first = jnp.where(ok, stats.first, 0.0)
    scale = jnp.sqrt(stats.var + 1e-6 * jnp.square(mean) + 1e-16)
    z = jnp.tanh((l_safe - mean) / scale)
    z0 = jnp.tanh((l_safe - first) / (jnp.abs(first) + 1e-8))
    return jnp.where(ok, jnp.concatenate([z, z0[None]]), 0.0)


def update_loss_stats(stats: LossStats, loss: Array, decays: Array) -> LossStats:
    """Fold a loss into the stats: the first finite loss initializes ``first`` and ``mean``;
    later ones do ``var <- β var + (1-β) β (l - mean)²``, ``mean <- β mean + (1-β) l``.
    Non-finite losses are skipped. Computed in the dtype of ``stats``."""
    l = jnp.asarray(loss).astype(stats.mean.dtype)
    decays = jnp.asarray(decays).astype(stats.mean.dtype)
    finite = jnp.isfinite(l)
    l_safe = jnp.where(finite, l, 0.0)
    started = stats.count > 0
    delta = l_safe - stats.mean
    mean = jnp.where(started, decays * stats.mean + (1.0 - decays) * l_safe, l_safe)
    var = jnp.where(started, decays * stats.var + (1.0 - decays) * decays * jnp.square(delta), 0.0)
    first = jnp.where(started, stats.first, l_safe)
    new = LossStats(next_count(stats.count), first, mean, var)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, stats)


NUM_TRUST_FEATURES = 2
TRUST_DECAY = 0.9


def trust_ratio_features(count: Array, prev_loss: Array, predicted: Array, rho_ema: Array,
                         loss: Array | None, dtype: Any) -> tuple[Array, Array]:
    """``([tanh ρ, ema'], ema')`` with ``ρ = (L_t - L_{t-1}) / P``, ``P = Σ_i g_{t-1,i} u_{t-1,i}``
    the first-order predicted change of the previous update (``predicted``; ≤ 0 for a descent
    step) and ``ema' = 0.9 ema + 0.1 tanh ρ``. ``ρ ≈ 1``: the step was in the linear regime;
    ``ρ < 0``: the loss rose. ``tanh ρ`` is 0 (and the average unchanged) at the first step
    (``count == 0``), without a loss, and whenever anything is non-finite."""
    if loss is None:
        return jnp.zeros((NUM_TRUST_FEATURES,), dtype), rho_ema
    loss = jnp.asarray(loss, dtype)
    denom = jnp.minimum(predicted, -1e-30)  # never divide by 0
    rho = jnp.tanh((loss - prev_loss) / denom)
    ok = (count > 0) & jnp.isfinite(rho)
    rho = jnp.where(ok, rho, 0.0)
    ema = jnp.where(ok, TRUST_DECAY * rho_ema + (1 - TRUST_DECAY) * rho, rho_ema)
    return jnp.stack([rho, ema]).astype(dtype), ema


def tensor_cosine(a: Array, b: Array, layout: FlatLayout) -> Array:
    """``cos(a, b)`` over each tensor's entries of two flat vectors, ``(T,)`` (0 when either is 0)."""
    dot = segment_sum(a * b, layout)
    return dot / jnp.sqrt(segment_sum(jnp.square(a), layout) * segment_sum(jnp.square(b), layout) + 1e-30)


def accumulate_log_step(acc: Array, increment_raw: Array, cos: Array, max_step_change: float,
                        max_log_step: float, gain: float, trust_average: Array | None = None) -> Array:
    """The step controller's accumulator update ``clip(a + K tanh((δ + κ n)/K), -S, S)`` with
    ``K = max_step_change``, ``S = max_log_step``, ``κ = gain`` and the nominal signal
    ``n = cos`` or, given the trust-ratio average ``ρ̄`` (``trust_average``), ``n = min(cos, ρ̄)``:
    grow the step only while the gradient keeps its direction *and* the loss falls as predicted
    (``ρ̄ ≈ 0`` on a plateau holds it, ``ρ̄ < 0`` shrinks it). The nominal increment is skipped
    for ``κ = 0``; a non-finite increment leaves ``a`` unchanged."""
    if gain > 0:
        signal = cos if trust_average is None else jnp.minimum(cos, trust_average)
        increment_raw = increment_raw + gain * signal
    step = max_step_change * jnp.tanh(increment_raw / max_step_change)
    step = jnp.where(jnp.isfinite(step), step, 0.0)
    return jnp.clip(acc + step, -max_log_step, max_log_step).astype(acc.dtype)
