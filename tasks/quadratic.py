"""Quadratic inner problems (data-free).

Fixed task (:class:`QuadraticTask`), parameters ``{"x": f[dim]}``::

    f(x) = 1/2 x^T A x - b^T x + c,      A = Q diag(lam) Q^T,   c = 1/2 b^T A^{-1} b

so the minimizer is ``x* = A^{-1} b`` and the minimum value is exactly 0. ``Q`` is a random
orthogonal matrix and ``b ~ N(0, I)`` drawn from ``seed``; the spectrum ``lam`` is log-spaced
from ``scale`` to ``scale * condition_number`` (``spectrum="logspace"``) or drawn log-uniformly
in that range with both ends included (``spectrum="random"``).

Noise (``noise_std > 0``): ``loss(x, key) = f(x) + noise_std * xi^T x`` with ``xi ~ N(0, I)`` from
the loss key -- an unbiased estimate of ``f`` whose gradient carries isotropic noise of standard
deviation ``noise_std``. Such a task is not full-batch; ``expected_loss`` is the exact ``f``.

Sampled members of :class:`tasks.families.QuadraticFamily` use :class:`SampledQuadraticTask`:
``f(x) = 1/2 (x - t)^T Q diag(lam) Q^T (x - t)`` (+ the same noise), all arrays in the cfg.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task
from tasks.common import ConfiguredTask, check_choice, check_float, check_positive_int, default_float, params_dtype


def random_orthogonal(rng: np.random.Generator, dim: int) -> np.ndarray:
    """Haar-distributed orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))[None, :]


def random_orthogonal_jax(key: jax.Array, dim: int, dtype=None) -> jax.Array:
    """Haar-distributed orthogonal matrix inside JAX (vmappable over ``key``)."""
    dtype = default_float() if dtype is None else dtype
    q, r = jnp.linalg.qr(jax.random.normal(key, (dim, dim), dtype))
    d = jnp.sign(jnp.diag(r))
    d = jnp.where(d == 0, 1.0, d)
    return q * d[None, :]


class QuadraticTask(ConfiguredTask):
    """``f(x) = 1/2 x^T A x - b^T x + c`` with known minimizer ``A^{-1} b`` and minimum 0."""

    def __init__(self, dim: int = 10, condition_number: float = 10.0, scale: float = 1.0,
                 noise_std: float = 0.0, init_scale: float = 1.0, spectrum: str = "logspace",
                 seed: int = 0, name: Optional[str] = None):
        dim = check_positive_int("dim", dim)
        condition_number = check_float("condition_number", condition_number, low=1.0)
        scale = check_float("scale", scale, low=0.0, low_inclusive=False)
        noise_std = check_float("noise_std", noise_std, low=0.0)
        init_scale = check_float("init_scale", init_scale, low=0.0)
        spectrum = check_choice("spectrum", spectrum, ("logspace", "random"))
        seed = check_positive_int("seed", seed, minimum=0)
        if name is None:
            name = f"quadratic_{dim}_cond{condition_number:g}" + (
                f"_noise{noise_std:g}" if noise_std > 0 else "")
        self._set_config(dim=dim, condition_number=condition_number, scale=scale,
                         noise_std=noise_std, init_scale=init_scale, spectrum=spectrum,
                         seed=seed, name=name)
        self.name = name
        self.dim, self.noise_std, self.init_scale = dim, noise_std, init_scale
        rng = np.random.default_rng(seed)
        q = random_orthogonal(rng, dim)
        if spectrum == "logspace" or dim == 1:
            lam = np.geomspace(1.0, condition_number, dim)
        else:
            inner = np.exp(rng.uniform(0.0, np.log(condition_number), dim - 2))
            lam = np.sort(np.concatenate([[1.0, condition_number], inner]))
        lam = scale * lam
        b = rng.standard_normal(dim)
        # float64 NumPy copies define the problem; loss casts to the params' dtype.
        self.eigenvalues = lam
        self.A = (q * lam[None, :]) @ q.T
        self.A = 0.5 * (self.A + self.A.T)
        self.b = b
        self.x_star = q @ ((q.T @ b) / lam)
        self.c = 0.5 * float(b @ self.x_star)
        self.datasets = None

    @property
    def full_batch(self) -> bool:
        return self.noise_std == 0.0

    def optimum(self) -> tuple[np.ndarray, float]:
        """``(x*, f(x*)) = (A^{-1} b, 0)``."""
        return self.x_star.copy(), 0.0

    def init(self, key: jax.Array) -> dict:
        return {"x": self.init_scale * jax.random.normal(key, (self.dim,), default_float())}

    def expected_loss(self, params: dict) -> jax.Array:
        """The noise-free objective ``f(x)``."""
        x = params["x"]
        dt = params_dtype(params)
        A, b = jnp.asarray(self.A, dt), jnp.asarray(self.b, dt)
        return 0.5 * x @ (A @ x) - b @ x + jnp.asarray(self.c, dt)

    def eval_loss(self, params: dict, batch: Any = None) -> jax.Array:
        """The exact expected loss ``f(x)`` (noise off)."""
        return self.expected_loss(params)

    def loss(self, params: dict, key: jax.Array, batch: Any = None) -> jax.Array:
        value = self.expected_loss(params)
        if self.noise_std > 0.0:
            x = params["x"]
            xi = jax.random.normal(key, x.shape, x.dtype)
            value = value + self.noise_std * (xi @ x)
        return value


class SampledQuadraticTask(Task):
    """``f(x) = 1/2 (x - t)^T Q diag(lam) Q^T (x - t) + noise_std * xi^T x``; cfg holds arrays.

    ``cfg`` keys: ``eigvecs [d, d]``, ``eigvals [d]``, ``target [d]``, ``noise_std []``,
    ``init_scale []`` (all may be traced: this class is built inside ``vmap``).
    """

    datasets = None

    def __init__(self, cfg: dict, name: str = "sampled_quadratic"):
        missing = {"eigvecs", "eigvals", "target", "noise_std", "init_scale"} - set(cfg)
        if missing:
            raise ValueError(f"quadratic cfg lacks keys {sorted(missing)}")
        self.cfg = cfg
        self.dim = int(jnp.shape(cfg["target"])[-1])
        self.name = name

    @property
    def full_batch(self) -> bool:
        return False  # noise_std may be nonzero; use expected_loss for the exact objective

    def init(self, key: jax.Array) -> dict:
        x = jax.random.normal(key, (self.dim,), default_float())
        return {"x": jnp.asarray(self.cfg["init_scale"], x.dtype) * x}

    def expected_loss(self, params: dict) -> jax.Array:
        x = params["x"]
        dt = x.dtype
        q = jnp.asarray(self.cfg["eigvecs"], dt)
        lam = jnp.asarray(self.cfg["eigvals"], dt)
        z = q.T @ (x - jnp.asarray(self.cfg["target"], dt))
        return 0.5 * jnp.sum(lam * z * z)

    def eval_loss(self, params: dict, batch: Any = None) -> jax.Array:
        """The exact expected loss (noise off)."""
        return self.expected_loss(params)

    def loss(self, params: dict, key: jax.Array, batch: Any = None) -> jax.Array:
        x = params["x"]
        xi = jax.random.normal(key, x.shape, x.dtype)
        noise = jnp.asarray(self.cfg["noise_std"], x.dtype)
        return self.expected_loss(params) + noise * (xi @ x)
