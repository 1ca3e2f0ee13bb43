"""Vmappable task families: ``sample(key) -> cfg`` (a dict of arrays) and ``task_fn(cfg) -> Task``.

A family only samples what keeps shapes static, so ``jax.vmap(family.sample)(keys)`` draws N
members at once and ``jax.vmap(lambda cfg, p, k, b: family.task_fn(cfg).loss(p, k, b))`` evaluates
them together inside ``jit``:

* :class:`QuadraticFamily` -- ``f(x) = 1/2 (x-t)^T Q diag(lam) Q^T (x-t)`` (+ gradient noise):
  ``Q`` Haar-orthogonal, ``lam_i = s * kappa^(i/(d-1))`` with ``log10 kappa ~ U[min, max]`` and
  ``log s ~ U[log min_scale, log max_scale]``, target ``t ~ N(0, target_std^2 I)``, noise standard
  deviation log-uniform in ``[min_noise_std, max_noise_std]`` (0 when ``max_noise_std = 0``),
  init ``x0 ~ N(0, init_scale^2 I)`` with ``init_scale`` log-uniform.
* :class:`ImageMLPFamily` -- an MLP classifier on a fixed dataset/architecture; each member draws
  its activation and weight initializer (indices, applied with ``lax.switch``) and a log-uniform
  multiplier of the initial weights.
* :class:`ConvFamily` -- the same sampled quantities for a fixed conv-net architecture.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from tasks.base import Datasets, Task, TaskFamily
from tasks.common import (
    _jsonable,
    check_choice,
    check_float,
    check_int_list,
    check_positive_int,
    default_float,
    num_classes_of,
)
from tasks.conv import HEADS, PADDINGS, POOLINGS, ConvNet
from tasks.image_mlp import ClassifierTask, MLPClassifierMember, resolve_image_datasets
from tasks.nn import (
    ACTIVATIONS,
    INITIALIZERS,
    MLP,
    _names_or_default,
    activation_switch,
    initializer_switch,
    scaled_initializer,
)
from tasks.quadratic import SampledQuadraticTask, random_orthogonal_jax


def log_uniform(key: jax.Array, low: float, high: float, shape=(), dtype=None) -> jax.Array:
    """``exp(U[log low, log high])`` (``low == high`` gives the constant)."""
    dtype = default_float() if dtype is None else dtype
    u = jax.random.uniform(key, shape, dtype)
    return jnp.exp(math.log(low) + u * (math.log(high) - math.log(low)))


class ConfiguredFamily(TaskFamily):
    """A family whose constructor kwargs are JSON-friendly and returned by ``config()``."""

    _config: dict

    def _set_config(self, **kwargs: Any) -> None:
        self._config = {k: _jsonable(v) for k, v in kwargs.items()}

    def config(self) -> dict:
        return {k: _jsonable(v) for k, v in getattr(self, "_config", {}).items()}


def _check_range(lo_name: str, lo: float, hi_name: str, hi: float, positive: bool = True):
    lo = check_float(lo_name, lo, low=0.0, low_inclusive=not positive)
    hi = check_float(hi_name, hi, low=0.0, low_inclusive=not positive)
    if hi < lo:
        raise ValueError(f"{hi_name} ({hi}) must be >= {lo_name} ({lo})")
    return lo, hi


class QuadraticFamily(ConfiguredFamily):
    """Random ill-conditioned (optionally noisy) quadratics of a fixed dimension; data-free."""

    def __init__(self, dim: int = 10, min_log10_cond: float = 0.0, max_log10_cond: float = 3.0,
                 min_scale: float = 0.1, max_scale: float = 10.0, target_std: float = 1.0,
                 min_noise_std: float = 0.01, max_noise_std: float = 0.0,
                 min_init_scale: float = 0.5, max_init_scale: float = 2.0,
                 name: Optional[str] = None):
        self.dim = check_positive_int("dim", dim)
        self.min_log10_cond = check_float("min_log10_cond", min_log10_cond, low=0.0)
        self.max_log10_cond = check_float("max_log10_cond", max_log10_cond, low=0.0)
        if self.max_log10_cond < self.min_log10_cond:
            raise ValueError("max_log10_cond must be >= min_log10_cond")
        self.min_scale, self.max_scale = _check_range("min_scale", min_scale,
                                                      "max_scale", max_scale)
        self.target_std = check_float("target_std", target_std, low=0.0)
        self.max_noise_std = check_float("max_noise_std", max_noise_std, low=0.0)
        self.min_noise_std = check_float("min_noise_std", min_noise_std, low=0.0,
                                         low_inclusive=self.max_noise_std == 0)
        if self.max_noise_std > 0 and self.min_noise_std > self.max_noise_std:
            raise ValueError("min_noise_std must be <= max_noise_std")
        self.min_init_scale, self.max_init_scale = _check_range(
            "min_init_scale", min_init_scale, "max_init_scale", max_init_scale)
        self.name = name or f"quadratic_family_{self.dim}"
        self._set_config(dim=self.dim, min_log10_cond=self.min_log10_cond,
                         max_log10_cond=self.max_log10_cond, min_scale=self.min_scale,
                         max_scale=self.max_scale, target_std=self.target_std,
                         min_noise_std=self.min_noise_std, max_noise_std=self.max_noise_std,
                         min_init_scale=self.min_init_scale, max_init_scale=self.max_init_scale,
                         name=self.name)
        self.datasets = None

    def sample(self, key: jax.Array) -> dict:
        dt = default_float()
        kq, kc, ks, kt, kn, ki = jax.random.split(key, 6)
        log10_cond = jax.random.uniform(kc, (), dt, self.min_log10_cond, self.max_log10_cond)
        scale = log_uniform(ks, self.min_scale, self.max_scale, dtype=dt)
        frac = jnp.linspace(0.0, 1.0, self.dim, dtype=dt) if self.dim > 1 else jnp.zeros(1, dt)
        eigvals = scale * jnp.power(10.0, log10_cond * frac).astype(dt)
        if self.max_noise_std > 0:
            noise = log_uniform(kn, self.min_noise_std, self.max_noise_std, dtype=dt)
        else:
            noise = jnp.zeros((), dt)
        return {
            "eigvecs": random_orthogonal_jax(kq, self.dim, dt),
            "eigvals": eigvals,
            "target": self.target_std * jax.random.normal(kt, (self.dim,), dt),
            "noise_std": noise,
            "init_scale": log_uniform(ki, self.min_init_scale, self.max_init_scale, dtype=dt),
        }

    def task_fn(self, cfg: dict) -> Task:
        return SampledQuadraticTask(cfg, name=self.name)


DEFAULT_FAMILY_ACTIVATIONS = ("relu", "tanh", "elu", "swish", "gelu", "sigmoid", "leaky_relu",
                              "softplus")
DEFAULT_FAMILY_INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                               "lecun_uniform", "lecun_normal")


class ImageMLPFamily(ConfiguredFamily):
    """MLP classifiers on one image dataset with sampled activation, initializer and init scale.

    cfg = ``{"activation": int32 index into activations, "w_init": int32 index into
    initializers, "init_scale": float (log-uniform in [min_init_scale, max_init_scale])}``; the
    initial kernels are ``init_scale * initializer(key, shape)``, biases start at 0.
    """

    def __init__(self, dataset: str = "digits", image_size: Optional[int] = 8,
                 hidden_sizes: Sequence[int] = (32,), batch_size: int = 128, seed: int = 0,
                 activations: Optional[Sequence[str]] = None,
                 initializers: Optional[Sequence[str]] = None,
                 min_init_scale: float = 0.5, max_init_scale: float = 2.0,
                 use_bias: bool = True, layer_norm: bool = False, l2: float = 0.0,
                 data_dir: Optional[str] = None, center: bool = True,
                 name: Optional[str] = None, datasets: Optional[Datasets] = None):
        self.hidden_sizes = check_int_list("hidden_sizes", hidden_sizes)
        self.activations = _names_or_default(activations, DEFAULT_FAMILY_ACTIVATIONS, ACTIVATIONS)
        self.initializers = _names_or_default(initializers, DEFAULT_FAMILY_INITIALIZERS,
                                              INITIALIZERS)
        self.min_init_scale, self.max_init_scale = _check_range(
            "min_init_scale", min_init_scale, "max_init_scale", max_init_scale)
        batch_size = check_positive_int("batch_size", batch_size)
        seed = check_positive_int("seed", seed, minimum=0)
        self.l2 = check_float("l2", l2, low=0.0)
        self.use_bias, self.layer_norm = bool(use_bias), bool(layer_norm)
        self.name = name or (f"{dataset}{'' if image_size is None else image_size}_mlp_family_"
                             + "x".join(map(str, self.hidden_sizes)))
        self._set_config(dataset=dataset, image_size=image_size,
                         hidden_sizes=list(self.hidden_sizes), batch_size=batch_size, seed=seed,
                         activations=list(self.activations), initializers=list(self.initializers),
                         min_init_scale=self.min_init_scale, max_init_scale=self.max_init_scale,
                         use_bias=self.use_bias, layer_norm=self.layer_norm, l2=self.l2,
                         data_dir=data_dir, center=bool(center), name=self.name)
        self.datasets = resolve_image_datasets(datasets, dataset, image_size, batch_size, seed,
                                               data_dir, center, full_batch=False)
        self.num_classes = num_classes_of(self.datasets)

    def sample(self, key: jax.Array) -> dict:
        ka, kw, ks = jax.random.split(key, 3)
        return {
            "activation": jax.random.randint(ka, (), 0, len(self.activations), jnp.int32),
            "w_init": jax.random.randint(kw, (), 0, len(self.initializers), jnp.int32),
            "init_scale": log_uniform(ks, self.min_init_scale, self.max_init_scale),
        }

    def task_fn(self, cfg: dict) -> Task:
        act = functools.partial(activation_switch, cfg["activation"], names=self.activations)
        kinit = scaled_initializer(initializer_switch(cfg["w_init"], names=self.initializers),
                                   cfg["init_scale"])
        model = MLP(hidden_sizes=self.hidden_sizes, out_size=self.num_classes, activation=act,
                    kernel_init=kinit, use_bias=self.use_bias, layer_norm=self.layer_norm)
        return MLPClassifierMember(model, self.datasets, name=self.name, l2=self.l2)


class _ConvMember(ClassifierTask):
    """A member of :class:`ConvFamily` (built inside ``vmap`` from a traced cfg)."""

    def __init__(self, model, datasets: Datasets, name: str, l2: float = 0.0):
        self.model, self.datasets, self.name, self.l2 = model, datasets, name, l2
        self._full_batch = False
        self._set_config()


class ConvFamily(ImageMLPFamily):
    """Conv-net classifiers (fixed architecture) with sampled activation, initializer and scale.

    cfg as in :class:`ImageMLPFamily`; the architecture arguments are those of
    :class:`tasks.conv.ConvTask`.
    """

    def __init__(self, dataset: str = "digits", image_size: Optional[int] = 8,
                 channels: Sequence[int] = (8, 16), strides: Sequence[int] = (2, 2),
                 kernel_size: int = 3, padding: str = "SAME", pooling: str = "none",
                 head: str = "mean", batch_size: int = 128, seed: int = 0,
                 activations: Optional[Sequence[str]] = None,
                 initializers: Optional[Sequence[str]] = None,
                 min_init_scale: float = 0.5, max_init_scale: float = 2.0,
                 use_bias: bool = True, l2: float = 0.0, data_dir: Optional[str] = None,
                 center: bool = True, name: Optional[str] = None,
                 datasets: Optional[Datasets] = None):
        self.channels = check_int_list("channels", channels, allow_empty=False)
        strides = check_int_list("strides", strides, allow_empty=False)
        if len(strides) == 1:
            strides = strides * len(self.channels)
        if len(strides) != len(self.channels):
            raise ValueError(f"strides has {len(strides)} entries but channels has "
                             f"{len(self.channels)}")
        self.strides = strides
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.head = check_choice("head", head, HEADS)
        name = name or (f"{dataset}{'' if image_size is None else image_size}_conv_family_"
                        + "x".join(map(str, self.channels)))
        super().__init__(dataset=dataset, image_size=image_size, hidden_sizes=(),
                         batch_size=batch_size, seed=seed, activations=activations,
                         initializers=initializers, min_init_scale=min_init_scale,
                         max_init_scale=max_init_scale, use_bias=use_bias, layer_norm=False,
                         l2=l2, data_dir=data_dir, center=center, name=name, datasets=datasets)
        if len(self.datasets.train.arrays["image"].shape) != 4:
            raise ValueError("ConvFamily needs NHWC images")
        cfg = self._config
        for k in ("hidden_sizes", "layer_norm"):
            cfg.pop(k, None)
        cfg.update(channels=list(self.channels), strides=list(self.strides),
                   kernel_size=self.kernel_size, padding=self.padding, pooling=self.pooling,
                   head=self.head)

    def task_fn(self, cfg: dict) -> Task:
        act = functools.partial(activation_switch, cfg["activation"], names=self.activations)
        kinit = scaled_initializer(initializer_switch(cfg["w_init"], names=self.initializers),
                                   cfg["init_scale"])
        model = ConvNet(channels=self.channels, strides=self.strides,
                        num_classes=self.num_classes, kernel_size=self.kernel_size,
                        padding=self.padding, pooling=self.pooling, head=self.head,
                        activation=act, kernel_init=kinit, use_bias=self.use_bias)
        return _ConvMember(model, self.datasets, name=self.name, l2=self.l2)
