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
(:func:`learned_opt.features.time_features`). A tiny tanh MLP (tanh rather than ReLU: with
so few hidden units ReLUs are often all inactive, which zeroes the update and its θ-gradient)
(default hidden widths 8 and 4) outputs a direction ``d`` and log-magnitude ``s``; the update is
``u = d · exp(α s) · β`` with ``α = β = 0.001``. Default meta-parameter count: 228.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from learned_opt import features as F
from learned_opt.base import LearnedOptimizer, Theta

_Q_EPS = 1e-30  # added to g² so row/column statistics are strictly positive
_NORM_FLOOR = 1e-15  # floor of mean_R(r) in the reconstruction
_RSQRT_FLOOR = 1e-24  # floor of v̂ in 1/sqrt(v̂)


class FactoredLOptState(NamedTuple):
    count: jax.Array  # int32 number of updates done
    momenta: jax.Array  # float32 (N, K)
    factored: jax.Array  # float32 (M, J): per tensor, rows then columns (≥2-D) or the full v (<2-D)


def _factored_sizes(layout: F.FlatLayout) -> list[tuple[int, int, int]]:
    """Per tensor ``(lead, R, C)`` for non-empty ≥2-D tensors, ``(0, n, 0)`` for the rest (full
    accumulator; empty tensors have none)."""
    out = []
    for shape, n in zip(layout.shapes, layout.sizes):
        if len(shape) >= 2 and n > 0:
            out.append((int(math.prod(shape[:-2])), int(shape[-2]), int(shape[-1])))
        else:
            out.append((0, n, 0))
    return out


def _factored_len(layout: F.FlatLayout) -> int:
    return sum(lead * (r + c) if lead else r for lead, r, c in _factored_sizes(layout))


def factored_second_moments(g: jax.Array, acc: jax.Array, decays: jax.Array,
                            layout: F.FlatLayout) -> tuple[jax.Array, jax.Array]:
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


