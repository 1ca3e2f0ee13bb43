"""Task augmentation by weight reparameterization.

Given a task with loss ``f(theta)`` and init ``theta_0``, the reparameterized task optimizes
``w`` with::

    init:  w_0 = theta_0 / s          loss:  g(w) = f(w * s)          grad_w g = s * grad f(w s)

so the function (and the loss at init) is unchanged while every optimizer's dynamics change:
gradient-descent steps in ``w`` move ``theta`` by ``s^2`` times as much. Scales ``s`` are
log-uniform in ``[min_scale, max_scale]``, one per task (``"global"``), per parameter tensor
(``"tensor"``) or per parameter entry (``"parameter"``).

* :class:`ReparamTask` -- a fixed task with scales drawn once from ``seed``.
* :class:`ReparamFamily` -- wraps a vmappable family: ``sample(key) = {"base": base_cfg,
  "scales": ...}`` (shapes static per mode), so reparameterized members vmap too.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp

from tasks.base import Task, TaskFamily
from tasks.common import _jsonable, check_choice, check_float, check_positive_int, default_float

MODES = ("global", "tensor", "parameter")


def sample_scales(key: jax.Array, param_shapes: Any, mode: str, min_scale: float,
                  max_scale: float, dtype=None) -> Any:
    """Log-uniform scales: a scalar (``global``), one scalar per leaf (``tensor``) or an array
    like each leaf (``parameter``). ``param_shapes`` is a pytree of arrays/ShapeDtypeStructs."""
    dtype = default_float() if dtype is None else dtype
    lo, hi = math.log(min_scale), math.log(max_scale)

    def draw(k, shape):
        return jnp.exp(lo + (hi - lo) * jax.random.uniform(k, shape, dtype))

    if mode == "global":
        return draw(key, ())
    leaves, treedef = jax.tree.flatten(param_shapes)
    keys = jax.random.split(key, max(len(leaves), 1))[:len(leaves)]
    shapes = [() if mode == "tensor" else tuple(jnp.shape(l)) for l in leaves]
    return jax.tree.unflatten(treedef, [draw(k, s) for k, s in zip(keys, shapes)])


def _apply(params: Any, scales: Any, op) -> Any:
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(scales)) and not isinstance(scales, dict):
        return jax.tree.map(lambda p: op(p, jnp.asarray(scales, p.dtype)), params)
    return jax.tree.map(lambda p, s: op(p, jnp.asarray(s, p.dtype)), params, scales)


class ReparamMember(Task):
    """``base`` reparameterized with given ``scales`` (a scalar or a pytree matching params)."""

    def __init__(self, base: Task, scales: Any, name: Optional[str] = None):
        self.base = base
        self.scales = scales
        self.name = name or f"{base.name}_reparam"

    @property
    def datasets(self):  # type: ignore[override]
        return self.base.datasets

    @property
    def full_batch(self) -> bool:
        return self.base.full_batch

    def to_base(self, params: Any) -> Any:
        """``theta = w * s``: the base task's parameters for these reparameterized ones."""
        return _apply(params, self.scales, lambda p, s: p * s)

    def from_base(self, params: Any) -> Any:
        """``w = theta / s``."""
        return _apply(params, self.scales, lambda p, s: p / s)

    def init(self, key: jax.Array) -> Any:
        return self.from_base(self.base.init(key))

    def loss(self, params: Any, key: jax.Array, batch: Any = None) -> jax.Array:
        return self.base.loss(self.to_base(params), key, batch)

    def eval_loss(self, params: Any, batch: Any = None) -> jax.Array:
        return self.base.eval_loss(self.to_base(params), batch)


class ReparamTask(ReparamMember):
    """A fixed task with log-uniform weight scales drawn once from ``seed``.

    ``config()`` returns ``{"base": {"class", "config"}, "mode", "min_scale", "max_scale",
    "seed"}``; the base itself is passed as an object.
    """

    def __init__(self, task: Task, mode: str = "tensor", min_scale: float = 0.01,
                 max_scale: float = 100.0, seed: int = 0, name: Optional[str] = None):
        if not (hasattr(task, "init") and hasattr(task, "loss")):
            raise TypeError(f"expected a Task, got {type(task).__name__}")
        self.mode = check_choice("mode", mode, MODES)
        self.min_scale = check_float("min_scale", min_scale, low=0.0, low_inclusive=False)
        self.max_scale = check_float("max_scale", max_scale, low=0.0, low_inclusive=False)
        if self.max_scale < self.min_scale:
            raise ValueError(f"max_scale ({max_scale}) must be >= min_scale ({min_scale})")
        self.seed = check_positive_int("seed", seed, minimum=0)
        key = jax.random.PRNGKey(self.seed)
        shapes = jax.eval_shape(task.init, key)
        scales = sample_scales(jax.random.fold_in(key, 1), shapes, self.mode, self.min_scale,
                               self.max_scale)
        super().__init__(task, scales, name or f"{task.name}_reparam_{self.mode}")

    def config(self) -> dict:
        config_fn = getattr(self.base, "config", None)
        base_cfg = config_fn() if config_fn is not None else {}
        return {"base": {"class": type(self.base).__name__, "config": base_cfg},
                "mode": self.mode, "min_scale": self.min_scale, "max_scale": self.max_scale,
                "seed": self.seed}


class ReparamFamily(TaskFamily):
    """Reparameterized members of a vmappable family: cfg ``{"base": ..., "scales": ...}``."""

    def __init__(self, family: TaskFamily, mode: str = "tensor", min_scale: float = 0.01,
                 max_scale: float = 100.0, name: Optional[str] = None):
        self.family = family
        self.mode = check_choice("mode", mode, MODES)
        self.min_scale = check_float("min_scale", min_scale, low=0.0, low_inclusive=False)
        self.max_scale = check_float("max_scale", max_scale, low=0.0, low_inclusive=False)
        if self.max_scale < self.min_scale:
            raise ValueError(f"max_scale ({max_scale}) must be >= min_scale ({min_scale})")
        self.name = name or f"{family.name}_reparam_{self.mode}"
        self.datasets = getattr(family, "datasets", None)

    def _param_shapes(self, key: jax.Array) -> Any:
        return jax.eval_shape(lambda k: self.family.task_fn(self.family.sample(k)).init(k), key)

    def sample(self, key: jax.Array) -> dict:
        kb, ks = jax.random.split(key)
        shapes = self._param_shapes(kb)
        return {"base": self.family.sample(kb),
                "scales": sample_scales(ks, shapes, self.mode, self.min_scale, self.max_scale)}

    def task_fn(self, cfg: dict) -> Task:
        return ReparamMember(self.family.task_fn(cfg["base"]), cfg["scales"], name=self.name)

    def config(self) -> dict:
        config_fn = getattr(self.family, "config", None)
        base_cfg = config_fn() if config_fn is not None else {}
        return _jsonable({"base": {"class": type(self.family).__name__, "config": base_cfg},
                          "mode": self.mode, "min_scale": self.min_scale,
                          "max_scale": self.max_scale})
