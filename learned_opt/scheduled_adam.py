"""Adam with a learned per-tensor step-size schedule and a learned per-parameter correction.

A *nominal term* learned optimizer (after Harrison, Metz & Sohl-Dickstein 2022): the update is a
learned-scaled Adam direction plus a small learned per-parameter residual, so at its initial θ it
*is* Adam and meta-training only has to learn what Adam's hand-tuned learning rate and schedule
would otherwise supply.

For parameter ``i`` of tensor ``j``, gradient ``g``, step ``t`` (1-based) and horizon ``T``:

    m <- b1 m + (1 - b1) g,      v <- b2 v + (1 - b2) g²,      q <- b3 q + (1 - b3) g
    d_i = m̂_i / (sqrt(v̂_i) + eps)                       (Adam's direction, bias-corrected)
    s_j = S · tanh(f_θ(c_j)[0] / S)                      (learned per-tensor log step, |s_j| < S)
    r_i = C · tanh(h_θ(x_i) / C)                         (learned per-parameter correction, |r_i| < C;
                                                          unbounded, r_i = h_θ(x_i), when C is None)
    update_i = -lr0 · c(t) · exp(s_j) · (d_i + r_i)

``c(t)`` is a hand-designed *nominal schedule*: ``1`` (``nominal_schedule="constant"``, the
default) or, with ``nominal_schedule="cosine"`` and a known horizon, the cosine decay
``c(t) = α + (1 - α) · (1 + cos(π · min(t - 1, T) / T)) / 2`` to the floor ``α``
(``nominal_schedule_floor``) — the factor of ``optax.cosine_decay_schedule`` at update ``t``, so
that at the initial θ (with ``κ = 0``) the optimizer is tuned-style Adam with cosine decay and
meta-training learns deviations from it rather than the decay itself. Without a horizon
``c(t) = 1``.

``f_θ`` is a small MLP over the per-tensor context ``c_j``: the time features (``tanh(t/τ)`` for
several ``τ`` and the fraction of training done ``t/T``, ``1 - t/T`` when the horizon is known),
normalized-loss features of the current loss (:func:`learned_opt.feature_math.loss_features`) and
statistics of the tensor (log RMS of its parameters, the gradient signal-to-noise ratio
``rms(m̂) / rms(sqrt(v̂))``, the cosine between ``g`` and the previous momentum, log size).
With ``trust_features=True`` the context also holds a trust-region signal (the ratio of the
actual to the predicted decrease of the last step, which a fixed-learning-rate method cannot
see): with ``P = Σ_i g_{t-1,i} u_{t-1,i}`` (the first-order predicted change of the previous
update, ≤ 0) and ``ρ = (L_t - L_{t-1}) / P``, the features are ``tanh(ρ)`` and its moving
average at decay 0.9 (``ρ ≈ 1``: the step is in the linear regime, room to grow; ``ρ < 0``: the
loss rose, the step overshot). Both are 0 at the first step and whenever no loss is passed.

With ``shape_features=True`` the context also holds the tensor's shape, which the gradient
statistics do not show but which sets Adam's best rate (wider layers want smaller steps, μP):
``[log10(fan_in)/3, log10(fan_out)/3, 1 if the tensor has ≥ 2 dimensions else 0]``, where for a
tensor of shape ``(…, n_out)`` with ≥ 2 dimensions ``fan_out = n_out`` and
``fan_in = size / n_out`` (a dense kernel ``(n_in, n_out)``, a conv kernel ``(h, w, c_in, c_out)``),
and a vector or scalar has ``fan_in = 1``, ``fan_out = size``. They enter the context between
the loss (and trust) features and the tensor statistics.

With ``step_controller=True`` (which needs the trust features) the per-tensor network has a
second output that *accumulates*: a per-tensor state ``a_j`` (0 at the start) integrates bounded
increments, and the log step is read from the memoryless output plus the accumulator,

    a_j <- clip(a_j + K · tanh(f_θ(c_j)[1] / K), -S, S)     (K = ``max_step_change``)
    s_j = S · tanh((f_θ(c_j)[0] + a_j) / S)

with ``a_j / S`` (its value before the increment) appended to the context. With a
``hypergradient_gain`` ``κ > 0`` the increment has a hand-designed nominal part,

    a_j <- clip(a_j + K · tanh((f_θ(c_j)[1] + κ · cos(g_t, m_{t-1})_j) / K), -S, S)

so that at the initial θ the controller already adapts each tensor's step size, like the
delta-bar-delta rule (Jacobs 1988) or a hypergradient in log space (Baydin et al. 2018): a
gradient that keeps agreeing with the momentum (``cos > 0``, the steps undershoot) grows the
step, one that reverses it (``cos < 0``, the steps overshoot) shrinks it; pure gradient noise
(``E cos = 0``) leaves it alone. With ``nominal_increment="cosine_trust"`` the signal is
``min(cos, ρ̄)``, ``ρ̄`` the trust-ratio average: the step grows only while the loss also falls
as the previous updates predicted, holds on a plateau (``ρ̄ ≈ 0``) and shrinks while the loss
rises (``ρ̄ < 0``), which the cosine alone cannot see. A memoryless ``s_j``
can only map the current signals to a step size; the accumulator lets the optimizer *search* for
a task's step size over the run (grow it while the trust ratio says the steps are in the linear
regime, shrink it when they overshoot) and keep what it found, like a learned hypergradient or
trust-region radius controller.

``h_θ`` is a per-parameter MLP over ``[d_i, m̂_i/sqrt(v̂_i), q_i/sqrt(v̂_i), g_i/sqrt(v̂_i), w_i]``,
each column divided by its RMS over the tensor, plus the same context projected into its first
layer. The last layers of both networks start at zero, so at the initial θ ``s_j = r_i = 0`` (and, with
``κ = 0``, the accumulator stays 0) and the optimizer equals ``optax.adam(lr0, b1, b2, eps)``
exactly (tested); with ``κ > 0`` it is Adam with the nominal step-size controller above.

Parameters are handled in one flat vector like the other per-parameter optimizers
(the core :class:`learned_opt.per_param.PerParameterLOpt`); the correction network runs over
cache-sized row chunks.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from learned_opt.backtracking import backtrack_on_spike
from learned_opt.base import Theta
from learned_opt.feature_math import (
    DEFAULT_TIMESCALES,
    NUM_TRUST_FEATURES,
    LossStats,
    accumulate_log_step,
    horizon_fraction,
    init_loss_stats,
    loss_features,
    next_count,
    num_time_features,
    tensor_cosine,
    time_features,
    trust_ratio_features,
    update_loss_stats,
)
from learned_opt.flat_layout import FlatLayout, segment_broadcast, segment_mean
from learned_opt.networks import DEFAULT_ROW_CHUNK, mlp_apply, mlp_init
from learned_opt.per_param import PerParameterLOpt, StepInputs
from learned_opt.validation import (
    check_bool,
    check_floats_in,
    check_nonnegative,
    check_positive,
    check_positive_ints,
)

LOSS_DECAYS = (0.9, 0.99)
NUM_TENSOR_STATS = 4
_COS_COLUMN = 2  # cos(g, m_{t-1}) in the tensor statistics
#: signals of the step controller's nominal increment (``ScheduledAdamLOpt.nominal_increment``)
NOMINAL_INCREMENTS = ("cosine", "cosine_trust")
#: hand-designed factors ``c(t)`` of the step (``ScheduledAdamLOpt.nominal_schedule``)
NOMINAL_SCHEDULES = ("constant", "cosine")
NUM_ROW_FEATURES = 5
NUM_SHAPE_FEATURES = 3


def _sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x + 1e-30)``: equal to ``sqrt(x)`` beside Adam's eps, with a finite derivative at 0
    (so meta-gradients through tensors with zero gradients stay finite)."""
    return jnp.sqrt(x + 1e-30)


