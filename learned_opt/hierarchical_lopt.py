"""Hierarchical learned optimizer (in the spirit of Metz et al. 2020, "Tasks, stability,
architecture, and compute: training more effective learned optimizers").

Two levels:

1. **Per tensor** — a GRU cell with hidden state ``h_t`` (size H, default 16) for each parameter
   tensor ``t``. Its input at every step is the concatenation of

   * tensor statistics, for each signal ``x`` in ``[g, m_1..m_K, w]`` (gradient, momenta at decays
     0.5, 0.9, 0.99, 0.999, the parameter): ``mean(x)/rms(x)``, ``0.05·log(mean(x²))`` and
     ``0.05·log(var(x) + 1e-6·mean(x²))`` (centered variance with a relative floor, so an
     all-equal tensor gives the same value eagerly, under ``jit`` and under ``vmap``; see
     :func:`learned_opt.flat_layout.segment_variance`) (all floored so they are finite for
     empty/zero tensors);
     shape features ``log(1+numel)/10`` and ``ndim/4``; and ``0.05·log(‖g‖²/‖w‖²)``;
   * the step's time features (:func:`learned_opt.feature_math.time_features`);
   * training-loss features (:func:`learned_opt.feature_math.loss_features`: the loss relative to its
     running means at decays 0.5, 0.9, 0.99 in units of its running standard deviation, and
     relative to the first loss, squashed by tanh; zero when no ``loss=`` is passed);
   * a global context: the mean over tensors of the previous hidden states ``mean_t h_t``;
   * validation-loss features, the same four numbers for the extra argument ``valid_loss=``
     (zero when it is not passed), through their own weight block ``theta["gru_wv"]``, which
     starts at zero (the validation pathway is switched off until meta-training turns it on; with
     ``gru_wv = 0`` the updates are identical with and without ``valid_loss``);
   * with ``trust_features=True``, the trust-region signal of
     :class:`~learned_opt.scheduled_adam.ScheduledAdamLOpt`
     (:func:`learned_opt.feature_math.trust_ratio_features`: ``tanh ρ`` of the actual over the
     first-order predicted loss change of the previous update, and its moving average), through
     their own weight block ``theta["gru_wt"]``, which starts at zero (so
     :meth:`HierarchicalLOpt.with_trust_features` grows a trained θ without changing its updates).

   The GRU is ``z = σ(x W_z + h U_z + b_z)``, ``r = σ(x W_r + h U_r + b_r)``,
   ``n = tanh(x W_n + (r ⊙ h) U_n + b_n)``, ``h' = (1 - z) ⊙ n + z ⊙ h``.

2. **Per parameter** — an MLP (default hidden widths 16, 16) over the per-parameter features of
   :class:`~learned_opt.mlp_lopt.MLPLOpt` (``w, g, m_k, sqrt(v), g/sqrt(v), m_k/sqrt(v)``, each
   RMS-normalized per tensor), whose first layer gets the tensor's conditioning vector
   ``c_t = h'_t C + b_c`` as an extra bias. Outputs a direction ``d`` and log-magnitude ``s``;
   the update is ``u = d · exp(α s) · β · exp(γ σ_t)`` with the per-tensor log step scale
   ``σ_t = h'_t w_σ + b_σ`` (``α = β = 0.001``, ``γ = 0.1``; ``w_σ``, ``b_σ`` start at zero).

**Nominal-Adam output** (``output="nominal_adam"``, the parameterization of
:class:`~learned_opt.scheduled_adam.ScheduledAdamLOpt`): the network's first output becomes a
bounded per-parameter correction ``r = C tanh(out_0 / C)`` to Adam's direction and the GRU's
per-tensor scale a bounded log step ``s_t = S tanh(σ_t / S)``::

    u = -lr0 · exp(s_t) · (m̂ / (sqrt(v̂) + eps) + r)

with ``m̂``, ``v̂`` the bias-corrected momentum at decay 0.9 (one of ``momentum_decays``) and
second moment. The last layer of the per-parameter network and ``w_σ``, ``b_σ`` start at zero,
so at its initial θ this variant *is* ``optax.adam(lr0, 0.9, second_moment_decay, eps)``.

**Step controller** (``step_controller=True``; needs the nominal-Adam output and the trust
features), the per-tensor log-step accumulator of
:class:`~learned_opt.scheduled_adam.ScheduledAdamLOpt` read from the GRU: a state ``a_t`` per
tensor (0 at the start) integrates bounded increments, one from a second linear readout of the
GRU state and, with ``hypergradient_gain`` ``κ > 0``, a hand-designed nominal part::

    a_t <- clip(a_t + K tanh((h'_t w_δ + b_δ + κ cos(g, m_prev)_t) / K), -S, S)
    s_t = S tanh((σ_t + a_t) / S)

with ``cos(g, m_prev)_t`` the cosine, over tensor ``t``, between the gradient and the momentum at
decay 0.9 before this step's update, and ``a_t / S`` (before the increment) fed back to the GRU
through its own weight block ``theta["gru_wa"]``. ``w_δ``, ``b_δ`` and ``gru_wa`` start at zero,
so at the initial θ the optimizer is Adam with the nominal controller — the same updates as
``ScheduledAdamLOpt(step_controller=True, hypergradient_gain=κ)`` at its initial θ (tested) —
and :meth:`HierarchicalLOpt.with_step_controller` grows a trained θ without changing its
updates (with ``κ = 0``).

In the default output, no statistic divides by a bias correction ``(1-β^t)``: momenta start at zero, the loss
statistics are initialized with the first loss, and every normalizer has a positive floor, so
steps 0 and 1 are finite for losses of any finite scale. Default meta-parameter count: 4,115.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt.base import Theta
from learned_opt.feature_math import (
    DEFAULT_TIMESCALES,
    NUM_TRUST_FEATURES,
    LossStats,
    accumulate_log_step,
    direction_magnitude_step,
    init_loss_stats,
    loss_features,
    next_count,
    num_time_features,
    param_gradient_features,
    safe_rsqrt,
    tensor_cosine,
    time_features,
    trust_ratio_features,
    update_loss_stats,
    update_moments,
)
from learned_opt.flat_layout import FlatLayout, segment_broadcast, segment_mean, segment_sum, segment_variance
from learned_opt.networks import DEFAULT_ROW_CHUNK, mlp_init
from learned_opt.per_param import PerParameterLOpt, StepInputs
from learned_opt.validation import (
    check_bool,
    check_floats_in,
    check_nonnegative,
    check_positive,
    check_positive_ints,
)

_LOG_FLOOR = 1e-30  # floor inside the log-statistics
OUTPUTS = ("direction_magnitude", "nominal_adam")
ADAM_B1 = 0.9  # the momentum decay the nominal-Adam output uses as Adam's first moment


class HierarchicalLOptState(NamedTuple):
    count: jax.Array  # int32 number of updates done
    momenta: jax.Array  # float32 (N, K)
    second_moment: jax.Array  # float32 (N,)
    rnn: jax.Array  # float32 (T, H): per-tensor GRU hidden states
    train_loss: LossStats  # running statistics of the `loss` extra argument
    valid_loss: LossStats  # running statistics of the `valid_loss` extra argument


class HierarchicalTrustState(NamedTuple):
    """:class:`HierarchicalLOptState` plus the trust-ratio statistics (``trust_features=True``)."""

    count: jax.Array
    momenta: jax.Array
    second_moment: jax.Array
    rnn: jax.Array
    train_loss: LossStats
    valid_loss: LossStats
    prev_loss: jax.Array  # L_{t-1} (0 before the first loss)
    predicted: jax.Array  # P = Σ g·u of the previous update
    rho_ema: jax.Array  # moving average of tanh(ρ)


class HierarchicalControlState(NamedTuple):
    """:class:`HierarchicalTrustState` plus the per-tensor log-step accumulator
    (``step_controller=True``)."""

    count: jax.Array
    momenta: jax.Array
    second_moment: jax.Array
    rnn: jax.Array
    train_loss: LossStats
    valid_loss: LossStats
    prev_loss: jax.Array
    predicted: jax.Array
    rho_ema: jax.Array
    log_step_acc: jax.Array  # (T,) a_t, |a_t| <= S


AnyHierarchicalState = HierarchicalLOptState | HierarchicalTrustState | HierarchicalControlState


def tensor_statistics(signals: jax.Array, g: jax.Array, p: jax.Array, layout: FlatLayout) -> jax.Array:
    """Per-tensor input features ``(T, 3S + 3)`` from ``signals`` ``(N, S)`` (see module docstring)."""
    mean = segment_mean(signals, layout)
    ms = segment_mean(jnp.square(signals), layout)
    # centered variance with a relative floor (flat_layout.segment_variance): the one-pass
    # ``ms - mean²`` of an all-equal tensor is pure rounding noise that jit/eager/vmap round
    # differently, and ``log`` of it amplified that into a different update.
    var = segment_variance(signals, layout, mean, ms)
    stats = [mean * safe_rsqrt(ms, _LOG_FLOOR),
             0.05 * jnp.log(ms + _LOG_FLOOR),
             0.05 * jnp.log(var + _LOG_FLOOR)]
    sizes = np.asarray(layout.sizes, np.float32)
    ndims = np.asarray([len(s) for s in layout.shapes], np.float32)
    shape = jnp.asarray(np.stack([np.log1p(sizes) / 10.0, ndims / 4.0], axis=1))
    sq = segment_sum(jnp.stack([jnp.square(g), jnp.square(p)], axis=1), layout)
    ratio = 0.05 * (jnp.log(sq[:, 0] + _LOG_FLOOR) - jnp.log(sq[:, 1] + _LOG_FLOOR))
    return jnp.concatenate(stats + [shape, ratio[:, None]], axis=1)


def _loss_input(stats: LossStats, loss: jax.Array | None, decays: jax.Array, n: int,
                dtype: jnp.dtype) -> tuple[jax.Array, LossStats]:
    """``(features, new_stats)`` of an optional scalar loss (zeros and unchanged stats without one)."""
    if loss is None:
        return jnp.zeros((n,), dtype), stats
    return loss_features(stats, loss), update_loss_stats(stats, loss, decays)


def _controller_theta(rnn_size: int) -> dict:
    """The step controller's meta-parameters, all zero: the increment readout ``inc_w`` (H,),
    ``inc_b`` () and the accumulator's GRU input block ``gru_wa`` (1, 3H)."""
    return {"inc_w": jnp.zeros((rnn_size,), jnp.float32), "inc_b": jnp.zeros((), jnp.float32),
            "gru_wa": jnp.zeros((1, 3 * rnn_size), jnp.float32)}


