"""Bounds: trees (or a flat ``scipy.optimize.Bounds``) → float64 vectors in pack order."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import scipy.optimize as sopt

from learned_opt.pytree_vector import PackSpec, host_array, keystr


def _bound_vector(spec: PackSpec, tree: Any, side: str) -> np.ndarray:
    default = -np.inf if side == "lb" else np.inf
    vec = np.empty(spec.size, dtype=np.float64)
    leaves = spec.broadcast_leaves(tree, what=f"bounds {side}")
    for path, leaf, shape, off, size in zip(spec.paths, leaves, spec.shapes, spec.offsets, spec.sizes):
        if leaf is None:
            vec[off:off + size] = default
            continue
        arr = np.asarray(host_array(leaf))
        if arr.dtype.kind not in "fiu" and not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"bounds {side} at {keystr(path)} has dtype {arr.dtype}; expected real numbers")
        try:
            arr = np.broadcast_to(arr.astype(np.float64), shape)
        except ValueError:
            raise ValueError(f"bounds {side} at {keystr(path)} has shape {arr.shape}, which does not "
                             f"broadcast to the leaf's shape {shape}") from None
        if np.isnan(arr).any():
            raise ValueError(f"bounds {side} at {keystr(path)} contains NaN")
        vec[off:off + size] = arr.reshape(-1)
    return vec


def _bounds(spec: PackSpec, bounds: Any, lb_dict: Any, ub_dict: Any):
    """(lb, ub) float64 vectors or (None, None) if there are no finite bounds."""
    if bounds is not None and (lb_dict is not None or ub_dict is not None):
        raise ValueError("pass either bounds=(lb, ub) or lb_dict=/ub_dict=, not both")
    if bounds is not None:
        if isinstance(bounds, sopt.Bounds):  # flat bounds in pack order (or scalars)
            out = []
            for side, v in (("lb", bounds.lb), ("ub", bounds.ub)):
                try:
                    out.append(np.broadcast_to(np.asarray(v, dtype=np.float64), (spec.size,)).copy())
                except (ValueError, TypeError):
                    raise ValueError(f"scipy.optimize.Bounds {side} must be a scalar or a flat vector of "
                                     f"length {spec.size} in pack order; got shape {np.shape(v)}. "
                                     "Pass bounds=(lb_tree, ub_tree) for trees.") from None
            lb_t, ub_t = spec.unpack(out[0]), spec.unpack(out[1])
        elif isinstance(bounds, (tuple, list)) and len(bounds) == 2:
            lb_t, ub_t = bounds
        else:
            raise ValueError("bounds must be a pair (lb, ub) of trees matching x0 (leaves may be "
                             f"scalars, None or ±inf); got {type(bounds).__name__}"
                             + (f" of length {len(bounds)}" if isinstance(bounds, (tuple, list)) else ""))
    else:
        lb_t, ub_t = lb_dict, ub_dict
    if lb_t is None and ub_t is None:
        return None, None
    lb = _bound_vector(spec, lb_t, "lb")
    ub = _bound_vector(spec, ub_t, "ub")
    bad = np.nonzero(lb > ub)[0]
    if bad.size:
        i = int(bad[0])
        k = int(np.searchsorted(spec.offsets, i, side="right") - 1)
        raise ValueError(f"bounds: lb > ub at {keystr(spec.paths[k])} (flat index {i - spec.offsets[k]} "
                         f"of that leaf: lb={lb[i]}, ub={ub[i]}; {bad.size} entries in total)")
    if not (np.isfinite(lb).any() or np.isfinite(ub).any()):
        return None, None
    return lb, ub