class FactoredMLPLOpt(LearnedOptimizer):
    """Tiny per-parameter MLP over Adafactor-style features with learned accumulator decays.

    Args:
      hidden_sizes: hidden widths of the per-parameter MLP.
      momentum_decays: initial momentum decays (learned; one momentum per entry).
      second_moment_decays: initial factored second-moment decays (learned), same length as
        ``momentum_decays`` (momentum ``k`` is paired with second moment ``k`` in the features).
      timescales: time scales of the ``tanh(t/s)`` step features.
      row_chunk: rows per chunk of the per-parameter network (a speed knob; results do not
        depend on it beyond float rounding).
      exp_mult, step_mult: ``α`` and ``β`` of ``u = d · exp(α s) · β``.
    """

    name = "factored_mlp"

    def __init__(self, hidden_sizes: Sequence[int] = (8, 4),
                 momentum_decays: Sequence[float] = (0.5, 0.9, 0.99),
                 second_moment_decays: Sequence[float] = (0.9, 0.99, 0.999),
                 timescales: Sequence[float] = F.DEFAULT_TIMESCALES,
                 exp_mult: float = 0.001, step_mult: float = 0.001,
                 row_chunk: int = F.DEFAULT_ROW_CHUNK):
        self.hidden_sizes = F.check_positive_ints("hidden_sizes", hidden_sizes)
        self.momentum_decays = F.check_floats_in("momentum_decays", momentum_decays, 1e-6, 1.0)
        self.second_moment_decays = F.check_floats_in("second_moment_decays", second_moment_decays, 1e-6, 1.0)
        if not self.momentum_decays or len(self.momentum_decays) != len(self.second_moment_decays):
            raise ValueError("momentum_decays and second_moment_decays must be non-empty and of equal "
                             f"length, got {len(self.momentum_decays)} and {len(self.second_moment_decays)}")
        self.timescales = tuple(F.check_positive("timescales entry", s) for s in timescales)
        self.exp_mult = F.check_positive("exp_mult", exp_mult)
        self.step_mult = F.check_positive("step_mult", step_mult)
        self.row_chunk = F.check_positive_ints("row_chunk", [row_chunk])[0]

    @property
    def num_param_features(self) -> int:
        k = len(self.momentum_decays)
        return 2 + 4 * k  # g, w, m_k, g/sqrt(v̂_j), m_k/sqrt(v̂_k), 1/sqrt(v̂_j)

    @property
    def num_features(self) -> int:
        return self.num_param_features + F.num_time_features(self.timescales)

    def config(self) -> dict:
        return {"hidden_sizes": list(self.hidden_sizes), "momentum_decays": list(self.momentum_decays),
                "second_moment_decays": list(self.second_moment_decays), "timescales": list(self.timescales),
                "exp_mult": self.exp_mult, "step_mult": self.step_mult, "row_chunk": self.row_chunk}

    def init(self, key: jax.Array) -> Theta:
        theta = F.mlp_init(key, (self.num_features,) + self.hidden_sizes + (2,))
        theta["momentum_decay_logits"] = jnp.asarray([_logit(b) for b in self.momentum_decays], jnp.float32)
        theta["second_moment_decay_logits"] = jnp.asarray(
            [_logit(b) for b in self.second_moment_decays], jnp.float32)
        return theta

    def opt_fn(self, theta: Theta, num_steps: int | jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        owner = type(self).__name__
        num_layers = len(self.hidden_sizes) + 1
        F.check_theta(theta, [f"{k}{i}" for i in range(num_layers) for k in ("w", "b")]
                      + ["momentum_decay_logits", "second_moment_decay_logits"], owner)
        if tuple(jnp.shape(theta["w0"]))[-2:] != (self.num_features, self.hidden_sizes[0]):
            raise ValueError(f"{owner}: theta['w0'] has shape {jnp.shape(theta['w0'])}, expected "
                             f"{(self.num_features, self.hidden_sizes[0])}")
        num_steps = F.check_num_steps(num_steps, owner)
        k = len(self.momentum_decays)
        n_param = self.num_param_features

        def init_fn(params):
            layout = F.layout_of(params, self.row_chunk)
            return FactoredLOptState(count=jnp.zeros([], jnp.int32),
                                     momenta=jnp.zeros((layout.padded, k), layout.dtype),
                                     factored=jnp.zeros((_factored_len(layout), k), layout.dtype))

        def update_fn(grads, state, params=None, **extra):
            del extra  # the loss is not a feature of this architecture
            if params is None:
                raise ValueError(f"{owner}.update needs params (the parameter is an input feature)")
            layout = F.layout_of(params, self.row_chunk)
            F.check_same_structure(layout, grads, "grads")
            g = F.flatten(grads, layout)
            p = F.flatten(params, layout)
            beta_m = jax.nn.sigmoid(theta["momentum_decay_logits"])
            beta_v = jax.nn.sigmoid(theta["second_moment_decay_logits"])
            momenta = F.ema(state.momenta, g, beta_m)
            factored, vhat = factored_second_moments(g, state.factored, beta_v, layout)
            vhat = F.pad_rows(vhat, layout)

            def feats_fn(g, p, m, vh):  # (rows, F_param) features before normalization
                rs = F.safe_rsqrt(vh, _RSQRT_FLOOR)
                return jnp.concatenate([g[:, None], p[:, None], m, g[:, None] * rs, m * rs, rs], axis=1)

            rows = (g, p, momenta, vhat)
            col_scale = F.segment_rms_scales(feats_fn(*rows), layout)
            tf = F.time_features(state.count, num_steps, self.timescales, layout.dtype)
            out = F.per_row_mlp(theta, rows, layout, num_layers, feats_fn=feats_fn, col_scale=col_scale,
                                bias=tf @ theta["w0"][n_param:], activation=jnp.tanh, chunk=self.row_chunk)
            step = F.direction_magnitude_step(out, self.exp_mult, self.step_mult)
            return F.unflatten(step, layout), FactoredLOptState(F.increment(state.count), momenta, factored)

        return F.as_extra_args(init_fn, update_fn)


__all__ = ["FactoredMLPLOpt", "FactoredLOptState", "factored_second_moments"]
