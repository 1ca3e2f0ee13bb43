"""Networks of the learned optimizers: a dense MLP on a θ sub-dict and its row-chunked
application to every parameter of a flat layout.

* :func:`mlp_init` / :func:`mlp_apply` — a plain dense network ``x -> act(x W0 + b0 [+ extra]) ->
  ... -> h W_{L-1} + b_{L-1}`` (He-normal weights, zero biases); :func:`mlp_apply` adds an optional
  extra first-layer bias (time features or a per-tensor conditioning vector broadcast to the rows),
  which is cheaper than concatenating columns;
* :func:`per_row_mlp` — the per-parameter network on every row of a
  :class:`~learned_opt.flat_layout.FlatLayout`, chunk by chunk (``lax.map``) so the
  ``(rows, hidden)`` intermediates stay in cache; equal to one matmul chain over all rows.

A last layer only one or two columns wide (the per-parameter networks' direction and magnitude)
is a plain matmul forward, but its derivatives are taken column by column
(:func:`narrow_matmul`): XLA:CPU runs the weight gradient ``hᵀ · dout`` of a
``(rows × hidden)·(hidden × 2)`` product as a slow batched dot, one matrix-vector product per
output column is faster. The forward program is unchanged (a PES outer step compiles to the same
HLO); backprop through an unroll (``bench_outer.py`` config (e)'s meta-gradient) took 0.84-0.88x
the time in a same-process A/B on a busy 2-core machine.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from learned_opt.flat_layout import FlatLayout

Array = jax.Array
Activation = Callable[[Array], Array]

DEFAULT_ROW_CHUNK = 4096
NARROW_OUTPUT = 2  # layers at most this wide are differentiated column by column (narrow_matmul)


def mlp_init(key: Array, sizes: Sequence[int], last_scale: float = 1.0, prefix: str = "") -> dict:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]``; He-normal weights, zero biases.

    Returns ``{prefix+"w0": ..., prefix+"b0": ..., ...}``; the last weight is multiplied by
    ``last_scale`` (small outputs at initialization).
    """
    params = {}
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(keys[i], (fan_in, fan_out), jnp.float32) * math.sqrt(2.0 / fan_in)
        if i == len(sizes) - 2:
            w = w * last_scale
        params[f"{prefix}w{i}"] = w
        params[f"{prefix}b{i}"] = jnp.zeros((fan_out,), jnp.float32)
    return params


def _by_columns(h: Array, w: Array) -> Array:
    """``h @ w`` as one matrix-vector product per column of ``w``, stacked."""
    return jnp.stack([h @ w[:, j] for j in range(w.shape[-1])], axis=-1)


@jax.custom_jvp
def narrow_matmul(h: Array, w: Array) -> Array:
    """``h @ w`` for a narrow ``w`` (``(hidden, k)``, ``k <= NARROW_OUTPUT``): the same matmul
    forward, but its JVP — and so, transposed, its VJP — is computed column by column, so the
    weight gradient is ``k`` matrix-vector products ``hᵀ · dout[:, j]`` instead of a thin
    ``(hidden × rows)·(rows × k)`` dot (slow on XLA:CPU). Equal to ``h @ w`` to float rounding in
    every derivative."""
    return h @ w


def _narrow_matmul_jvp(primals, tangents):
    h, w = primals
    dh, dw = tangents
    out = h @ w
    parts = []
    if not isinstance(dh, SymbolicZero):
        parts.append(_by_columns(dh, w))
    if not isinstance(dw, SymbolicZero):
        parts.append(_by_columns(h, dw))
    tangent = sum(parts[1:], parts[0]) if parts else jnp.zeros_like(out)
    return out, tangent.astype(out.dtype)


narrow_matmul.defjvp(_narrow_matmul_jvp, symbolic_zeros=True)


def _dense(h: Array, w: Array, last: bool) -> Array:
    """``h @ w``; the last layer goes through :func:`narrow_matmul` when it is narrow."""
    if last and w.ndim == 2 and w.shape[-1] <= NARROW_OUTPUT:
        return narrow_matmul(h, w)
    return h @ w


