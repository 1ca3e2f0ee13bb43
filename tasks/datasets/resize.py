"""Deterministic separable image resizing, done once at load time in NumPy.

A resize of ``[N, H, W, C]`` images to ``[N, h, w, C]`` is ``out = R_h · x · R_wᵀ`` per image and
channel, with one ``[n_out, n_in]`` weight matrix per axis whose rows sum to one (so constant
images stay constant):

* shrinking (``n_out < n_in``): **area** weights. Output pixel ``o`` covers the input interval
  ``[o s, (o+1) s)`` with ``s = n_in / n_out``; ``R[o, i] = |[i, i+1) ∩ [o s, (o+1) s)| / s``, the
  mean of the input over the footprint (an exact block mean when ``n_in`` is a multiple of
  ``n_out``);
* enlarging (``n_out > n_in``): **bilinear** weights with half-pixel centres, sampling the input
  at ``p = (o + ½) n_in / n_out − ½`` clamped to ``[0, n_in − 1]`` and interpolating between
  ``⌊p⌋`` and ``⌊p⌋ + 1``;
* equal sizes: the identity.
"""
from __future__ import annotations

import numpy as np


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` area-averaging matrix (for ``n_out <= n_in``)."""
    if not 1 <= n_out <= n_in:
        raise ValueError(f"area weights need 1 <= n_out <= n_in, got n_in={n_in}, n_out={n_out}")
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    hi = lo + scale
    i = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return overlap / scale


def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` bilinear interpolation matrix with half-pixel centres."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}")
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, n_in - 1)
    frac = pos - left
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(w, (rows, left), 1.0 - frac)
    np.add.at(w, (rows, right), frac)
    return w


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """Area weights when shrinking, bilinear when enlarging, identity when equal."""
    if n_out == n_in:
        return np.eye(n_in)
    return area_weights(n_in, n_out) if n_out < n_in else bilinear_weights(n_in, n_out)


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``[N, H, W, C]`` images to ``[N, height, width, C]`` (float32 result)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"resize_images expects [N, H, W, C] images, got shape {images.shape}")
    for label, size in (("height", height), ("width", width)):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{label} must be a positive int, got {size!r}")
    _, h, w, _ = images.shape
    wh = resize_weights(h, int(height))
    ww = resize_weights(w, int(width))
    out = np.einsum("oh,nhwc,pw->nopc", wh, images.astype(np.float64), ww, optimize=True)
    return out.astype(np.float32)
