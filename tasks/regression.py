"""Convex full-batch problems: linear least squares and (multinomial) logistic regression.

Least squares, params ``{"w": [d], "b": []}``, data ``{"x": [n, d], "y": [n]}``::

    L(w, b) = 1/(2n) sum_i (x_i . w + b - y_i)^2 + l2/2 ||w||^2

with a closed-form minimizer (:meth:`LeastSquaresTask.optimum`). Data: ``x_ij ~ N(0, s_j^2)``
with per-feature scales ``s_j`` log-spaced in ``[1/sqrt(kappa), 1]`` (the design's condition
number is ~``kappa``), ``y = x . w_true + 0.5 + noise_std * N(0, 1)``.

Logistic regression, params ``{"w": [d, K], "b": [K]}``::

    L(W, b) = mean_i -log softmax(x_i W + b)[y_i] + l2/2 ||W||_F^2

on synthetic data (``dataset="synthetic"``: ``x ~ N(0, I)``, labels drawn from the softmax of a
random linear teacher, so classes overlap and the optimum is finite) or on a flattened image
dataset (``dataset="digits"``, ...). Both tasks default to ``full_batch=True``: the train split is
served whole and ``loss(params, key, datasets.train.full())`` is the objective.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Datasets, Split
from tasks.common import (
    ConfiguredTask,
    check_datasets,
    check_float,
    check_positive_int,
    default_float,
    full_batch_size,
    load_images,
    num_classes_of,
)
from tasks.nn import softmax_cross_entropy

SPLITS = ("train", "inner_valid", "outer_valid", "test")


def _split_sizes(n_train: int) -> list[int]:
    held = max(16, n_train // 4)
    return [n_train, held, held, held]


def _make_datasets(arrays: list[dict], batch_size: int, seed: int, name: str) -> Datasets:
    splits = [Split(a, batch_size=batch_size, seed=seed + 7919 * j, name=s)
              for j, (s, a) in enumerate(zip(SPLITS, arrays))]
    return Datasets(*splits, name=name)


def _features(batch: dict) -> jax.Array:
    x = batch["x"] if "x" in batch else batch["image"]
    x = jnp.asarray(x)
    return jnp.reshape(x, (x.shape[0], -1))


class LeastSquaresTask(ConfiguredTask):
    """Linear least squares on seeded synthetic data; exact optimum via the normal equations."""

    def __init__(self, num_examples: int = 256, dim: int = 16, noise_std: float = 0.1,
                 condition_number: float = 10.0, l2: float = 0.0, fit_bias: bool = True,
                 batch_size: Optional[int] = None, seed: int = 0, name: Optional[str] = None,
                 datasets: Optional[Datasets] = None):
        num_examples = check_positive_int("num_examples", num_examples)
        dim = check_positive_int("dim", dim)
        noise_std = check_float("noise_std", noise_std, low=0.0)
        condition_number = check_float("condition_number", condition_number, low=1.0)
        self.l2 = check_float("l2", l2, low=0.0)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        seed = check_positive_int("seed", seed, minimum=0)
        self.fit_bias = bool(fit_bias)
        name = name or f"least_squares_{num_examples}x{dim}"
        self._set_config(num_examples=num_examples, dim=dim, noise_std=noise_std,
                         condition_number=condition_number, l2=self.l2, fit_bias=self.fit_bias,
                         batch_size=batch_size, seed=seed, name=name)
        self.name = name
        self._full_batch = batch_size is None
        if datasets is None:
            rng = np.random.default_rng(seed)
            scales = np.geomspace(1.0 / np.sqrt(condition_number), 1.0, dim)
            w_true = rng.standard_normal(dim)
            arrays = []
            for n in _split_sizes(num_examples):
                x = rng.standard_normal((n, dim)) * scales
                y = x @ w_true + 0.5 + noise_std * rng.standard_normal(n)
                arrays.append({"x": x.astype(np.float32), "y": y.astype(np.float32)})
            datasets = _make_datasets(arrays, batch_size or full_batch_size(), seed, name)
        self.datasets = check_datasets(datasets, ("x", "y"))
        self.dim = int(np.prod(self.datasets.train.arrays["x"].shape[1:]))

    @property
    def full_batch(self) -> bool:
        return self._full_batch

    def init(self, key: jax.Array) -> dict:
        dt = default_float()
        w = jax.random.normal(key, (self.dim,), dt) / np.sqrt(self.dim)
        return {"w": w, "b": jnp.zeros((), dt)}

    def loss(self, params: dict, key: jax.Array, batch: dict) -> jax.Array:
        x = _features(batch)
        pred = x @ params["w"] + (params["b"] if self.fit_bias else 0.0)
        r = pred - jnp.asarray(batch["y"])
        return 0.5 * jnp.mean(r * r) + 0.5 * self.l2 * jnp.sum(params["w"] ** 2)

    def optimum(self) -> tuple[dict, float]:
        """Exact minimizer and minimum over the train split (float64 normal equations)."""
        assert self.datasets is not None
        data = self.datasets.train.full()
        x = np.asarray(data["x"], np.float64).reshape(len(data["x"]), -1)
        y = np.asarray(data["y"], np.float64)
        n = len(y)
        design = np.concatenate([x, np.ones((n, 1))], 1) if self.fit_bias else x
        reg = self.l2 * n * np.eye(design.shape[1])
        if self.fit_bias:
            reg[-1, -1] = 0.0  # the bias is not penalized
        theta = np.linalg.solve(design.T @ design + reg, design.T @ y)
        w = theta[:self.dim]
        b = theta[-1] if self.fit_bias else 0.0
        r = design @ theta - y
        value = 0.5 * np.mean(r * r) + 0.5 * self.l2 * np.sum(w * w)
        return {"w": w, "b": np.asarray(b)}, float(value)


class LogisticRegressionTask(ConfiguredTask):
    """Multinomial logistic regression (softmax regression with an L2 penalty)."""

    def __init__(self, dataset: str = "synthetic", num_examples: int = 512, dim: int = 16,
                 num_classes: int = 3, l2: float = 1e-3, batch_size: Optional[int] = None,
                 seed: int = 0, image_size: Optional[int] = None, data_dir: Optional[str] = None,
                 center: bool = True, name: Optional[str] = None,
                 datasets: Optional[Datasets] = None):
        num_examples = check_positive_int("num_examples", num_examples)
        dim = check_positive_int("dim", dim)
        num_classes = check_positive_int("num_classes", num_classes, minimum=2)
        self.l2 = check_float("l2", l2, low=0.0)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        seed = check_positive_int("seed", seed, minimum=0)
        if not isinstance(dataset, str):
            raise TypeError(f"dataset must be a str, got {type(dataset).__name__}")
        name = name or (f"logistic_regression_{num_examples}x{dim}_{num_classes}cls"
                        if dataset == "synthetic" else f"{dataset}_logistic_regression")
        self._set_config(dataset=dataset, num_examples=num_examples, dim=dim,
                         num_classes=num_classes, l2=self.l2, batch_size=batch_size, seed=seed,
                         image_size=image_size, data_dir=data_dir, center=bool(center), name=name)
        self.name = name
        self._full_batch = batch_size is None
        bs = batch_size or full_batch_size()
        if datasets is None and dataset == "synthetic":
            rng = np.random.default_rng(seed)
            teacher = 2.0 * rng.standard_normal((dim, num_classes)) / np.sqrt(dim)
            arrays = []
            for n in _split_sizes(num_examples):
                x = rng.standard_normal((n, dim))
                logits = x @ teacher
                p = np.exp(logits - logits.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                u = rng.uniform(size=(n, 1))
                labels = np.minimum((u > np.cumsum(p, 1)).sum(1), num_classes - 1)
                arrays.append({"x": x.astype(np.float32), "label": labels.astype(np.int32)})
            datasets = _make_datasets(arrays, bs, seed, name)
            self.num_classes = num_classes
        elif datasets is None:
            datasets = load_images(dataset, image_size=image_size, batch_size=bs, seed=seed,
                                   data_dir=data_dir, flatten=True, center=center)
        self.datasets = datasets
        key = "x" if "x" in datasets.train.arrays else "image"
        check_datasets(datasets, (key, "label"))
        if dataset != "synthetic" or not hasattr(self, "num_classes"):
            self.num_classes = num_classes_of(datasets)
        self.dim = int(np.prod(datasets.train.arrays[key].shape[1:]))

    @property
    def full_batch(self) -> bool:
        return self._full_batch

    def init(self, key: jax.Array) -> dict:
        dt = default_float()
        w = 0.01 * jax.random.normal(key, (self.dim, self.num_classes), dt)
        return {"w": w, "b": jnp.zeros((self.num_classes,), dt)}

    def logits(self, params: dict, batch: dict) -> jax.Array:
        return _features(batch) @ params["w"] + params["b"]

    def loss(self, params: dict, key: jax.Array, batch: dict) -> jax.Array:
        ce = softmax_cross_entropy(self.logits(params, batch), batch["label"])
        return ce + 0.5 * self.l2 * jnp.sum(params["w"] ** 2)
