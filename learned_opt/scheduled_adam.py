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
    update_i = -lr0 · exp(s_j) · (d_i + r_i)

``f_θ`` is a small MLP over the per-tensor context ``c_j``: the time features (``tanh(t/τ)`` for
several ``τ`` and the fraction of training done ``t/T``, ``1 - t/T`` when the horizon is known),
normalized-loss features of the current loss (:func:`learned_opt.features.loss_features`) and
statistics of the tensor (log RMS of its parameters, the gradient signal-to-noise ratio
``rms(m̂) / rms(sqrt(v̂))``, the cosine between ``g`` and the previous momentum, log size).
With ``trust_features=True`` the context also holds a trust-region signal (the ratio of the
actual to the predicted decrease of the last step, which a fixed-learning-rate method cannot
see): with ``P = Σ_i g_{t-1,i} u_{t-1,i}`` (the first-order predicted change of the previous
update, ≤ 0) and ``ρ = (L_t - L_{t-1}) / P``, the features are ``tanh(ρ)`` and its moving
average at decay 0.9 (``ρ ≈ 1``: the step is in the linear regime, room to grow; ``ρ < 0``: the
loss rose, the step overshot). Both are 0 at the first step and whenever no loss is passed.

``h_θ`` is a per-parameter MLP over ``[d_i, m̂_i/sqrt(v̂_i), q_i/sqrt(v̂_i), g_i/sqrt(v̂_i), w_i]``,
each column divided by its RMS over the tensor, plus the same context projected into its first
layer. The last layers of both networks start at zero, so at the initial θ ``s_j = r_i = 0`` and
the optimizer equals ``optax.adam(lr0, b1, b2, eps)`` exactly (tested).

Parameters are handled in one flat vector like the other per-parameter optimizers
(:mod:`learned_opt.features`); the correction network runs over cache-sized row chunks.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from learned_opt import features as F
from learned_opt.base import LearnedOptimizer, Theta

LOSS_DECAYS = (0.9, 0.99)
NUM_TENSOR_STATS = 4
NUM_ROW_FEATURES = 5


