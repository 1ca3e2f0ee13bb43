"""Shared building blocks of the learned optimizers.

Everything here is a pure function of arrays plus *static* layout information, so the learned
optimizers built from it stay jit-, vmap- and grad-friendly.

Flat layout
-----------
The per-parameter optimizers work on one flat float32 vector holding every parameter leaf
(``FlatLayout``): features are computed once for all parameters and the per-parameter network is a
single matmul over all rows, which compiles much faster than one network per leaf. Per-tensor
statistics are reductions over the static contiguous segment of each leaf
(:func:`segment_sum`) and are broadcast back with :func:`segment_broadcast`.

Feature helpers
---------------
* :func:`ema` — exponential moving averages at several decays, ``m_k <- β_k m_k + (1-β_k) x``;
* :func:`segment_rms_normalize` — ``x / sqrt(mean_{i in tensor}(x_i²) + ε)`` per tensor and feature
  column (invariant to rescaling one tensor's inputs by ``c > 0``);
* :func:`time_features` — ``tanh(t / s)`` for several time scales ``s`` and, when a horizon
  ``T`` is known, ``[t/T, 1 - t/T]`` (zeros when it is not, so the feature count never changes);
* :func:`mlp_init` / :func:`mlp_apply` — a plain dense ReLU network on a θ sub-dict.
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

    @property
    def num_tensors(self) -> int:
        return len(self.shapes)

    @property
    def total(self) -> int:
        return int(sum(self.sizes))


def layout_of(tree: Any) -> FlatLayout:
    """Static layout (shapes, dtypes, segment offsets) of a pytree of arrays."""
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
    return FlatLayout(treedef, tuple(shapes), tuple(dtypes), tuple(sizes), offsets)


def check_same_structure(layout: FlatLayout, tree: Any, what: str) -> None:
    """ValueError if ``tree`` does not have ``layout``'s structure and shapes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if treedef != layout.treedef:
        raise ValueError(f"{what} has tree structure {treedef}, expected {layout.treedef}")
    for i, (leaf, shape) in enumerate(zip(leaves, layout.shapes)):
        if tuple(jnp.shape(leaf)) != shape:
            raise ValueError(f"{what} leaf #{i} has shape {tuple(jnp.shape(leaf))}, expected {shape}")


def flatten(tree: Any, layout: FlatLayout) -> Array:
    """Concatenate the leaves of ``tree`` (cast to float32) into one vector of length ``layout.total``."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])


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


def segment_broadcast(stats: Array, layout: FlatLayout) -> Array:
    """Broadcast per-tensor values ``(T, ...)`` back to every element ``(N, ...)``."""
    if layout.total == 0:
        return jnp.zeros((0,) + stats.shape[1:], stats.dtype)
    pieces = [jnp.broadcast_to(stats[t], (n,) + stats.shape[1:])
              for t, n in enumerate(layout.sizes) if n > 0]
    return jnp.concatenate(pieces, axis=0)


def segment_rms_normalize(x: Array, layout: FlatLayout, eps: float = 1e-30) -> Array:
    """``x / sqrt(mean_tensor(x²) + eps)`` per tensor (and per feature column if ``x`` is 2-D)."""
    ms = segment_mean(jnp.square(x), layout)
    return x * segment_broadcast(jax.lax.rsqrt(ms + eps), layout)


def ema(acc: Array, x: Array, decays: Array) -> Array:
    """Moving averages at several decays: ``acc[:, k] <- β_k acc[:, k] + (1-β_k) x``.

    ``acc`` has shape ``(N, K)``, ``x`` shape ``(N,)`` (or ``(N, K)``), ``decays`` shape ``(K,)``.
    """
    if x.ndim == acc.ndim - 1:
        x = x[..., None]
    return decays * acc + (1.0 - decays) * x


def time_features(step: Array, num_steps: int | None,
                  timescales: Sequence[float] = DEFAULT_TIMESCALES) -> Array:
    """``[tanh(t/s) for s in timescales] + [t/T, 1 - t/T]`` (the last two are 0 without a horizon)."""
    t = jnp.asarray(step, jnp.float32)
    feats = [jnp.tanh(t / s) for s in timescales]
    if num_steps is None:
        feats += [jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)]
    else:
        frac = jnp.clip(t / float(max(int(num_steps), 1)), 0.0, 1.0)
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


def mlp_apply(theta: dict, x: Array, num_layers: int, prefix: str = "") -> Array:
    """ReLU MLP with ``num_layers`` dense layers (no activation after the last one)."""
    for i in range(num_layers):
        x = x @ theta[f"{prefix}w{i}"] + theta[f"{prefix}b{i}"]
        if i < num_layers - 1:
            x = jax.nn.relu(x)
    return x


def check_theta(theta: Any, required: Sequence[str], owner: str) -> None:
    """ValueError naming the first missing key of θ."""
    if not isinstance(theta, dict):
        raise TypeError(f"{owner}: theta must be a dict, got {type(theta).__name__}")
    missing = [k for k in required if k not in theta]
    if missing:
        raise ValueError(f"{owner}: theta is missing key(s) {missing}; has {sorted(theta)}")


def check_num_steps(num_steps: Any, owner: str) -> int | None:
    if num_steps is None:
        return None
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"{owner}: num_steps must be a positive int or None, got {num_steps!r}")
    return int(num_steps)


def as_extra_args(init_fn, update_fn) -> optax.GradientTransformationExtraArgs:
    """Wrap ``update_fn(grads, state, params, **extra)`` as an optax transform with extra args."""
    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cast_like(tree: Any, like: Any) -> Any:
    """Cast every leaf of ``tree`` to the dtype of the matching leaf of ``like``."""
    return jax.tree_util.tree_map(lambda x, y: jnp.asarray(x).astype(jnp.asarray(y).dtype), tree, like)


def loss_or_nan(loss: Any) -> Array:
    """The loss as a float32 scalar (NaN when none was given)."""
    if loss is None:
        return jnp.full((), jnp.nan, jnp.float32)
    return jnp.asarray(loss, jnp.float32).reshape(())
