"""Flat layout of a params pytree: one vector holding every leaf, and per-tensor reductions.

The per-parameter learned optimizers work on one flat vector (float32; float64 if a leaf is
float64) holding every parameter leaf (:class:`FlatLayout`), zero-padded to a whole number of
row chunks when it is longer than one chunk (so the row-chunked network of
:func:`learned_opt.networks.per_row_mlp` walks it without copies). Leaf ``t`` occupies the static
contiguous segment ``[offsets[t], offsets[t] + sizes[t])``; per-tensor statistics are reductions
over those segments (:func:`segment_sum`, :func:`segment_mean`, :func:`segment_variance`) and are
broadcast back to the rows with :func:`segment_broadcast`. Everything is a pure function of arrays
plus static layout information, so it is jit-, vmap- and grad-friendly.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


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