class ScheduledAdamState(NamedTuple):
    count: jax.Array  # int32 updates done
    m: jax.Array  # (N,) first moment (b1)
    v: jax.Array  # (N,) second moment (b2)
    q: jax.Array  # (N,) slow momentum (b3), a correction feature
    loss_stats: LossStats


class ScheduledAdamTrustState(NamedTuple):
    """:class:`ScheduledAdamState` plus the trust-ratio statistics (``trust_features=True``)."""

    count: jax.Array
    m: jax.Array
    v: jax.Array
    q: jax.Array
    loss_stats: LossStats
    prev_loss: jax.Array  # L_{t-1} (0 before the first loss)
    predicted: jax.Array  # P = Σ g·u of the previous update
    rho_ema: jax.Array  # moving average of tanh(ρ)


class ScheduledAdamControlState(NamedTuple):
    """:class:`ScheduledAdamTrustState` plus the per-tensor log-step accumulator
    (``step_controller=True``)."""

    count: jax.Array
    m: jax.Array
    v: jax.Array
    q: jax.Array
    loss_stats: LossStats
    prev_loss: jax.Array
    predicted: jax.Array
    rho_ema: jax.Array
    log_step_acc: jax.Array  # (T,) a_j, |a_j| <= S


def trust_features(state: ScheduledAdamTrustState | ScheduledAdamControlState, loss: jax.Array | None,
                   dtype: Any) -> tuple[jax.Array, jax.Array]:
    """``([tanh ρ, ema'], ema')`` of ``state`` (:func:`learned_opt.feature_math.trust_ratio_features`)."""
    return trust_ratio_features(state.count, state.prev_loss, state.predicted, state.rho_ema, loss, dtype)