def mlp_apply(theta: dict, x: Array, num_layers: int, prefix: str = "",
              extra_bias: Array | None = None, activation: Activation = jax.nn.relu) -> Array:
    """MLP with ``num_layers`` dense layers and ``activation`` (ReLU by default) between them
    (none after the last one).

    ``x`` may have fewer columns than ``w0`` has rows: then ``w0[:x.shape[-1]]`` multiplies ``x``
    and ``extra_bias`` (already projected to the first hidden width, broadcastable to the rows)
    is added to the first pre-activation.
    """
    w0 = theta[f"{prefix}w0"]
    h = _dense(x, w0[: x.shape[-1]], num_layers == 1) + theta[f"{prefix}b0"]
    if extra_bias is not None:
        h = h + extra_bias
    for i in range(1, num_layers):
        h = activation(h)
        h = _dense(h, theta[f"{prefix}w{i}"], i == num_layers - 1) + theta[f"{prefix}b{i}"]
    return h


def per_row_mlp(theta: dict, rows: Array | tuple[Array, ...], layout: FlatLayout, num_layers: int, *,
                feats_fn: Callable[..., Array] | None = None, col_scale: Array | None = None,
                bias: Array | None = None, tensor_bias: Array | None = None, activation: Activation = jax.nn.relu,
                chunk: int = DEFAULT_ROW_CHUNK) -> Array:
    """The per-parameter network on every row, in cache-sized row chunks; returns ``(P, out)``
    for ``P = layout.padded`` rows (rows past ``layout.total`` are padding).

    ``rows`` is an array ``(P, F)`` of features, or a tuple of per-row arrays ``(P, ...)`` that
    ``feats_fn(*rows_chunk) -> (rows, F)`` turns into features chunk by chunk (so the
    ``P × F`` feature matrix is never written to memory). Row ``i`` belongs to tensor ``t(i)``;
    the network sees ``x_i * col_scale[t(i)]`` (per-tensor normalization, see
    :func:`learned_opt.feature_math.segment_rms_scales`) and its first pre-activation gets ``bias + tensor_bias[t(i)]``
    added (time features / per-tensor conditioning projected to the first hidden width).
    Processing ``chunk`` rows at a time (``lax.map``) keeps the ``(rows, hidden)`` intermediates in
    cache instead of streaming several ``P × hidden`` arrays through memory; the result is the
    same as one big matmul chain.
    """
    rows = rows if isinstance(rows, tuple) else (rows,)
    feats_fn = feats_fn if feats_fn is not None else (lambda x: x)
    n = rows[0].shape[0]
    if n != layout.padded:
        raise ValueError(f"per_row_mlp: rows have {n} entries, layout expects {layout.padded}")
    starts = np.asarray(layout.offsets, np.int32)
    last = max(layout.num_tensors - 1, 0)

    def rows_fn(idx: Array, *chunk_rows: Array) -> Array:
        xc = feats_fn(*chunk_rows)
        seg = jnp.clip(jnp.searchsorted(starts, idx, side="right") - 1, 0, last)
        if col_scale is not None:
            xc = xc * col_scale[seg]
        extra = None
        if bias is not None:
            extra = bias
        if tensor_bias is not None:
            extra = tensor_bias[seg] if extra is None else extra + tensor_bias[seg]
        return mlp_apply(theta, xc, num_layers, extra_bias=extra, activation=activation)

    if n == 0 or layout.num_tensors == 0:
        return jnp.zeros((n, theta[f"w{num_layers - 1}"].shape[-1]), layout.dtype)
    if n <= chunk:
        return rows_fn(jnp.arange(n, dtype=jnp.int32), *rows)
    if n % chunk:
        raise ValueError(f"per_row_mlp: {n} rows is not a multiple of chunk={chunk}; build the layout "
                         f"with layout_of(params, row_chunk={chunk})")
    k = n // chunk
    idx = jnp.arange(n, dtype=jnp.int32).reshape(k, chunk)
    chunked = tuple(r.reshape((k, chunk) + r.shape[1:]) for r in rows)
    out = jax.lax.map(lambda args: rows_fn(*args), (idx,) + chunked)
    return out.reshape(n, -1)
