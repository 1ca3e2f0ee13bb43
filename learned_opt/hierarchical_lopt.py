"""Hierarchical learned optimizer (in the spirit of Metz et al. 2020, "Tasks, stability,
architecture, and compute: training more effective learned optimizers").

Two levels:

1. **Per tensor** — a GRU cell with hidden state ``h_t`` (size H, default 16) for each parameter
   tensor ``t``. Its input at every step is the concatenation of

   * tensor statistics, for each signal ``x`` in ``[g, m_1..m_K, w]`` (gradient, momenta at decays
     0.5, 0.9, 0.99, 0.999, the parameter): ``mean(x)/rms(x)``, ``0.05·log(mean(x²))`` and
     ``0.05·log(var(x) + 1e-6·mean(x²))`` (centered variance with a relative floor, so an
     all-equal tensor gives the same value eagerly, under ``jit`` and under ``vmap``; see
     :func:`learned_opt.features.segment_variance`) (all floored so they are finite for
     empty/zero tensors);
     shape features ``log(1+numel)/10`` and ``ndim/4``; and ``0.05·log(‖g‖²/‖w‖²)``;
   * the step's time features (:func:`learned_opt.features.time_features`);
   * training-loss features (:func:`learned_opt.features.loss_features`: the loss relative to its
     running means at decays 0.5, 0.9, 0.99 in units of its running standard deviation, and
     relative to the first loss, squashed by tanh; zero when no ``loss=`` is passed);
   * a global context: the mean over tensors of the previous hidden states ``mean_t h_t``;
   * validation-loss features, the same four numbers for the extra argument ``valid_loss=``
     (zero when it is not passed), through their own weight block ``theta["gru_wv"]``, which
     starts at zero (the validation pathway is switched off until meta-training turns it on; with
     ``gru_wv = 0`` the updates are identical with and without ``valid_loss``).

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

In the default output, no statistic divides by a bias correction ``(1-β^t)``: momenta start at zero, the loss
statistics are initialized with the first loss, and every normalizer has a positive floor, so
steps 0 and 1 are finite for losses of any finite scale. Default meta-parameter count: 4,115.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt import features as F
from learned_opt.base import LearnedOptimizer, Theta

_LOG_FLOOR = 1e-30  # floor inside the log-statistics
OUTPUTS = ("direction_magnitude", "nominal_adam")
ADAM_B1 = 0.9  # the momentum decay the nominal-Adam output uses as Adam's first moment


class HierarchicalLOptState(NamedTuple):
    count: jax.Array  # int32 number of updates done
    momenta: jax.Array  # float32 (N, K)
    second_moment: jax.Array  # float32 (N,)
    rnn: jax.Array  # float32 (T, H): per-tensor GRU hidden states
    train_loss: F.LossStats  # running statistics of the `loss` extra argument
    valid_loss: F.LossStats  # running statistics of the `valid_loss` extra argument


def tensor_statistics(signals: jax.Array, g: jax.Array, p: jax.Array, layout: F.FlatLayout) -> jax.Array:
    """Per-tensor input features ``(T, 3S + 3)`` from ``signals`` ``(N, S)`` (see module docstring)."""
    mean = F.segment_mean(signals, layout)
    ms = F.segment_mean(jnp.square(signals), layout)
    # centered variance with a relative floor (features.segment_variance): the one-pass
    # ``ms - mean²`` of an all-equal tensor is pure rounding noise that jit/eager/vmap round
    # differently, and ``log`` of it amplified that into a different update.
    var = F.segment_variance(signals, layout, mean, ms)
    stats = [mean * F.safe_rsqrt(ms, _LOG_FLOOR),
             0.05 * jnp.log(ms + _LOG_FLOOR),
             0.05 * jnp.log(var + _LOG_FLOOR)]
    sizes = np.asarray(layout.sizes, np.float32)
    ndims = np.asarray([len(s) for s in layout.shapes], np.float32)
    shape = jnp.asarray(np.stack([np.log1p(sizes) / 10.0, ndims / 4.0], axis=1))
    sq = F.segment_sum(jnp.stack([jnp.square(g), jnp.square(p)], axis=1), layout)
    ratio = 0.05 * (jnp.log(sq[:, 0] + _LOG_FLOOR) - jnp.log(sq[:, 1] + _LOG_FLOOR))
    return jnp.concatenate(stats + [shape, ratio[:, None]], axis=1)


def gru_cell(theta: dict, x: jax.Array, h: jax.Array, xv: jax.Array) -> jax.Array:
    """One GRU step for all tensors: ``x`` (T, I), ``h`` (T, H), ``xv`` (T, V) validation features."""
    hs = h.shape[-1]
    gx = x @ theta["gru_wx"] + xv @ theta["gru_wv"] + theta["gru_b"]
    gh = h @ theta["gru_wh"][:, : 2 * hs]
    z = jax.nn.sigmoid(gx[:, :hs] + gh[:, :hs])
    r = jax.nn.sigmoid(gx[:, hs:2 * hs] + gh[:, hs:])
    n = jnp.tanh(gx[:, 2 * hs:] + (r * h) @ theta["gru_wh"][:, 2 * hs:])
    return (1.0 - z) * n + z * h


class HierarchicalLOpt(LearnedOptimizer):
    """Per-tensor GRU + per-parameter MLP learned optimizer; see the module docstring.

    Args:
      rnn_size: GRU hidden size H.
      hidden_sizes: hidden widths of the per-parameter MLP.
      momentum_decays: decays of the gradient momenta.
      second_moment_decay: decay of the squared-gradient accumulator.
      loss_decays: decays of the running loss means/variances.
      timescales: time scales of the ``tanh(t/s)`` step features.
      row_chunk: rows per chunk of the per-parameter network (a speed knob; results do not
        depend on it beyond float rounding).
      exp_mult, step_mult, tensor_scale_mult: ``α``, ``β``, ``γ`` of the update formula.
      rsqrt_eps: floor of ``v`` in ``1/sqrt(v)``.
      output: ``"direction_magnitude"`` (the update formula above) or ``"nominal_adam"`` (Adam's
        direction with a learned per-tensor log step and per-parameter correction).
      learning_rate, eps, max_log_step, max_correction: ``lr0``, Adam's ``eps``, ``S`` and ``C``
        of the nominal-Adam output (unused otherwise).
    """

    name = "hierarchical"
    #: ``opt_fn`` accepts a traced integer ``num_steps`` (meta-training tells each trajectory its length)
    traced_horizon = True

    def __init__(self, rnn_size: int = 16, hidden_sizes: Sequence[int] = (16, 16),
                 momentum_decays: Sequence[float] = (0.5, 0.9, 0.99, 0.999),
                 second_moment_decay: float = 0.999, loss_decays: Sequence[float] = (0.5, 0.9, 0.99),
                 timescales: Sequence[float] = F.DEFAULT_TIMESCALES, exp_mult: float = 0.001,
                 step_mult: float = 0.001, tensor_scale_mult: float = 0.1, rsqrt_eps: float = 1e-24,
                 row_chunk: int = F.DEFAULT_ROW_CHUNK, output: str = "direction_magnitude",
                 learning_rate: float = 0.01, eps: float = 1e-8, max_log_step: float = 6.0,
                 max_correction: float = 1.0):
        self.rnn_size = F.check_positive_ints("rnn_size", [rnn_size])[0]
        self.hidden_sizes = F.check_positive_ints("hidden_sizes", hidden_sizes)
        self.momentum_decays = F.check_floats_in("momentum_decays", momentum_decays, 0.0, 1.0)
        if not self.momentum_decays:
            raise ValueError("momentum_decays must not be empty")
        self.second_moment_decay = F.check_floats_in("second_moment_decay", [second_moment_decay], 0.0, 1.0)[0]
        self.loss_decays = F.check_floats_in("loss_decays", loss_decays, 0.0, 1.0)
        self.timescales = tuple(F.check_positive("timescales entry", s) for s in timescales)
        self.exp_mult = F.check_positive("exp_mult", exp_mult)
        self.step_mult = F.check_positive("step_mult", step_mult)
        self.row_chunk = F.check_positive_ints("row_chunk", [row_chunk])[0]
        self.tensor_scale_mult = F.check_positive("tensor_scale_mult", tensor_scale_mult)
        self.rsqrt_eps = F.check_positive("rsqrt_eps", rsqrt_eps)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.learning_rate = F.check_positive("learning_rate", learning_rate)
        self.eps = F.check_positive("eps", eps)
        self.max_log_step = F.check_positive("max_log_step", max_log_step)
        self.max_correction = F.check_positive("max_correction", max_correction)
        if output == "nominal_adam" and ADAM_B1 not in self.momentum_decays:
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
        return (3 * signals + 3) + F.num_time_features(self.timescales) + self.num_loss_features + self.rnn_size

    def config(self) -> dict:
        return {"rnn_size": self.rnn_size, "hidden_sizes": list(self.hidden_sizes),
                "momentum_decays": list(self.momentum_decays), "second_moment_decay": self.second_moment_decay,
                "loss_decays": list(self.loss_decays), "timescales": list(self.timescales),
                "exp_mult": self.exp_mult, "step_mult": self.step_mult,
                "tensor_scale_mult": self.tensor_scale_mult, "rsqrt_eps": self.rsqrt_eps, "row_chunk": self.row_chunk,
                "output": self.output, "learning_rate": self.learning_rate, "eps": self.eps,
                "max_log_step": self.max_log_step, "max_correction": self.max_correction}

    def init(self, key: jax.Array) -> Theta:
        k_mlp, k_x, k_h, k_c = jax.random.split(key, 4)
        hs, n_in = self.rnn_size, self.num_rnn_inputs
        last_scale = 0.0 if self.output == "nominal_adam" else 1.0  # nominal: starts as Adam
        theta = F.mlp_init(k_mlp, (self.num_param_features,) + self.hidden_sizes + (2,), last_scale=last_scale)
        theta["gru_wx"] = jax.random.normal(k_x, (n_in, 3 * hs), jnp.float32) / math.sqrt(n_in)
        theta["gru_wv"] = jnp.zeros((self.num_loss_features, 3 * hs), jnp.float32)
        theta["gru_wh"] = jax.random.normal(k_h, (hs, 3 * hs), jnp.float32) / math.sqrt(hs)
        theta["gru_b"] = jnp.zeros((3 * hs,), jnp.float32)
        theta["cond_w"] = jax.random.normal(k_c, (hs, self.hidden_sizes[0]), jnp.float32) / math.sqrt(hs)
        theta["cond_b"] = jnp.zeros((self.hidden_sizes[0],), jnp.float32)
        theta["scale_w"] = jnp.zeros((hs,), jnp.float32)
        theta["scale_b"] = jnp.zeros((), jnp.float32)
        return theta

    # ---------------------------------------------------------------------------- update
    def opt_fn(self, theta: Theta, num_steps: int | jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        owner = type(self).__name__
        num_layers = len(self.hidden_sizes) + 1
        F.check_theta(theta, [f"{k}{i}" for i in range(num_layers) for k in ("w", "b")]
                      + ["gru_wx", "gru_wv", "gru_wh", "gru_b", "cond_w", "cond_b", "scale_w", "scale_b"], owner)
        if tuple(jnp.shape(theta["gru_wx"]))[-2:] != (self.num_rnn_inputs, 3 * self.rnn_size):
            raise ValueError(f"{owner}: theta['gru_wx'] has shape {jnp.shape(theta['gru_wx'])}, expected "
                             f"{(self.num_rnn_inputs, 3 * self.rnn_size)}")
        num_steps = F.check_num_steps(num_steps, owner)
        decays = jnp.asarray(self.momentum_decays, jnp.float32)
        loss_decays = jnp.asarray(self.loss_decays, jnp.float32)
        beta_v = self.second_moment_decay
        n_loss = self.num_loss_features

        def init_fn(params):
            layout = F.layout_of(params, self.row_chunk)
            n, k = layout.padded, len(self.momentum_decays)
            return HierarchicalLOptState(
                count=jnp.zeros([], jnp.int32), momenta=jnp.zeros((n, k), layout.dtype),
                second_moment=jnp.zeros((n,), layout.dtype),
                rnn=jnp.zeros((layout.num_tensors, self.rnn_size), layout.dtype),
                train_loss=F.init_loss_stats(len(self.loss_decays), layout.dtype),
                valid_loss=F.init_loss_stats(len(self.loss_decays), layout.dtype))

        def update_fn(grads, state, params=None, **extra):
            if params is None:
                raise ValueError(f"{owner}.update needs params (the parameter is an input feature)")
            layout = F.layout_of(params, self.row_chunk)
            F.check_same_structure(layout, grads, "grads")
            loss = F.take_loss(extra, "loss", layout.dtype)
            valid_loss = F.take_loss(extra, "valid_loss", layout.dtype)
            g = F.flatten(grads, layout)
            p = F.flatten(params, layout)
            momenta = F.ema(state.momenta, g, decays)
            v = beta_v * state.second_moment + (1.0 - beta_v) * jnp.square(g)

            # ---- per-tensor level
            t = layout.num_tensors
            signals = jnp.concatenate([g[:, None], momenta, p[:, None]], axis=1)
            tstats = tensor_statistics(signals, g, p, layout)
            tf = F.time_features(state.count, num_steps, self.timescales, layout.dtype)
            if loss is None:
                lf, train_stats = jnp.zeros((n_loss,), layout.dtype), state.train_loss
            else:
                lf = F.loss_features(state.train_loss, loss)
                train_stats = F.update_loss_stats(state.train_loss, loss, loss_decays)
            if valid_loss is None:
                vf, valid_stats = jnp.zeros((n_loss,), layout.dtype), state.valid_loss
            else:
                vf = F.loss_features(state.valid_loss, valid_loss)
                valid_stats = F.update_loss_stats(state.valid_loss, valid_loss, loss_decays)
            context = jnp.sum(state.rnn, axis=0) / max(t, 1)
            glob = jnp.concatenate([tf, lf, context])
            x = jnp.concatenate([tstats, jnp.broadcast_to(glob, (t, glob.shape[0]))], axis=1)
            xv = jnp.broadcast_to(vf, (t, n_loss))
            h = gru_cell(theta, x, state.rnn, xv)
            cond = h @ theta["cond_w"] + theta["cond_b"]  # (T, hidden0)
            log_scale = self.tensor_scale_mult * (h @ theta["scale_w"] + theta["scale_b"])  # (T,)

            # ---- per-parameter level
            def feats_fn(p, g, m, v):  # (rows, F_param) features before normalization
                return jnp.concatenate([p[:, None], F.gradient_features(g, m, v, self.rsqrt_eps)], axis=1)

            rows = (p, g, momenta, v)
            out = F.per_row_mlp(theta, rows, layout, num_layers, feats_fn=feats_fn,
                                col_scale=F.segment_rms_scales(feats_fn(*rows), layout),
                                tensor_bias=cond, chunk=self.row_chunk)
            if self.output == "nominal_adam":
                raw_scale = h @ theta["scale_w"] + theta["scale_b"]
                step = self._nominal_adam_step(out, raw_scale, momenta, v, state.count, layout)
            else:
                step = F.direction_magnitude_step(out, self.exp_mult, self.step_mult)
                step = step * F.segment_broadcast(jnp.exp(log_scale), layout)
            new_state = HierarchicalLOptState(F.increment(state.count), momenta, v, h, train_stats, valid_stats)
            return F.unflatten(step, layout), new_state

        return F.as_extra_args(init_fn, update_fn)

    def _nominal_adam_step(self, out: jax.Array, raw_scale: jax.Array, momenta: jax.Array, v: jax.Array,
                           count: jax.Array, layout: F.FlatLayout) -> jax.Array:
        """``-lr0 · exp(S tanh(σ_t/S)) · (m̂/(sqrt(v̂)+eps) + C tanh(out_0/C))`` (flat vector)."""
        t = F.increment(count).astype(layout.dtype)
        m = momenta[:, self.momentum_decays.index(ADAM_B1)]
        m_hat = m / (1.0 - jnp.asarray(ADAM_B1, layout.dtype) ** t)
        v_hat = v / (1.0 - jnp.asarray(self.second_moment_decay, layout.dtype) ** t)
        direction = m_hat / (jnp.sqrt(v_hat + 1e-30) + self.eps)
        correction = self.max_correction * jnp.tanh(out[:, 0] / self.max_correction)
        log_step = self.max_log_step * jnp.tanh(raw_scale / self.max_log_step)
        lr = self.learning_rate * jnp.exp(F.segment_broadcast(log_step, layout))
        return (-lr * (direction + correction)).astype(layout.dtype)