AnyState = ScheduledAdamState | ScheduledAdamTrustState | ScheduledAdamControlState


class AdamMoments(NamedTuple):
    """The Adam part of one update (flat vectors)."""

    count: jax.Array  # 1-based step t (int32)
    m: jax.Array
    v: jax.Array
    q: jax.Array
    m_hat: jax.Array  # m / (1 - b1^t)
    v_hat: jax.Array  # v / (1 - b2^t)
    direction: jax.Array  # m̂ / (sqrt(v̂) + eps)


def _tensor_statistics(state: AnyState, g: jax.Array, p: jax.Array,
                       adam: AdamMoments, layout: FlatLayout) -> jax.Array:
    """Per tensor ``[0.25 log10(rms(w) + 1e-12), clip(rms(m̂)/rms(sqrt(v̂)), 0, 1), cos(g, m_{t-1}),
    log10(size)/6]``, shape ``(T, 4)``."""
    def rms(x):
        return _sqrt(segment_mean(jnp.square(x), layout))

    snr = rms(adam.m_hat) / (_sqrt(segment_mean(adam.v_hat, layout)) + 1e-30)
    cos = tensor_cosine(g, state.m, layout)
    sizes = jnp.asarray([math.log10(max(s, 1)) / 6.0 for s in layout.sizes], layout.dtype)
    return jnp.stack([0.25 * jnp.log10(rms(p) + 1e-12), jnp.clip(snr, 0.0, 1.0), cos, sizes], axis=1)


