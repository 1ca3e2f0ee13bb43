"""Helpers for the tasks tests: float64 casting, finite-difference gradient checks, toy data."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Datasets, Split


def to_f64(tree):
    """Cast floating leaves to float64 (call inside ``jax.enable_x64(True)``)."""
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree.map(cast, tree)


def check_grad_fd(fun, params, *, num_directions=3, eps=1e-6, rtol=1e-5, atol=1e-8, seed=0):
    """Compare directional derivatives <grad f, v> with central differences along random v.

    ``fun(params) -> scalar`` in float64. Raises AssertionError with the numbers on mismatch.
    """
    vg = jax.jit(jax.value_and_grad(fun))  # one compilation serves values and the gradient
    grad = vg(params)[1]
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    f = lambda p: vg(p)[0]
    for _ in range(num_directions):
        vs = [jnp.asarray(rng.standard_normal(np.shape(l))) for l in leaves]
        norm = np.sqrt(sum(float(jnp.sum(v * v)) for v in vs))
        vs = [v / norm for v in vs]
        v = jax.tree.unflatten(treedef, vs)
        plus = jax.tree.map(lambda p, d: p + eps * d, params, v)
        minus = jax.tree.map(lambda p, d: p - eps * d, params, v)
        fd = (float(f(plus)) - float(f(minus))) / (2 * eps)
        an = float(sum(jnp.sum(g * d) for g, d in zip(jax.tree.leaves(grad), vs)))
        assert abs(fd - an) <= atol + rtol * max(abs(fd), abs(an)), (fd, an)
    return grad


def toy_image_datasets(n=256, size=8, classes=10, seed=0, batch_size=32, center=True):
    """Small labelled image data with learnable structure (class-dependent mean images)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, size, size, 1)).astype(np.float32)

    def make(m):
        labels = rng.integers(0, classes, m).astype(np.int32)
        images = means[labels] + 0.5 * rng.standard_normal((m, size, size, 1)).astype(np.float32)
        if not center:
            images = 1.0 / (1.0 + np.exp(-images))
        return {"image": images.astype(np.float32), "label": labels}

    return Datasets(Split(make(n), batch_size, seed=seed), Split(make(64), batch_size, name="inner_valid"),
                    Split(make(64), batch_size, name="outer_valid"), Split(make(64), batch_size, name="test"),
                    name="toy_images")