def gru_cell(theta: dict, x: jax.Array, h: jax.Array, xv: jax.Array, xt: jax.Array | None = None,
             xa: jax.Array | None = None) -> jax.Array:
    """One GRU step for all tensors: ``x`` (T, I), ``h`` (T, H), ``xv`` (T, V) validation features,
    ``xt`` (T, 2) trust features (through ``theta["gru_wt"]``; only with ``trust_features``),
    ``xa`` (T, 1) the scaled accumulator (through ``theta["gru_wa"]``; only with ``step_controller``)."""
    hs = h.shape[-1]
    gx = x @ theta["gru_wx"] + xv @ theta["gru_wv"] + theta["gru_b"]
    if xt is not None:
        gx = gx + xt @ theta["gru_wt"]
    if xa is not None:
        gx = gx + xa @ theta["gru_wa"]
    gh = h @ theta["gru_wh"][:, : 2 * hs]
    z = jax.nn.sigmoid(gx[:, :hs] + gh[:, :hs])
    r = jax.nn.sigmoid(gx[:, hs:2 * hs] + gh[:, hs:])
    n = jnp.tanh(gx[:, 2 * hs:] + (r * h) @ theta["gru_wh"][:, 2 * hs:])
    return (1.0 - z) * n + z * h


@dataclasses.dataclass(frozen=True)
class HierarchicalLOpt(PerParameterLOpt):
    """Per-tensor GRU + per-parameter MLP learned optimizer; see the module docstring.

    Args:
      rnn_size: GRU hidden size H.
      hidden_sizes: hidden widths of the per-parameter MLP.
      momentum_decays: decays of the gradient momenta.
      second_moment_decay: decay of the squared-gradient accumulator.
      loss_decays: decays of the running loss means/variances.
      timescales: time scales of the ``tanh(t/s)`` step features.
      exp_mult, step_mult, tensor_scale_mult: ``α``, ``β``, ``γ`` of the update formula.
      rsqrt_eps: floor of ``v`` in ``1/sqrt(v)``.
      row_chunk: rows per chunk of the per-parameter network (a speed knob; results do not
        depend on it beyond float rounding).
      output: ``"direction_magnitude"`` (the update formula above) or ``"nominal_adam"`` (Adam's
        direction with a learned per-tensor log step and per-parameter correction).
      learning_rate, eps, max_log_step, max_correction: ``lr0``, Adam's ``eps``, ``S`` and ``C``
        of the nominal-Adam output (unused otherwise).
      trust_features: feed the trust-ratio features (actual ÷ predicted loss change of the last
        step) to the GRU; needs the ``loss=`` extra argument to be informative (zeros without it).
      step_controller: add the per-tensor log-step accumulator (needs ``output="nominal_adam"``
        and ``trust_features``).
      max_step_change: ``K``, bound of the accumulator's change per step.
      hypergradient_gain: ``κ``, gain of the accumulator's nominal increment ``κ · cos(g, m_prev)``
        (0: learned increment only; > 0 needs ``step_controller``).
    """

    name = "hierarchical"
    #: ``opt_fn`` accepts a traced integer ``num_steps`` (meta-training tells each trajectory its length)
    traced_horizon = True
    extra_args = ("loss", "valid_loss")

    rnn_size: int = 16
    hidden_sizes: tuple[int, ...] = (16, 16)
    momentum_decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    second_moment_decay: float = 0.999
    loss_decays: tuple[float, ...] = (0.5, 0.9, 0.99)
    timescales: tuple[float, ...] = DEFAULT_TIMESCALES
    exp_mult: float = 0.001
    step_mult: float = 0.001
    tensor_scale_mult: float = 0.1
    rsqrt_eps: float = 1e-24
    row_chunk: int = DEFAULT_ROW_CHUNK
    output: str = "direction_magnitude"
    learning_rate: float = 0.01
    eps: float = 1e-8
    max_log_step: float = 6.0
    max_correction: float = 1.0
    trust_features: bool = False
    step_controller: bool = False
    max_step_change: float = 0.25
    hypergradient_gain: float = 0.0

    def __post_init__(self) -> None:
        momentum_decays = check_floats_in("momentum_decays", self.momentum_decays, 0.0, 1.0)
        if not momentum_decays:
            raise ValueError("momentum_decays must not be empty")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        self._set(rnn_size=check_positive_ints("rnn_size", [self.rnn_size])[0],
                  hidden_sizes=check_positive_ints("hidden_sizes", self.hidden_sizes),
                  momentum_decays=momentum_decays,
                  second_moment_decay=check_floats_in("second_moment_decay", [self.second_moment_decay], 0.0, 1.0)[0],
                  loss_decays=check_floats_in("loss_decays", self.loss_decays, 0.0, 1.0),
                  timescales=tuple(check_positive("timescales entry", s) for s in self.timescales),
                  **{k: check_positive(k, getattr(self, k)) for k in (
                      "exp_mult", "step_mult", "tensor_scale_mult", "rsqrt_eps", "learning_rate", "eps",
                      "max_log_step", "max_correction")},
                  row_chunk=check_positive_ints("row_chunk", [self.row_chunk])[0],
                  trust_features=check_bool("trust_features", self.trust_features),
                  step_controller=check_bool("step_controller", self.step_controller),
                  max_step_change=check_positive("max_step_change", self.max_step_change),
                  hypergradient_gain=check_nonnegative("hypergradient_gain", self.hypergradient_gain))
        if self.step_controller and (self.output != "nominal_adam" or not self.trust_features):
            raise ValueError("step_controller=True needs output='nominal_adam' and trust_features=True, "
                             f"got output={self.output!r}, trust_features={self.trust_features!r}")
        if self.hypergradient_gain > 0 and not self.step_controller:
            raise ValueError(f"hypergradient_gain={self.hypergradient_gain!r} needs step_controller=True "
                             "(the nominal increment drives the controller's accumulator)")
        if self.output == "nominal_adam" and ADAM_B1 not in self.momentum_decays:
            raise ValueError(f"output='nominal_adam' needs {ADAM_B1} among momentum_decays "
                             f"(Adam's first moment), got {list(self.momentum_decays)}")

    # ---------------------------------------------------------------------------- sizes
    @property
    def num_param_features(self) -> int:
        return 1 + 2 * len(self.momentum_decays) + 3

    @property
    def num_loss_features(self) -> int:
        return len(self.loss_decays) + 1

    @property
    def num_rnn_inputs(self) -> int:
        """GRU input size without the validation features."""
        signals = len(self.momentum_decays) + 2
        return (3 * signals + 3) + num_time_features(self.timescales) + self.num_loss_features + self.rnn_size

    def init(self, key: jax.Array) -> Theta:
        k_mlp, k_x, k_h, k_c = jax.random.split(key, 4)
        hs, n_in = self.rnn_size, self.num_rnn_inputs
        last_scale = 0.0 if self.output == "nominal_adam" else 1.0  # nominal: starts as Adam
        theta = mlp_init(k_mlp, (self.num_param_features,) + self.hidden_sizes + (2,), last_scale=last_scale)
        theta["gru_wx"] = jax.random.normal(k_x, (n_in, 3 * hs), jnp.float32) / math.sqrt(n_in)
        theta["gru_wv"] = jnp.zeros((self.num_loss_features, 3 * hs), jnp.float32)
        if self.trust_features:
            theta["gru_wt"] = jnp.zeros((NUM_TRUST_FEATURES, 3 * hs), jnp.float32)
        theta["gru_wh"] = jax.random.normal(k_h, (hs, 3 * hs), jnp.float32) / math.sqrt(hs)
        theta["gru_b"] = jnp.zeros((3 * hs,), jnp.float32)
        theta["cond_w"] = jax.random.normal(k_c, (hs, self.hidden_sizes[0]), jnp.float32) / math.sqrt(hs)
        theta["cond_b"] = jnp.zeros((self.hidden_sizes[0],), jnp.float32)
        theta["scale_w"] = jnp.zeros((hs,), jnp.float32)
        theta["scale_b"] = jnp.zeros((), jnp.float32)
        if self.step_controller:
            theta.update(_controller_theta(hs))
        return theta

    # ---------------------------------------------------------------------------- update
    def init_state(self, layout: FlatLayout) -> AnyHierarchicalState:
        n, k = layout.padded, len(self.momentum_decays)
        base = HierarchicalLOptState(
            count=jnp.zeros([], jnp.int32), momenta=jnp.zeros((n, k), layout.dtype),
            second_moment=jnp.zeros((n,), layout.dtype),
            rnn=jnp.zeros((layout.num_tensors, self.rnn_size), layout.dtype),
            train_loss=init_loss_stats(len(self.loss_decays), layout.dtype),
            valid_loss=init_loss_stats(len(self.loss_decays), layout.dtype))
        if not self.trust_features:
            return base
        # distinct buffers, so the state can be donated to a jitted step
        zeros = [jnp.zeros([], layout.dtype) for _ in range(3)]
        if self.step_controller:
            return HierarchicalControlState(*base, prev_loss=zeros[0], predicted=zeros[1], rho_ema=zeros[2],
                                            log_step_acc=jnp.zeros((layout.num_tensors,), layout.dtype))
        return HierarchicalTrustState(*base, *zeros)

    def step(self, theta: Theta, inputs: StepInputs,
             state: AnyHierarchicalState) -> tuple[jax.Array, AnyHierarchicalState]:
        """The GRU over per-tensor inputs, then the per-parameter MLP conditioned on its state."""
        layout, g, p = inputs.layout, inputs.g, inputs.p
        decays = jnp.asarray(self.momentum_decays, jnp.float32)
        momenta, v = update_moments(state.momenta, state.second_moment, g, decays, self.second_moment_decay)
        trust = None
        if isinstance(state, (HierarchicalTrustState, HierarchicalControlState)):
            trust = trust_ratio_features(state.count, state.prev_loss, state.predicted, state.rho_ema,
                                         inputs.extra["loss"], layout.dtype)
        h, train_stats, valid_stats = self._tensor_level(theta, inputs, state, momenta,
                                                         None if trust is None else trust[0])
        cond = h @ theta["cond_w"] + theta["cond_b"]  # (T, hidden0)
        feats_fn = functools.partial(param_gradient_features, rsqrt_eps=self.rsqrt_eps)
        out = self.row_network(theta, (p, g, momenta, v), layout, len(self.hidden_sizes) + 1, feats_fn,
                               tensor_bias=cond)
        raw_scale = h @ theta["scale_w"] + theta["scale_b"]  # (T,)
        acc = None
        if isinstance(state, HierarchicalControlState):
            m_prev = state.momenta[:, self.momentum_decays.index(ADAM_B1)]
            acc = accumulate_log_step(state.log_step_acc, h @ theta["inc_w"] + theta["inc_b"],
                                      tensor_cosine(g, m_prev, layout), self.max_step_change,
                                      self.max_log_step, self.hypergradient_gain)
            raw_scale = raw_scale + acc
        if self.output == "nominal_adam":
            u = self._nominal_adam_step(out, raw_scale, momenta, v, state.count, layout)
        else:
            u = direction_magnitude_step(out, self.exp_mult, self.step_mult)
            u = u * segment_broadcast(jnp.exp(self.tensor_scale_mult * raw_scale), layout)
        new = HierarchicalLOptState(next_count(state.count), momenta, v, h, train_stats, valid_stats)
        if trust is None:
            return u, new
        loss = inputs.extra["loss"]
        prev_loss = state.prev_loss if loss is None else jnp.asarray(loss, layout.dtype)  # type: ignore[union-attr]
        trusted = dict(prev_loss=prev_loss, predicted=jnp.sum(g * u).astype(layout.dtype), rho_ema=trust[1])
        if acc is not None:
            return u, HierarchicalControlState(*new, **trusted, log_step_acc=acc)
        return u, HierarchicalTrustState(*new, **trusted)

    def with_step_controller(self, theta: Theta) -> tuple[HierarchicalLOpt, Theta]:
        """This optimizer with ``step_controller=True`` and ``theta`` grown to match (zero ``inc_w``,
        ``inc_b`` and ``gru_wa``, so with ``hypergradient_gain`` 0 the grown optimizer makes exactly
        the updates of ``theta``): the warm start for meta-training the controller from a trained θ.
        Needs the nominal-Adam output and the trust features; set ``hypergradient_gain`` on the
        returned optimizer (``dataclasses.replace``) to switch the nominal increment on."""
        if self.step_controller:
            raise ValueError("step_controller is already on")
        if self.output != "nominal_adam" or not self.trust_features:
            raise ValueError("step_controller needs output='nominal_adam' and trust_features=True "
                             "(call with_trust_features first)")
        self.check_theta(theta)
        grown = dict(theta)
        grown.update(_controller_theta(self.rnn_size))
        return dataclasses.replace(self, step_controller=True), grown

    def with_trust_features(self, theta: Theta) -> tuple[HierarchicalLOpt, Theta]:
        """This optimizer with ``trust_features=True`` and ``theta`` grown to match (a zero
        ``gru_wt`` block, so the grown optimizer makes exactly the updates of ``theta``): the warm
        start for meta-training the trust features from a trained θ."""
        if self.trust_features:
            raise ValueError("trust_features is already on")
        grown = dict(theta)
        grown["gru_wt"] = jnp.zeros((NUM_TRUST_FEATURES, 3 * self.rnn_size), jnp.float32)
        return dataclasses.replace(self, trust_features=True), grown

    def _tensor_level(self, theta: Theta, inputs: StepInputs, state: AnyHierarchicalState,
                      momenta: jax.Array, trust: jax.Array | None) -> tuple[jax.Array, LossStats, LossStats]:
        """``(h', train_stats, valid_stats)``: one GRU step on the per-tensor inputs."""
        layout, g, p = inputs.layout, inputs.g, inputs.p
        loss_decays = jnp.asarray(self.loss_decays, jnp.float32)
        n_loss, t = self.num_loss_features, layout.num_tensors
        signals = jnp.concatenate([g[:, None], momenta, p[:, None]], axis=1)
        tstats = tensor_statistics(signals, g, p, layout)
        tf = time_features(state.count, inputs.num_steps, self.timescales, layout.dtype)
        lf, train_stats = _loss_input(state.train_loss, inputs.extra["loss"], loss_decays, n_loss, layout.dtype)
        vf, valid_stats = _loss_input(state.valid_loss, inputs.extra["valid_loss"], loss_decays, n_loss,
                                      layout.dtype)
        context = jnp.sum(state.rnn, axis=0) / max(t, 1)
        glob = jnp.concatenate([tf, lf, context])
        x = jnp.concatenate([tstats, jnp.broadcast_to(glob, (t, glob.shape[0]))], axis=1)
        xt = None if trust is None else jnp.broadcast_to(trust, (t, NUM_TRUST_FEATURES))
        xa = (state.log_step_acc / self.max_log_step)[:, None] if isinstance(state, HierarchicalControlState) else None
        h = gru_cell(theta, x, state.rnn, jnp.broadcast_to(vf, (t, n_loss)), xt, xa)
        return h, train_stats, valid_stats

    def _nominal_adam_step(self, out: jax.Array, raw_scale: jax.Array, momenta: jax.Array, v: jax.Array,
                           count: jax.Array, layout: FlatLayout) -> jax.Array:
        """``-lr0 · exp(S tanh(σ_t/S)) · (m̂/(sqrt(v̂)+eps) + C tanh(out_0/C))`` (flat vector)."""
        t = next_count(count).astype(layout.dtype)
        m = momenta[:, self.momentum_decays.index(ADAM_B1)]
        m_hat = m / (1.0 - jnp.asarray(ADAM_B1, layout.dtype) ** t)
        v_hat = v / (1.0 - jnp.asarray(self.second_moment_decay, layout.dtype) ** t)
        direction = m_hat / (jnp.sqrt(v_hat + 1e-30) + self.eps)
        correction = self.max_correction * jnp.tanh(out[:, 0] / self.max_correction)
        log_step = self.max_log_step * jnp.tanh(raw_scale / self.max_log_step)
        lr = self.learning_rate * jnp.exp(segment_broadcast(log_step, layout))
        return (-lr * (direction + correction)).astype(layout.dtype)
