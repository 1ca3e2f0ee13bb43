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

Implementation: all parameter leaves are concatenated into one float32 vector (float64 if a leaf is float64; see
:mod:`learned_opt.features`), features are an ``(N, F)`` matrix, the network is one batched matmul
chain, per-tensor RMS statistics are reductions over static contiguous segments, and updates are
split back into the params' tree and cast to each leaf's dtype. The time features enter through
the first layer's bias (they are the same for every row). The optimizer state
(:class:`MLPLOptState`) keeps the accumulators in that flat layout. The network runs over
cache-sized row chunks (:func:`learned_opt.features.per_row_mlp`).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from learned_opt import features as F
from learned_opt.base import LearnedOptimizer, Theta

DEFAULT_MOMENTUM_DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)


class MLPLOptState(NamedTuple):
    count: jax.Array  # int32 number of updates done (the 0-based step of the next update)
    momenta: jax.Array  # float32 (N, K): EMAs of the flat gradient at each momentum decay
    second_moment: jax.Array  # float32 (N,): EMA of the squared flat gradient


class MLPLOpt(LearnedOptimizer):
    """Per-parameter MLP learned optimizer; see the module docstring for the math.

    Args:
      hidden_sizes: widths of the hidden layers of the per-parameter MLP.
      momentum_decays: decays ``β_k`` of the gradient momenta.
      second_moment_decay: decay of the squared-gradient accumulator.
      timescales: time scales ``s`` of the ``tanh(t/s)`` step features.
      exp_mult: ``α``, multiplier of the log-magnitude output.
      step_mult: ``β``, overall step scale.
      row_chunk: rows per chunk of the per-parameter network (a speed knob only).
      rsqrt_eps: floor ``ε`` of ``v`` in the rsqrt features ``1/sqrt(max(v, ε))``.
    """

    name = "mlp"

    def __init__(self, hidden_sizes: Sequence[int] = (32, 32),
                 momentum_decays: Sequence[float] = DEFAULT_MOMENTUM_DECAYS,
                 second_moment_decay: float = 0.999,
                 timescales: Sequence[float] = F.DEFAULT_TIMESCALES,
                 exp_mult: float = 0.001, step_mult: float = 0.001, rsqrt_eps: float = 1e-24,
                 row_chunk: int = F.DEFAULT_ROW_CHUNK):
        self.hidden_sizes = F.check_positive_ints("hidden_sizes", hidden_sizes)
        self.momentum_decays = F.check_floats_in("momentum_decays", momentum_decays, 0.0, 1.0)
        if not self.momentum_decays:
            raise ValueError("momentum_decays must not be empty")
        self.second_moment_decay = F.check_floats_in("second_moment_decay", [second_moment_decay], 0.0, 1.0)[0]
        self.timescales = tuple(F.check_positive("timescales entry", s) for s in timescales)
        self.exp_mult = F.check_positive("exp_mult", exp_mult)
        self.step_mult = F.check_positive("step_mult", step_mult)
        self.row_chunk = F.check_positive_ints("row_chunk", [row_chunk])[0]
        self.rsqrt_eps = F.check_positive("rsqrt_eps", rsqrt_eps)

    # --------------------------------------------------------------------------- structure
    @property
    def num_param_features(self) -> int:
        """Per-parameter (row) features: the parameter plus the 2K+3 gradient features."""
        return 1 + 2 * len(self.momentum_decays) + 3

    @property
    def num_features(self) -> int:
        return self.num_param_features + F.num_time_features(self.timescales)

    def config(self) -> dict:
        return {"hidden_sizes": list(self.hidden_sizes), "momentum_decays": list(self.momentum_decays),
                "second_moment_decay": self.second_moment_decay, "timescales": list(self.timescales),
                "exp_mult": self.exp_mult, "step_mult": self.step_mult, "rsqrt_eps": self.rsqrt_eps,
                "row_chunk": self.row_chunk}

    def init(self, key: jax.Array) -> Theta:
        sizes = (self.num_features,) + self.hidden_sizes + (2,)
        return F.mlp_init(key, sizes)

    # ------------------------------------------------------------------------------ update
    def opt_fn(self, theta: Theta, num_steps: int | jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        owner = type(self).__name__
        num_layers = len(self.hidden_sizes) + 1
        F.check_theta(theta, [f"{k}{i}" for i in range(num_layers) for k in ("w", "b")], owner)
        if tuple(jnp.shape(theta["w0"]))[-2:] != (self.num_features, self.hidden_sizes[0]):
            raise ValueError(f"{owner}: theta['w0'] has shape {jnp.shape(theta['w0'])}, expected "
                             f"{(self.num_features, self.hidden_sizes[0])}")
        num_steps = F.check_num_steps(num_steps, owner)
        decays = jnp.asarray(self.momentum_decays, jnp.float32)
        beta_v = self.second_moment_decay
        n_param = self.num_param_features

        def init_fn(params):
            layout = F.layout_of(params, self.row_chunk)
            n, k = layout.padded, len(self.momentum_decays)
            return MLPLOptState(count=jnp.zeros([], jnp.int32), momenta=jnp.zeros((n, k), layout.dtype),
                                second_moment=jnp.zeros((n,), layout.dtype))

        def update_fn(grads, state, params=None, **extra):
            del extra  # the loss is not a feature of this architecture
            if params is None:
                raise ValueError(f"{owner}.update needs params (the parameter is an input feature)")
            layout = F.layout_of(params, self.row_chunk)
            F.check_same_structure(layout, grads, "grads")
            g = F.flatten(grads, layout)
            p = F.flatten(params, layout)
            momenta = F.ema(state.momenta, g, decays)
            v = beta_v * state.second_moment + (1.0 - beta_v) * jnp.square(g)

            def feats_fn(p, g, m, v):  # (rows, F_param) features before normalization
                return jnp.concatenate([p[:, None], F.gradient_features(g, m, v, self.rsqrt_eps)], axis=1)

            rows = (p, g, momenta, v)
            col_scale = F.segment_rms_scales(feats_fn(*rows), layout)
            tf = F.time_features(state.count, num_steps, self.timescales, layout.dtype)
            # time features are the same for every row: fold them into the first layer's bias
            out = F.per_row_mlp(theta, rows, layout, num_layers, feats_fn=feats_fn, col_scale=col_scale,
                                bias=tf @ theta["w0"][n_param:], chunk=self.row_chunk)
            step = F.direction_magnitude_step(out, self.exp_mult, self.step_mult)
            updates = F.unflatten(step, layout)
            return updates, MLPLOptState(count=F.increment(state.count), momenta=momenta, second_moment=v)

        return F.as_extra_args(init_fn, update_fn)