def _sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x + 1e-30)``: equal to ``sqrt(x)`` beside Adam's eps, with a finite derivative at 0
    (so meta-gradients through tensors with zero gradients stay finite)."""
    return jnp.sqrt(x + 1e-30)


class ScheduledAdamState(NamedTuple):
    count: jax.Array  # int32 updates done
    m: jax.Array  # (N,) first moment (b1)
    v: jax.Array  # (N,) second moment (b2)
    q: jax.Array  # (N,) slow momentum (b3), a correction feature
    loss_stats: F.LossStats


class ScheduledAdamTrustState(NamedTuple):
    """:class:`ScheduledAdamState` plus the trust-ratio statistics (``trust_features=True``)."""

    count: jax.Array
    m: jax.Array
    v: jax.Array
    q: jax.Array
    loss_stats: F.LossStats
    prev_loss: jax.Array  # L_{t-1} (0 before the first loss)
    predicted: jax.Array  # P = Σ g·u of the previous update
    rho_ema: jax.Array  # moving average of tanh(ρ)


NUM_TRUST_FEATURES = 2
TRUST_DECAY = 0.9


def trust_features(state: ScheduledAdamTrustState, loss: jax.Array | None, dtype) -> tuple[jax.Array, jax.Array]:
    """``([tanh ρ, ema'], ema')``: ``ρ = (L_t - L_{t-1}) / P`` (0 at the first step, without a
    loss, or when anything is non-finite); ``ema'`` the updated moving average."""
    if loss is None:
        return jnp.zeros((NUM_TRUST_FEATURES,), dtype), state.rho_ema
    loss = jnp.asarray(loss, dtype)
    denom = jnp.minimum(state.predicted, -1e-30)  # P ≤ 0 for a descent step; never divide by 0
    rho = jnp.tanh((loss - state.prev_loss) / denom)
    ok = (state.count > 0) & jnp.isfinite(rho)
    rho = jnp.where(ok, rho, 0.0)
    ema = jnp.where(ok, TRUST_DECAY * state.rho_ema + (1 - TRUST_DECAY) * rho, state.rho_ema)
    return jnp.stack([rho, ema]).astype(dtype), ema


class ScheduledAdamLOpt(LearnedOptimizer):
    """Adam with a learned per-tensor step-size schedule and per-parameter correction.

    Args:
      learning_rate: ``lr0``, the Adam learning rate at the initial θ.
      b1, b2, eps: Adam's decays and epsilon; ``b3``: decay of the slow momentum feature.
      tensor_hidden: hidden widths of the per-tensor step-size network ``f_θ``.
      row_hidden: hidden widths of the per-parameter correction network ``h_θ`` (empty: no
        correction, ``r = 0``).
      max_log_step: ``S``, bound of the learned log step change (``exp(±S)`` around ``lr0``).
      max_correction: ``C``, bound of the per-parameter correction ``|r_i|`` (``None``: unbounded).
      trust_features: add the trust-ratio features (actual ÷ predicted decrease) to the context.
      timescales: time scales ``τ`` of the ``tanh(t/τ)`` features.
      row_chunk: rows per chunk of the correction network (a speed knob only).
    """

    name = "scheduled_adam"
    #: ``opt_fn`` accepts a traced integer ``num_steps`` (meta-training tells each trajectory its length)
    traced_horizon = True

    def __init__(self, learning_rate: float = 3e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                 b3: float = 0.99, tensor_hidden: Sequence[int] = (32, 32), row_hidden: Sequence[int] = (8,),
                 max_log_step: float = 6.0, max_correction: float | None = None,
                 timescales: Sequence[float] = F.DEFAULT_TIMESCALES, row_chunk: int = F.DEFAULT_ROW_CHUNK,
                 trust_features: bool = False):
        self.learning_rate = F.check_positive("learning_rate", learning_rate)
        self.b1, self.b2, self.b3 = F.check_floats_in("b1, b2, b3", [b1, b2, b3], 0.0, 1.0)
        self.eps = F.check_positive("eps", eps)
        self.tensor_hidden = F.check_positive_ints("tensor_hidden", tensor_hidden)
        self.row_hidden = tuple(int(h) for h in row_hidden)
        if any(h < 1 for h in self.row_hidden):
            raise ValueError(f"row_hidden entries must be >= 1, got {self.row_hidden}")
        self.max_log_step = F.check_positive("max_log_step", max_log_step)
        self.max_correction = None if max_correction is None else F.check_positive("max_correction", max_correction)
        self.timescales = tuple(F.check_positive("timescales entry", s) for s in timescales)
        self.row_chunk = F.check_positive_ints("row_chunk", [row_chunk])[0]
        if not isinstance(trust_features, bool):
            raise TypeError(f"trust_features must be True or False, got {trust_features!r}")
        self.trust_features = trust_features

    @property
    def num_context(self) -> int:
        trust = NUM_TRUST_FEATURES if self.trust_features else 0
        return F.num_time_features(self.timescales) + len(LOSS_DECAYS) + 1 + NUM_TENSOR_STATS + trust

    def config(self) -> dict:
        return {"learning_rate": self.learning_rate, "b1": self.b1, "b2": self.b2, "eps": self.eps,
                "b3": self.b3, "tensor_hidden": list(self.tensor_hidden), "row_hidden": list(self.row_hidden),
                "max_log_step": self.max_log_step, "max_correction": self.max_correction,
                "timescales": list(self.timescales), "row_chunk": self.row_chunk,
                "trust_features": self.trust_features}

    def init(self, key: jax.Array) -> Theta:
        k_t, k_r = jax.random.split(key)
        theta = F.mlp_init(k_t, (self.num_context,) + self.tensor_hidden + (1,), last_scale=0.0, prefix="t_")
        if self.row_hidden:
            # rows see [row features, context]: the context enters through the first layer's bias
            theta.update(F.mlp_init(k_r, (NUM_ROW_FEATURES + self.num_context,) + self.row_hidden + (1,),
                                    last_scale=0.0, prefix="r_"))
        return theta

    # ------------------------------------------------------------------------------ update
    def _check(self, theta: Theta) -> None:
        owner = type(self).__name__
        n_t = len(self.tensor_hidden) + 1
        names = [f"t_{k}{i}" for i in range(n_t) for k in ("w", "b")]
        if self.row_hidden:
            names += [f"r_{k}{i}" for i in range(len(self.row_hidden) + 1) for k in ("w", "b")]
        F.check_theta(theta, names, owner)
        if tuple(jnp.shape(theta["t_w0"]))[-2:] != (self.num_context, self.tensor_hidden[0]):
            raise ValueError(f"{owner}: theta['t_w0'] has shape {jnp.shape(theta['t_w0'])}, expected "
                             f"{(self.num_context, self.tensor_hidden[0])}")

    def _context(self, state: ScheduledAdamState | ScheduledAdamTrustState, loss: jax.Array | None, g, m,
                 m_hat, v_hat, p, layout: F.FlatLayout, num_steps: int | jax.Array | None,
                 trust: jax.Array | None = None) -> jax.Array:
        """Per-tensor context ``(T, C)``: time, loss (and trust) and tensor-statistic features."""
        dt = layout.dtype
        n_t = layout.num_tensors
        tf = F.time_features(state.count, num_steps, self.timescales, dt)
        lf = F.loss_features(state.loss_stats, loss) if loss is not None else jnp.zeros(len(LOSS_DECAYS) + 1, dt)
        parts = [tf, lf.astype(dt)] + ([] if trust is None else [trust])
        glob = jnp.concatenate(parts)
        shared = jnp.broadcast_to(glob, (n_t, glob.shape[0]))

        def rms(x):
            return _sqrt(F.segment_mean(jnp.square(x), layout))

        rms_p = rms(p)
        snr = rms(m_hat) / (_sqrt(F.segment_mean(v_hat, layout)) + 1e-30)
        dot = F.segment_sum(g * state.m, layout)
        cos = dot / jnp.sqrt(F.segment_sum(jnp.square(g), layout) * F.segment_sum(jnp.square(state.m), layout) + 1e-30)
        sizes = jnp.asarray([math.log10(max(s, 1)) / 6.0 for s in layout.sizes], dt)
        stats = jnp.stack([0.25 * jnp.log10(rms_p + 1e-12), jnp.clip(snr, 0.0, 1.0), cos, sizes], axis=1)
        return jnp.concatenate([shared, stats], axis=1)

    def opt_fn(self, theta: Theta, num_steps: int | jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        self._check(theta)
        owner = type(self).__name__
        num_steps = F.check_num_steps(num_steps, owner)
        b1, b2, b3, eps = self.b1, self.b2, self.b3, self.eps
        n_tl, n_rl = len(self.tensor_hidden) + 1, len(self.row_hidden) + 1
        loss_decays = jnp.asarray(LOSS_DECAYS, jnp.float32)
        rtheta = {k[2:]: v for k, v in theta.items() if k.startswith("r_")}

        def init_fn(params):
            layout = F.layout_of(params, self.row_chunk)
            z = jnp.zeros((layout.padded,), layout.dtype)
            base = (jnp.zeros([], jnp.int32), z, jnp.zeros_like(z), jnp.zeros_like(z),
                    F.init_loss_stats(len(LOSS_DECAYS), layout.dtype))
            if self.trust_features:
                zero = jnp.zeros([], layout.dtype)
                return ScheduledAdamTrustState(*base, prev_loss=zero, predicted=zero, rho_ema=zero)
            return ScheduledAdamState(*base)

        def update_fn(grads, state, params=None, **extra):
            if params is None:
                raise ValueError(f"{owner}.update needs params (parameter statistics are features)")
            layout = F.layout_of(params, self.row_chunk)
            loss = F.take_loss(extra, "loss", layout.dtype)
            F.check_same_structure(layout, grads, "grads")
            g, p = F.flatten(grads, layout), F.flatten(params, layout)
            m = b1 * state.m + (1 - b1) * g
            v = b2 * state.v + (1 - b2) * jnp.square(g)
            q = b3 * state.q + (1 - b3) * g
            count = optax.safe_int32_increment(state.count)
            t = count.astype(layout.dtype)
            m_hat = m / (1 - jnp.asarray(b1, layout.dtype) ** t)
            v_hat = v / (1 - jnp.asarray(b2, layout.dtype) ** t)
            d = m_hat / (_sqrt(v_hat) + eps)
            trust, rho_ema = (trust_features(state, loss, layout.dtype) if self.trust_features  # type: ignore[arg-type]
                              else (None, None))
            ctx = self._context(state, loss, g, m, m_hat, v_hat, p, layout, num_steps, trust)
            raw = F.mlp_apply({k[2:]: v for k, v in theta.items() if k.startswith("t_")}, ctx, n_tl)[:, 0]
            log_step = self.max_log_step * jnp.tanh(raw / self.max_log_step)
            direction = d
            if self.row_hidden:
                inv = 1.0 / (_sqrt(v_hat) + eps)

                def feats_fn(d, m_hat, q, g, p, inv):
                    return jnp.stack([d, m_hat * inv, q * inv, g * inv, p], axis=1)

                rows = (d, m_hat, q, g, p, inv)
                col_scale = F.segment_rms_scales(feats_fn(*rows), layout)
                ctx_bias = ctx @ rtheta["w0"][NUM_ROW_FEATURES:]
                r = F.per_row_mlp(rtheta, rows, layout, n_rl, feats_fn=feats_fn, col_scale=col_scale,
                                  tensor_bias=ctx_bias, chunk=self.row_chunk)[:, 0]
                if self.max_correction is not None:
                    r = self.max_correction * jnp.tanh(r / self.max_correction)
                direction = d + r
            lr = self.learning_rate * jnp.exp(F.segment_broadcast(log_step, layout))
            step = (-lr * direction).astype(layout.dtype)
            stats = state.loss_stats if loss is None else F.update_loss_stats(state.loss_stats, loss, loss_decays)
            if self.trust_features:
                prev_loss = state.prev_loss if loss is None else jnp.asarray(loss, layout.dtype)
                new_state = ScheduledAdamTrustState(count, m, v, q, stats, prev_loss=prev_loss,
                                                    predicted=jnp.sum(g * step), rho_ema=rho_ema)
                return F.unflatten(step, layout), new_state
            return F.unflatten(step, layout), ScheduledAdamState(count, m, v, q, stats)

        return F.as_extra_args(init_fn, update_fn)

    def step_sizes(self, theta: Theta, context: Any) -> jax.Array:
        """``lr0 · exp(s)`` for a batch of per-tensor contexts ``(…, C)`` (for inspection)."""
        raw = F.mlp_apply({k[2:]: v for k, v in theta.items() if k.startswith("t_")},
                          jnp.asarray(context, jnp.float32), len(self.tensor_hidden) + 1)[..., 0]
        return self.learning_rate * jnp.exp(self.max_log_step * jnp.tanh(raw / self.max_log_step))
