"""Shared building blocks of the learned optimizers.

Everything here is a pure function of arrays plus *static* layout information, so the learned
optimizers built from it stay jit-, vmap- and grad-friendly.

Flat layout
-----------
The per-parameter optimizers work on one flat vector (float32; float64 if a leaf is float64)
holding every parameter leaf (``FlatLayout``), zero-padded to a whole number of row chunks when
it is longer than one chunk. Features are computed for all parameters at once and the
per-parameter network is one matmul chain over all rows (:func:`per_row_mlp`, run chunk by
chunk so intermediates stay in cache), which compiles much faster than one network per leaf.
Per-tensor statistics are reductions over the static contiguous segment of each leaf
(:func:`segment_sum`) and are broadcast back with :func:`segment_broadcast`.

Feature helpers
---------------
* :func:`ema` — exponential moving averages at several decays, ``m_k <- β_k m_k + (1-β_k) x``;
* :func:`segment_variance` — per-tensor centered variance plus ``1e-6·mean(x²)``: reproducible
  under jit / eager / vmap even for all-equal tensors (a one-pass ``E[x²] - E[x]²`` is not);
* :func:`segment_rms_scales` — ``1 / sqrt(max(mean_{i in tensor}(x_i²), ε))`` per tensor and feature
  column, the normalizer applied to every feature (invariant to rescaling one tensor's inputs by ``c > 0``);
* :func:`time_features` — ``tanh(t / s)`` for several time scales ``s`` and, when a horizon
  ``T`` is known, ``[t/T, 1 - t/T]`` (zeros when it is not, so the feature count never changes);
* :func:`gradient_features` — ``[g, m_1..m_K, sqrt(v), g/sqrt(v), m_k/sqrt(v)]`` columns (``v`` floored);
* :func:`mlp_init` / :func:`mlp_apply` — a plain dense ReLU network on a θ sub-dict;
  :func:`mlp_apply` adds an optional extra first-layer bias (time features or a per-tensor
  conditioning vector broadcast to the rows), which is cheaper than concatenating columns;
* :func:`direction_magnitude_step` — ``u = d · exp(α s) · β`` from the network's two outputs;
* :class:`LossStats` / :func:`update_loss_stats` / :func:`loss_features` — normalized loss
  features that are finite at step 0 and for any finite loss scale (no bias-correction division).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array

DEFAULT_TIMESCALES = (1.0, 10.0, 100.0, 1_000.0, 10_000.0)


class FlatLayout(NamedTuple):
    """Static description of a params pytree flattened into one vector."""

    treedef: Any
    shapes: tuple  # tuple of shape tuples, one per leaf
    dtypes: tuple  # original leaf dtypes
    sizes: tuple  # number of elements per leaf
    offsets: tuple  # start offset of each leaf in the flat vector
    dtype: Any  # computation dtype: float32, or float64 if any leaf is float64
    padded: int  # length of flat vectors: total, rounded up to a multiple of the row chunk

    @property
    def num_tensors(self) -> int:
        return len(self.shapes)

    @property
    def total(self) -> int:
        return int(sum(self.sizes))


def layout_of(tree: Any, row_chunk: int | None = None) -> FlatLayout:
    """Static layout (shapes, dtypes, segment offsets) of a pytree of arrays.

    With ``row_chunk``, flat vectors longer than one chunk are zero-padded to a whole number of
    chunks (``padded``), so :func:`per_row_mlp` can walk them chunk by chunk without copies.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes, dtypes, sizes = [], [], []
    for i, leaf in enumerate(leaves):
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(f"params leaf #{i} is {type(leaf).__name__}, expected an array")
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"params leaf #{i} has dtype {leaf.dtype}; learned optimizers need floating leaves")
        shapes.append(tuple(leaf.shape))
        dtypes.append(jnp.dtype(leaf.dtype))
        sizes.append(int(math.prod(leaf.shape)))
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)])[:-1]) if sizes else ()
    dtype = jnp.dtype(jnp.result_type(jnp.float32, *dtypes)) if dtypes else jnp.dtype(jnp.float32)
    total = int(sum(sizes))
    padded = total
    if row_chunk is not None and total > row_chunk:
        padded = -(-total // row_chunk) * row_chunk
    return FlatLayout(treedef, tuple(shapes), tuple(dtypes), tuple(sizes), offsets, dtype, padded)


def check_same_structure(layout: FlatLayout, tree: Any, what: str) -> None:
    """ValueError if ``tree`` does not have ``layout``'s structure and shapes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if treedef != layout.treedef:
        raise ValueError(f"{what} has tree structure {treedef}, expected {layout.treedef}")
    for i, (leaf, shape) in enumerate(zip(leaves, layout.shapes)):
        if tuple(jnp.shape(leaf)) != shape:
            raise ValueError(f"{what} leaf #{i} has shape {tuple(jnp.shape(leaf))}, expected {shape}")


def flatten(tree: Any, layout: FlatLayout) -> Array:
    """Concatenate the leaves of ``tree`` (cast to ``layout.dtype``) into one vector of length
    ``layout.padded`` (zeros after the ``layout.total`` parameter entries)."""
    leaves = [jnp.ravel(x).astype(layout.dtype) for x in jax.tree_util.tree_leaves(tree)]
    return pad_rows(jnp.concatenate(leaves) if leaves else jnp.zeros((0,), layout.dtype), layout)


def pad_rows(x: Array, layout: FlatLayout) -> Array:
    """Append zero rows to ``x`` (N, ...) up to ``layout.padded`` rows."""
    extra = layout.padded - x.shape[0]
    if extra == 0:
        return x
    return jnp.concatenate([x, jnp.zeros((extra,) + x.shape[1:], x.dtype)], axis=0)


def unflatten(vec: Array, layout: FlatLayout, cast: bool = True) -> Any:
    """Inverse of :func:`flatten`; leaves are cast back to their original dtypes when ``cast``."""
    leaves = []
    for shape, dtype, size, off in zip(layout.shapes, layout.dtypes, layout.sizes, layout.offsets):
        leaf = jnp.reshape(vec[off:off + size], shape)
        leaves.append(leaf.astype(dtype) if cast else leaf)
    return jax.tree_util.tree_unflatten(layout.treedef, leaves)


def segment_sum(x: Array, layout: FlatLayout) -> Array:
    """Per-tensor sums: ``x`` of shape ``(N, ...)`` -> ``(T, ...)`` (0 for empty tensors)."""
    if layout.num_tensors == 0:
        return jnp.zeros((0,) + x.shape[1:], x.dtype)
    return jnp.stack([jnp.sum(x[o:o + n], axis=0) for o, n in zip(layout.offsets, layout.sizes)])


def segment_mean(x: Array, layout: FlatLayout) -> Array:
    """Per-tensor means ``(T, ...)``; an empty tensor's mean is 0."""
    counts = np.maximum(np.asarray(layout.sizes, np.float32), 1.0)
    counts = counts.reshape((-1,) + (1,) * (x.ndim - 1))
    return segment_sum(x, layout) / counts


# Relative floor of a per-tensor variance: ``var + VAR_REL_FLOOR * mean(x²)``. Rounding leaves a
# spurious spread of order (ε_mach · log2 n)² · mean(x²) in the centered variance of an all-equal
# tensor (≈1e-12 · mean(x²) in float32 for n = 10⁶), far below this floor, so the floored value —
# and every feature computed from it — no longer depends on how the reduction was compiled.
VAR_REL_FLOOR = 1e-6


def segment_variance(x: Array, layout: FlatLayout, mean: Array | None = None,
                     mean_square: Array | None = None) -> Array:
    """Per-tensor variance ``mean_t((x - mean_t x)²) + VAR_REL_FLOOR · mean_t(x²)``, shape ``(T, ...)``.

    Two-pass (centered) so an all-equal tensor has a variance of rounding size instead of the
    ``mean(x²) - mean(x)²`` cancellation residue (of order ``ε_mach · mean(x²)``, whose value
    changes with the compiled reduction order: jit vs eager vs vmap). The relative floor then
    makes that rounding size irrelevant: ``log`` of the result is smooth in ``x``, scale
    covariant (``x -> c x`` shifts it by ``2 log c``) and reproducible across compilation modes.
    ``mean`` / ``mean_square`` may pass precomputed :func:`segment_mean` of ``x`` and ``x²``.
    """
    mean = segment_mean(x, layout) if mean is None else mean
    ms = segment_mean(jnp.square(x), layout) if mean_square is None else mean_square
    centered = x - segment_broadcast(mean, layout)
    var = segment_mean(jnp.square(centered), layout)
    return var + VAR_REL_FLOOR * ms


def segment_broadcast(stats: Array, layout: FlatLayout) -> Array:
    """Broadcast per-tensor values ``(T, ...)`` back to every element; ``(P, ...)`` rows with
    zeros in the padding rows (``P = layout.padded``)."""
    pieces = [jnp.broadcast_to(stats[t], (n,) + stats.shape[1:])
              for t, n in enumerate(layout.sizes) if n > 0]
    out = jnp.concatenate(pieces, axis=0) if pieces else jnp.zeros((0,) + stats.shape[1:], stats.dtype)
    return pad_rows(out, layout)


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


def time_features(step: Array, num_steps: int | Array | None,
                  timescales: Sequence[float] = DEFAULT_TIMESCALES, dtype: Any = jnp.float32) -> Array:
    """``[tanh(t/s) for s in timescales] + [t/T, 1 - t/T]`` (the last two are 0 without a horizon)."""
    t = jnp.asarray(step, dtype)
    feats = [jnp.tanh(t / s) for s in timescales]
    if num_steps is None:
        feats += [jnp.zeros((), dtype), jnp.zeros((), dtype)]
    else:
        horizon = (jnp.maximum(jnp.asarray(num_steps, dtype), 1.0) if isinstance(num_steps, jax.Array)
                   else float(max(int(num_steps), 1)))
        frac = jnp.clip(t / horizon, 0.0, 1.0)
        feats += [frac, 1.0 - frac]
    return jnp.stack(feats)


def num_time_features(timescales: Sequence[float] = DEFAULT_TIMESCALES) -> int:
    return len(timescales) + 2


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


def mlp_apply(theta: dict, x: Array, num_layers: int, prefix: str = "",
              extra_bias: Array | None = None, activation=jax.nn.relu) -> Array:
    """MLP with ``num_layers`` dense layers and ``activation`` (ReLU by default) between them
    (none after the last one).

    ``x`` may have fewer columns than ``w0`` has rows: then ``w0[:x.shape[-1]]`` multiplies ``x``
    and ``extra_bias`` (already projected to the first hidden width, broadcastable to the rows)
    is added to the first pre-activation.
    """
    w0 = theta[f"{prefix}w0"]
    h = x @ w0[: x.shape[-1]] + theta[f"{prefix}b0"]
    if extra_bias is not None:
        h = h + extra_bias
    for i in range(1, num_layers):
        h = activation(h)
        h = h @ theta[f"{prefix}w{i}"] + theta[f"{prefix}b{i}"]
    return h


DEFAULT_ROW_CHUNK = 4096


def segment_rms_scales(x: Array, layout: FlatLayout, floor: float = 1e-24) -> Array:
    """Per-tensor, per-column ``1/sqrt(max(mean_tensor(x²), floor))``, shape ``(T, F)``."""
    return safe_rsqrt(segment_mean(jnp.square(x), layout), floor)


def per_row_mlp(theta: dict, rows: Any, layout: FlatLayout, num_layers: int, *,
                feats_fn=None, col_scale: Array | None = None, bias: Array | None = None,
                tensor_bias: Array | None = None, activation=jax.nn.relu,
                chunk: int = DEFAULT_ROW_CHUNK) -> Array:
    """The per-parameter network on every row, in cache-sized row chunks; returns ``(P, out)``
    for ``P = layout.padded`` rows (rows past ``layout.total`` are padding).

    ``rows`` is an array ``(P, F)`` of features, or a tuple of per-row arrays ``(P, ...)`` that
    ``feats_fn(*rows_chunk) -> (rows, F)`` turns into features chunk by chunk (so the
    ``P × F`` feature matrix is never written to memory). Row ``i`` belongs to tensor ``t(i)``;
    the network sees ``x_i * col_scale[t(i)]`` (per-tensor normalization, see
    :func:`segment_rms_scales`) and its first pre-activation gets ``bias + tensor_bias[t(i)]``
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


def gradient_features(g: Array, momenta: Array, v: Array, rsqrt_eps: float) -> Array:
    """Per-parameter gradient columns ``[g, m_1..m_K, sqrt(v), g/sqrt(v), m_k/sqrt(v)]``,
    shape ``(N, 2K+3)`` (before per-tensor normalization); ``1/sqrt(v)`` is
    :func:`safe_rsqrt` with floor ``rsqrt_eps`` (so entries with ``v = 0`` give 0, not NaN)."""
    r = safe_rsqrt(v, rsqrt_eps)
    g2 = g[:, None]
    r2 = r[:, None]
    return jnp.concatenate([g2, momenta, (v * r)[:, None], g2 * r2, momenta * r2], axis=1)


def direction_magnitude_step(out: Array, exp_mult: float, step_mult: float,
                             log_scale: Array | float = 0.0) -> Array:
    """``u = d · exp(α (s + log_scale)) · β`` with ``d = out[:, 0]``, ``s = out[:, 1]``."""
    return out[:, 0] * jnp.exp(exp_mult * (out[:, 1] + log_scale)) * step_mult


def increment(count: Array) -> Array:
    """``count + 1`` saturating at the int32 maximum."""
    return jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count).astype(jnp.int32)


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
    new = LossStats(increment(stats.count), first, mean, var)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, stats)


def check_floats_in(name: str, values: Any, lo: float, hi: float) -> tuple:
    """Tuple of floats, each in ``[lo, hi)``; TypeError/ValueError naming ``name`` otherwise."""
    try:
        out = tuple(float(v) for v in values)
    except TypeError as e:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from e
    for v in out:
        if not lo <= v < hi:
            raise ValueError(f"{name} entries must lie in [{lo}, {hi}), got {v}")
    return out


def check_positive_ints(name: str, values: Any) -> tuple:
    """Tuple of ints >= 1."""
    try:
        out = tuple(int(v) for v in values)
    except TypeError as e:
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}") from e
    if any(v < 1 for v in out):
        raise ValueError(f"{name} entries must be >= 1, got {out}")
    return out


def check_positive(name: str, value: Any) -> float:
    """A finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def check_theta(theta: Any, required: Sequence[str], owner: str) -> None:
    """ValueError naming the first missing key of θ."""
    if not isinstance(theta, dict):
        raise TypeError(f"{owner}: theta must be a dict, got {type(theta).__name__}")
    missing = [k for k in required if k not in theta]
    if missing:
        raise ValueError(f"{owner}: theta is missing key(s) {missing}; has {sorted(theta)}")


def check_num_steps(num_steps: Any, owner: str) -> int | Array | None:
    """``num_steps`` as a positive int, ``None``, or a scalar integer JAX array (a traced horizon,
    e.g. the per-trajectory length during meta-training; values below 1 are treated as 1)."""
    if num_steps is None:
        return None
    if isinstance(num_steps, jax.Array) and not isinstance(num_steps, bool):
        if num_steps.ndim != 0 or not jnp.issubdtype(num_steps.dtype, jnp.integer):
            raise ValueError(f"{owner}: an array num_steps must be an integer scalar, got "
                             f"shape {num_steps.shape} dtype {num_steps.dtype}")
        return num_steps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"{owner}: num_steps must be a positive int or None, got {num_steps!r}")
    return int(num_steps)


def take_loss(extra: dict, name: str, dtype: Any = jnp.float32) -> Array | None:
    """The scalar extra argument ``name`` (e.g. ``loss``, ``valid_loss``) as ``dtype``, or None."""
    value = extra.get(name)
    if value is None:
        return None
    value = jnp.asarray(value)
    if value.ndim != 0:
        raise ValueError(f"update extra argument {name!r} must be a scalar, got shape {value.shape}")
    return value.astype(dtype)


def as_extra_args(init_fn, update_fn) -> optax.GradientTransformationExtraArgs:
    """Wrap ``update_fn(grads, state, params, **extra)`` as an optax transform with extra args."""
    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