def shape_features(layout: FlatLayout) -> jax.Array:
    """Per tensor ``[log10(fan_in)/3, log10(fan_out)/3, ndim ≥ 2]``, shape ``(T, 3)`` (static: read
    from the layout's shapes; see the module docstring for ``fan_in`` and ``fan_out``)."""
    rows = []
    for shape, size in zip(layout.shapes, layout.sizes):
        matrix = len(shape) >= 2
        fan_out = int(shape[-1]) if matrix else max(int(size), 1)
        fan_in = max(int(size) // max(fan_out, 1), 1) if matrix else 1
        rows.append([math.log10(fan_in) / 3.0, math.log10(max(fan_out, 1)) / 3.0, 1.0 if matrix else 0.0])
    return jnp.asarray(rows, layout.dtype).reshape(len(rows), NUM_SHAPE_FEATURES)


def _row_features(d: jax.Array, m_hat: jax.Array, q: jax.Array, g: jax.Array, p: jax.Array,
                  inv: jax.Array) -> jax.Array:
    """Correction-network rows ``[d, m̂/sqrt(v̂), q/sqrt(v̂), g/sqrt(v̂), w]`` (``inv = 1/(sqrt(v̂)+eps)``)."""
    return jnp.stack([d, m_hat * inv, q * inv, g * inv, p], axis=1)


def _with_zero_context_rows(theta: Theta, at: int, n: int) -> dict:
    """``theta`` with ``n`` zero input rows inserted at context column ``at`` of the first layer of
    both networks (the correction network's rows start after its row features)."""
    grown = dict(theta)
    for name, offset in (("t_w0", 0), ("r_w0", NUM_ROW_FEATURES)):
        if name in theta:
            w = jnp.asarray(theta[name])
            zeros = jnp.zeros((n, w.shape[1]), w.dtype)
            grown[name] = jnp.concatenate([w[:offset + at], zeros, w[offset + at:]], axis=0)
    return grown


def _sub_theta(theta: Theta, prefix: str) -> dict:
    """The θ entries of one network, without their ``prefix``."""
    return {k[len(prefix):]: v for k, v in theta.items() if k.startswith(prefix)}


@dataclasses.dataclass(frozen=True)
class ScheduledAdamLOpt(PerParameterLOpt):
    """Adam with a learned per-tensor step-size schedule and per-parameter correction.

    Args:
      learning_rate: ``lr0``, the Adam learning rate at the initial θ.
      b1, b2, eps: Adam's decays and epsilon; ``b3``: decay of the slow momentum feature.
      tensor_hidden: hidden widths of the per-tensor step-size network ``f_θ``.
      row_hidden: hidden widths of the per-parameter correction network ``h_θ`` (empty: no
        correction, ``r = 0``).
      max_log_step: ``S``, bound of the learned log step change (``exp(±S)`` around ``lr0``).
      max_correction: ``C``, bound of the per-parameter correction ``|r_i|`` (``None``: unbounded).
      timescales: time scales ``τ`` of the ``tanh(t/τ)`` features.
      row_chunk: rows per chunk of the correction network (a speed knob only).
      trust_features: add the trust-ratio features (actual ÷ predicted decrease) to the context.
      step_controller: add the per-tensor log-step accumulator (needs ``trust_features``).
      max_step_change: ``K``, bound of the accumulator's change per step (``exp(±K)`` in the step).
      hypergradient_gain: ``κ``, gain of the accumulator's nominal increment ``κ · cos(g, m_{t-1})``
        (0: the increment is learned only; > 0 needs ``step_controller``).
      shape_features: add the tensor's fan-in, fan-out and a matrix flag to the context.
      nominal_increment: the nominal increment's signal: ``"cosine"`` (``κ cos(g, m_{t-1})``) or
        ``"cosine_trust"`` (``κ min(cos, ρ̄)``, ``ρ̄`` the trust-ratio average: no growth on a
        plateau, shrink while the loss rises; see :func:`learned_opt.feature_math.accumulate_log_step`);
        anything but ``"cosine"`` needs ``hypergradient_gain > 0``.
      max_accumulator: upper bound of the accumulator ``a_j`` (``None``: ``S``; the lower bound stays
        ``-S``): caps how far the controller can grow a step above the memoryless schedule,
        ``exp(max_accumulator)``, without changing anything below the cap.
      nominal_schedule: the hand-designed factor ``c(t)`` of the step: ``"constant"`` (1) or
        ``"cosine"`` (cosine decay over the horizon to ``nominal_schedule_floor · lr0``; 1 when the
        horizon is not known).
      nominal_schedule_floor: ``α`` in ``[0, 1)``, the cosine's final factor.
      backtrack: wrap the optimizer in :func:`learned_opt.backtracking.backtrack_on_spike` (undo a
        step whose loss spikes above the start, then take smaller steps); identical until a spike.
    """

    name = "scheduled_adam"
    #: ``opt_fn`` accepts a traced integer ``num_steps`` (meta-training tells each trajectory its length)
    traced_horizon = True
    extra_args = ("loss",)

    learning_rate: float = 3e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    b3: float = 0.99
    tensor_hidden: tuple[int, ...] = (32, 32)
    row_hidden: tuple[int, ...] = (8,)
    max_log_step: float = 6.0
    max_correction: float | None = None
    timescales: tuple[float, ...] = DEFAULT_TIMESCALES
    row_chunk: int = DEFAULT_ROW_CHUNK
    trust_features: bool = False
    step_controller: bool = False
    max_step_change: float = 0.25
    hypergradient_gain: float = 0.0
    shape_features: bool = False
    nominal_increment: str = "cosine"
    max_accumulator: float | None = None
    nominal_schedule: str = "constant"
    nominal_schedule_floor: float = 0.0
    backtrack: bool = False

    def __post_init__(self) -> None:
        b1, b2, b3 = check_floats_in("b1, b2, b3", [self.b1, self.b2, self.b3], 0.0, 1.0)
        row_hidden = tuple(int(h) for h in self.row_hidden)  # may be empty (no correction network)
        if any(h < 1 for h in row_hidden):
            raise ValueError(f"row_hidden entries must be >= 1, got {row_hidden}")
        self._set(learning_rate=check_positive("learning_rate", self.learning_rate), b1=b1, b2=b2, b3=b3,
                  eps=check_positive("eps", self.eps),
                  tensor_hidden=check_positive_ints("tensor_hidden", self.tensor_hidden), row_hidden=row_hidden,
                  max_log_step=check_positive("max_log_step", self.max_log_step),
                  max_correction=(None if self.max_correction is None
                                  else check_positive("max_correction", self.max_correction)),
                  timescales=tuple(check_positive("timescales entry", s) for s in self.timescales),
                  row_chunk=check_positive_ints("row_chunk", [self.row_chunk])[0],
                  trust_features=check_bool("trust_features", self.trust_features),
                  step_controller=check_bool("step_controller", self.step_controller),
                  max_step_change=check_positive("max_step_change", self.max_step_change),
                  hypergradient_gain=check_nonnegative("hypergradient_gain", self.hypergradient_gain),
                  shape_features=check_bool("shape_features", self.shape_features),
                  backtrack=check_bool("backtrack", self.backtrack))
        if self.step_controller and not self.trust_features:
            raise ValueError("step_controller=True needs trust_features=True (the controller reads the trust ratio)")
        if self.hypergradient_gain > 0 and not self.step_controller:
            raise ValueError(f"hypergradient_gain={self.hypergradient_gain!r} needs step_controller=True "
                             "(the nominal increment drives the controller's accumulator)")
        if self.max_accumulator is not None:
            cap = check_positive("max_accumulator", self.max_accumulator)
            if not self.step_controller:
                raise ValueError(f"max_accumulator={cap!r} needs step_controller=True (it bounds the accumulator)")
            if cap > self.max_log_step:
                raise ValueError(f"max_accumulator={cap!r} must be <= max_log_step={self.max_log_step!r}")
            self._set(max_accumulator=cap)
        if self.nominal_schedule not in NOMINAL_SCHEDULES:
            raise ValueError(f"nominal_schedule must be one of {NOMINAL_SCHEDULES}, got {self.nominal_schedule!r}")
        floor = check_floats_in("nominal_schedule_floor", [self.nominal_schedule_floor], 0.0, 1.0)[0]
        self._set(nominal_schedule_floor=floor)
        if self.nominal_increment not in NOMINAL_INCREMENTS:
            raise ValueError(f"nominal_increment must be one of {NOMINAL_INCREMENTS}, got {self.nominal_increment!r}")
        if self.nominal_increment != "cosine" and self.hypergradient_gain == 0:
            raise ValueError(f"nominal_increment={self.nominal_increment!r} needs hypergradient_gain > 0 "
                             "(with gain 0 there is no nominal increment for it to change)")

    @property
    def num_context(self) -> int:
        trust = NUM_TRUST_FEATURES if self.trust_features else 0
        control = 1 if self.step_controller else 0
        shape = NUM_SHAPE_FEATURES if self.shape_features else 0
        return num_time_features(self.timescales) + len(LOSS_DECAYS) + 1 + NUM_TENSOR_STATS + trust + control + shape

    @property
    def _trust_column(self) -> int:
        """Context column after the time and loss features: that of ``tanh ρ`` (``ρ̄`` follows it)
        with ``trust_features``, where the trust (or else the shape) features are inserted."""
        return num_time_features(self.timescales) + len(LOSS_DECAYS) + 1

    @property
    def num_tensor_outputs(self) -> int:
        """Outputs of the per-tensor network: the log step (and the accumulator's increment)."""
        return 2 if self.step_controller else 1

    def opt_fn(self, theta: Theta, num_steps: int | jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        """The optax optimizer with meta-parameters ``theta`` (wrapped in
        :func:`~learned_opt.backtracking.backtrack_on_spike` with ``backtrack=True``)."""
        opt = super().opt_fn(theta, num_steps)
        return backtrack_on_spike(opt) if self.backtrack else opt

    def init(self, key: jax.Array) -> Theta:
        k_t, k_r = jax.random.split(key)
        theta = mlp_init(k_t, (self.num_context,) + self.tensor_hidden + (self.num_tensor_outputs,), last_scale=0.0,
                         prefix="t_")
        if self.row_hidden:
            # rows see [row features, context]: the context enters through the first layer's bias
            theta.update(mlp_init(k_r, (NUM_ROW_FEATURES + self.num_context,) + self.row_hidden + (1,),
                                  last_scale=0.0, prefix="r_"))
        return theta

    # ------------------------------------------------------------------------------ update
    def init_state(self, layout: FlatLayout) -> AnyState:
        z = jnp.zeros((layout.padded,), layout.dtype)
        base = (jnp.zeros([], jnp.int32), z, jnp.zeros_like(z), jnp.zeros_like(z),
                init_loss_stats(len(LOSS_DECAYS), layout.dtype))
        if self.step_controller:
            zero = jnp.zeros([], layout.dtype)
            return ScheduledAdamControlState(*base, prev_loss=zero, predicted=zero, rho_ema=zero,
                                             log_step_acc=jnp.zeros((layout.num_tensors,), layout.dtype))
        if self.trust_features:
            zero = jnp.zeros([], layout.dtype)
            return ScheduledAdamTrustState(*base, prev_loss=zero, predicted=zero, rho_ema=zero)
        return ScheduledAdamState(*base)

    def _adam(self, state: AnyState, g: jax.Array, dtype: Any) -> AdamMoments:
        """Adam's moments, bias corrections and direction (plus the slow momentum ``q``)."""
        b1, b2, b3 = self.b1, self.b2, self.b3
        m = b1 * state.m + (1 - b1) * g
        v = b2 * state.v + (1 - b2) * jnp.square(g)
        q = b3 * state.q + (1 - b3) * g
        count = next_count(state.count)
        t = count.astype(dtype)
        m_hat = m / (1 - jnp.asarray(b1, dtype) ** t)
        v_hat = v / (1 - jnp.asarray(b2, dtype) ** t)
        return AdamMoments(count, m, v, q, m_hat, v_hat, m_hat / (_sqrt(v_hat) + self.eps))

    def _context(self, state: AnyState, inputs: StepInputs,
                 stats: jax.Array, trust: jax.Array | None) -> jax.Array:
        """Per-tensor context ``(T, C)``: time, loss (and trust) features, (the shape features,) the
        tensor statistics ``stats`` (:func:`_tensor_statistics`) (and the accumulator)."""
        layout, loss, dt = inputs.layout, inputs.extra["loss"], inputs.layout.dtype
        tf = time_features(state.count, inputs.num_steps, self.timescales, dt)
        lf = loss_features(state.loss_stats, loss) if loss is not None else jnp.zeros(len(LOSS_DECAYS) + 1, dt)
        glob = jnp.concatenate([tf, lf.astype(dt)] + ([] if trust is None else [trust]))
        shared = jnp.broadcast_to(glob, (layout.num_tensors, glob.shape[0]))
        columns = [shared] + ([shape_features(layout)] if self.shape_features else []) + [stats]
        if self.step_controller:
            columns.append((state.log_step_acc / self.max_log_step)[:, None])  # type: ignore[union-attr]
        return jnp.concatenate(columns, axis=1)

    def _correction(self, theta: Theta, inputs: StepInputs, adam: AdamMoments, ctx: jax.Array) -> jax.Array:
        """``r_i = C tanh(h_θ(x_i)/C)`` (unbounded without ``C``), the context through the first layer."""
        rtheta = _sub_theta(theta, "r_")
        inv = 1.0 / (_sqrt(adam.v_hat) + self.eps)
        rows = (adam.direction, adam.m_hat, adam.q, inputs.g, inputs.p, inv)
        r = self.row_network(rtheta, rows, inputs.layout, len(self.row_hidden) + 1, _row_features,
                             tensor_inputs=ctx)[:, 0]
        if self.max_correction is not None:
            r = self.max_correction * jnp.tanh(r / self.max_correction)
        return r

    def step(self, theta: Theta, inputs: StepInputs,
             state: AnyState) -> tuple[jax.Array, Any]:
        """``u = -lr0 · exp(s_j) · (d_i + r_i)`` and the new state (see the module docstring)."""
        layout, loss, g = inputs.layout, inputs.extra["loss"], inputs.g
        adam = self._adam(state, g, layout.dtype)
        trust = trust_features(state, loss, layout.dtype) if self.trust_features else None  # type: ignore[arg-type]
        stats = _tensor_statistics(state, g, inputs.p, adam, layout)
        ctx = self._context(state, inputs, stats, None if trust is None else trust[0])
        out = mlp_apply(_sub_theta(theta, "t_"), ctx, len(self.tensor_hidden) + 1)
        raw, acc = out[:, 0], None
        if self.step_controller:
            acc = self._accumulate(state.log_step_acc, out[:, 1], stats[:, _COS_COLUMN],  # type: ignore[union-attr]
                                   trust[0][1])  # type: ignore[index]
            raw = raw + acc
        log_step = self.max_log_step * jnp.tanh(raw / self.max_log_step)
        direction = adam.direction + self._correction(theta, inputs, adam, ctx) if self.row_hidden else adam.direction
        lr = self.learning_rate * self._nominal_factor(state.count, inputs.num_steps, layout.dtype) * jnp.exp(
            segment_broadcast(log_step, layout))
        u = (-lr * direction).astype(layout.dtype)
        stats = (state.loss_stats if loss is None
                 else update_loss_stats(state.loss_stats, loss, jnp.asarray(LOSS_DECAYS, jnp.float32)))
        if trust is not None:
            prev_loss = state.prev_loss if loss is None else jnp.asarray(loss, layout.dtype)  # type: ignore[union-attr]
            trust_state = (adam.count, adam.m, adam.v, adam.q, stats, prev_loss, jnp.sum(g * u), trust[1])
            if acc is not None:
                return u, ScheduledAdamControlState(*trust_state, log_step_acc=acc)
            return u, ScheduledAdamTrustState(*trust_state)
        return u, ScheduledAdamState(adam.count, adam.m, adam.v, adam.q, stats)

    def _nominal_factor(self, count: jax.Array, num_steps: int | jax.Array | None, dtype: Any) -> jax.Array | float:
        """``c(t)`` of the module docstring at the update after ``count`` updates (1 for
        ``"constant"`` or without a horizon)."""
        if self.nominal_schedule == "constant" or num_steps is None:
            return 1.0
        frac = horizon_fraction(count, num_steps, dtype)
        floor = self.nominal_schedule_floor
        return floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

    def _accumulate(self, acc: jax.Array, increment_raw: jax.Array, cos: jax.Array,
                    trust_average: jax.Array) -> jax.Array:
        """:func:`learned_opt.feature_math.accumulate_log_step` with this optimizer's ``K``, ``S``, ``κ``
        and nominal signal (``trust_average`` ``ρ̄`` is used by ``"cosine_trust"`` only), capped above at
        ``max_accumulator``."""
        acc = accumulate_log_step(acc, increment_raw, cos, self.max_step_change, self.max_log_step,
                                  self.hypergradient_gain,
                                  trust_average if self.nominal_increment == "cosine_trust" else None)
        return acc if self.max_accumulator is None else jnp.minimum(acc, self.max_accumulator).astype(acc.dtype)

    def with_trust_features(self, theta: Theta) -> tuple[ScheduledAdamLOpt, Theta]:
        """This optimizer with ``trust_features=True`` and ``theta`` grown to match: zero input
        rows for the trust features (which enter the context between the loss features and the
        tensor statistics) in the first layer of both networks. The grown optimizer makes exactly
        the updates of this one at ``theta`` until meta-training moves the new rows — a warm start
        for meta-training the trust features from a trained θ."""
        if self.trust_features:
            raise ValueError("trust_features is already on")
        self.check_theta(theta)
        return (dataclasses.replace(self, trust_features=True),
                _with_zero_context_rows(theta, self._trust_column, NUM_TRUST_FEATURES))

    def with_step_controller(self, theta: Theta) -> tuple[ScheduledAdamLOpt, Theta]:
        """This optimizer with ``step_controller=True`` and ``theta`` grown to match: a zero input
        row for the accumulator (the last context column) in the first layer of both networks and
        a zero output column (the increment) in the per-tensor network's last layer. The grown
        optimizer makes exactly this one's updates at ``theta`` (the accumulator stays 0) until
        meta-training moves the new weights. Needs ``trust_features``
        (see :meth:`with_trust_features`)."""
        if self.step_controller:
            raise ValueError("step_controller is already on")
        if not self.trust_features:
            raise ValueError("step_controller needs trust_features=True: call with_trust_features first")
        self.check_theta(theta)
        grown = dict(theta)
        for name in ("t_w0", "r_w0"):
            if name in theta:
                w = jnp.asarray(theta[name])
                grown[name] = jnp.concatenate([w, jnp.zeros((1, w.shape[1]), w.dtype)], axis=0)
        last = len(self.tensor_hidden)
        w, b = jnp.asarray(theta[f"t_w{last}"]), jnp.asarray(theta[f"t_b{last}"])
        grown[f"t_w{last}"] = jnp.concatenate([w, jnp.zeros((w.shape[0], 1), w.dtype)], axis=1)
        grown[f"t_b{last}"] = jnp.concatenate([b, jnp.zeros((1,), b.dtype)])
        return dataclasses.replace(self, step_controller=True), grown

    def with_shape_features(self, theta: Theta) -> tuple[ScheduledAdamLOpt, Theta]:
        """This optimizer with ``shape_features=True`` and ``theta`` grown to match: zero input rows
        for the shape features (which enter the context after the loss and trust features) in the
        first layer of both networks. The grown optimizer makes exactly the updates of this one at
        ``theta`` until meta-training moves the new rows — a warm start for meta-training the
        shape features from a trained θ."""
        if self.shape_features:
            raise ValueError("shape_features is already on")
        self.check_theta(theta)
        at = self._trust_column + (NUM_TRUST_FEATURES if self.trust_features else 0)
        return dataclasses.replace(self, shape_features=True), _with_zero_context_rows(theta, at, NUM_SHAPE_FEATURES)

    def step_sizes(self, theta: Theta, context: Any) -> jax.Array:
        """``lr0 · exp(s)`` for a batch of per-tensor contexts ``(…, C)`` (for inspection). With the
        step controller the accumulator is read from the context's last column (``a/S``, before
        this step's increment); the nominal factor ``c(t)`` is not included."""
        context = jnp.asarray(context, jnp.float32)
        out = mlp_apply(_sub_theta(theta, "t_"), context, len(self.tensor_hidden) + 1)
        raw = out[..., 0]
        if self.step_controller:
            cos = context[..., self.num_context - 1 - NUM_TENSOR_STATS + _COS_COLUMN]
            trust_average = context[..., self._trust_column + 1]
            raw = raw + self._accumulate(self.max_log_step * context[..., -1], out[..., 1], cos, trust_average)
        return self.learning_rate * jnp.exp(self.max_log_step * jnp.tanh(raw / self.max_log_step))
