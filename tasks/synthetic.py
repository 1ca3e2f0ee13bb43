"""Classic synthetic problems (after the problem set of Wichrowska et al., 2017) and wrappers.

Problems (data-free; their fixed data, if any, is drawn from ``seed`` at construction):

* :class:`BowlTask` -- ill-conditioned 2-D bowl ``f(x) = 1/2 (Rx)^T diag(1, kappa) (Rx)``, ``R``
  a rotation by ``angle``; minimum 0 at the origin.
* :class:`RosenbrockNDTask` -- ``sum_{i<d} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``; minimum 0 at
  ``x = 1``.
* :class:`SparseSoftmaxRegressionTask` -- softmax regression whose features are mostly zero
  (``x_ij = N(0,1) * Bernoulli(density)``); labels from a random linear teacher.
* :class:`NormTask` -- ``f(x) = 1/m sum_i |(Ax - b)_i|^p`` (``p >= 1``, an l_p regression).

Wrappers (around any :class:`~tasks.base.Task`; ``base`` is the wrapped task):

* :class:`SparseGradientTask` -- same loss value, but each gradient entry is kept with
  probability ``keep_prob`` (mask drawn from the loss key) and zeroed otherwise, via
  ``p_used = where(mask, p, stop_gradient(p))``.
* :class:`RescaleTask` -- ``init = base.init / scale``, ``loss(p) = base.loss(scale * p)``:
  the same function in rescaled coordinates (gradients scale by ``scale``).
* :class:`LogObjectiveTask` -- ``log(base.loss - offset + eps)``; defined when the base loss
  stays above ``offset - eps`` (pick ``offset`` <= the task's minimum).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task
from tasks.common import ConfiguredTask, check_float, check_positive_int, default_float, params_dtype
from tasks.nn import softmax_cross_entropy


class BowlTask(ConfiguredTask):
    """Rotated ill-conditioned 2-D quadratic bowl, ``{"x": f[2]}``, minimum 0 at 0."""

    def __init__(self, condition_number: float = 100.0, angle: float = 0.5,
                 init_scale: float = 1.0, name: Optional[str] = None):
        self.condition_number = check_float("condition_number", condition_number, low=1.0)
        self.angle = check_float("angle", angle)
        self.init_scale = check_float("init_scale", init_scale, low=0.0)
        name = name or f"bowl_cond{self.condition_number:g}"
        self._set_config(condition_number=self.condition_number, angle=self.angle,
                         init_scale=self.init_scale, name=name)
        self.name = name
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        self.hessian = rot.T @ np.diag([1.0, self.condition_number]) @ rot

    def init(self, key: jax.Array) -> dict:
        return {"x": self.init_scale * jax.random.normal(key, (2,), default_float())}

    def loss(self, params: dict, key: jax.Array | None = None, batch: Any = None) -> jax.Array:
        x = params["x"]
        return 0.5 * x @ (jnp.asarray(self.hessian, x.dtype) @ x)


class RosenbrockNDTask(ConfiguredTask):
    """``d``-dimensional Rosenbrock function, ``{"x": f[d]}``, init ``U[-2, 2]^d``."""

    def __init__(self, dim: int = 10, name: Optional[str] = None):
        self.dim = check_positive_int("dim", dim, minimum=2)
        name = name or f"rosenbrock_{self.dim}d"
        self._set_config(dim=self.dim, name=name)
        self.name = name

    def init(self, key: jax.Array) -> dict:
        return {"x": jax.random.uniform(key, (self.dim,), default_float(), -2.0, 2.0)}

    def loss(self, params: dict, key: jax.Array | None = None, batch: Any = None) -> jax.Array:
        x = params["x"]
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


class SparseSoftmaxRegressionTask(ConfiguredTask):
    """Softmax regression on fixed sparse features; ``{"w": [f, k], "b": [k]}``, mean CE."""

    def __init__(self, num_features: int = 100, num_classes: int = 10, num_examples: int = 100,
                 density: float = 0.05, seed: int = 0, name: Optional[str] = None):
        self.num_features = check_positive_int("num_features", num_features)
        self.num_classes = check_positive_int("num_classes", num_classes, minimum=2)
        self.num_examples = check_positive_int("num_examples", num_examples)
        self.density = check_float("density", density, low=0.0, high=1.0, low_inclusive=False)
        seed = check_positive_int("seed", seed, minimum=0)
        name = name or f"sparse_softmax_regression_{num_features}x{num_classes}"
        self._set_config(num_features=self.num_features, num_classes=self.num_classes,
                         num_examples=self.num_examples, density=self.density, seed=seed,
                         name=name)
        self.name = name
        rng = np.random.default_rng(seed)
        mask = rng.uniform(size=(num_examples, num_features)) < density
        self.features = rng.standard_normal((num_examples, num_features)) * mask
        teacher = rng.standard_normal((num_features, num_classes))
        self.labels = np.argmax(self.features @ teacher
                                + 0.1 * rng.standard_normal((num_examples, num_classes)), axis=1)

    def init(self, key: jax.Array) -> dict:
        dt = default_float()
        return {"w": 0.01 * jax.random.normal(key, (self.num_features, self.num_classes), dt),
                "b": jnp.zeros((self.num_classes,), dt)}

    def loss(self, params: dict, key: jax.Array | None = None, batch: Any = None) -> jax.Array:
        x = jnp.asarray(self.features, params_dtype(params))
        return softmax_cross_entropy(x @ params["w"] + params["b"], jnp.asarray(self.labels))


class NormTask(ConfiguredTask):
    """``f(x) = 1/m sum_i |(Ax - b)_i|^p`` with Gaussian ``A [m, d]``, ``b [m]`` from ``seed``."""

    def __init__(self, dim: int = 10, num_rows: int = 20, power: float = 1.5, seed: int = 0,
                 name: Optional[str] = None):
        self.dim = check_positive_int("dim", dim)
        self.num_rows = check_positive_int("num_rows", num_rows)
        self.power = check_float("power", power, low=1.0)
        seed = check_positive_int("seed", seed, minimum=0)
        name = name or f"norm_l{self.power:g}_{num_rows}x{dim}"
        self._set_config(dim=self.dim, num_rows=self.num_rows, power=self.power, seed=seed,
                         name=name)
        self.name = name
        rng = np.random.default_rng(seed)
        self.A = rng.standard_normal((num_rows, dim)) / math.sqrt(dim)
        self.b = rng.standard_normal(num_rows)

    def init(self, key: jax.Array) -> dict:
        return {"x": jax.random.normal(key, (self.dim,), default_float())}

    def loss(self, params: dict, key: jax.Array | None = None, batch: Any = None) -> jax.Array:
        x = params["x"]
        r = jnp.asarray(self.A, x.dtype) @ x - jnp.asarray(self.b, x.dtype)
        return jnp.mean(jnp.abs(r) ** self.power)


# --- wrappers ------------------------------------------------------------------------------------

class _Wrapper(Task):
    """Forwards ``datasets`` / ``full_batch`` to ``base``; ``config()`` nests the base's."""

    base: Task
    _extra: dict

    @property
    def datasets(self):  # type: ignore[override]
        return self.base.datasets

    @property
    def full_batch(self) -> bool:
        return self.base.full_batch

    def config(self) -> dict:
        config_fn = getattr(self.base, "config", None)
        base_cfg = config_fn() if config_fn is not None else {}
        return {"base": {"class": type(self.base).__name__, "config": base_cfg}, **self._extra}


def _check_task(task: Any) -> Task:
    if not (hasattr(task, "init") and hasattr(task, "loss")):
        raise TypeError(f"expected a Task (with init and loss), got {type(task).__name__}")
    return task


class SparseGradientTask(_Wrapper):
    """Same loss; the gradient of each entry survives with probability ``keep_prob``."""

    def __init__(self, task: Task, keep_prob: float = 0.5):
        self.base = _check_task(task)
        self.keep_prob = check_float("keep_prob", keep_prob, low=0.0, high=1.0,
                                     low_inclusive=False)
        self._extra = {"keep_prob": self.keep_prob}
        self.name = f"{task.name}_sparse_grad{self.keep_prob:g}"

    @property
    def full_batch(self) -> bool:
        return False  # the gradient is random

    def init(self, key: jax.Array) -> Any:
        return self.base.init(key)

    def mask(self, params: Any, key: jax.Array) -> Any:
        """The boolean keep-mask this key draws (a pytree like ``params``)."""
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [jax.random.bernoulli(k, self.keep_prob, jnp.shape(l))
                                            for k, l in zip(keys, leaves)])

    def loss(self, params: Any, key: jax.Array, batch: Any = None) -> jax.Array:
        kmask, kbase = jax.random.split(key)
        mask = self.mask(params, kmask)
        used = jax.tree.map(lambda p, m: jnp.where(m, p, jax.lax.stop_gradient(p)), params, mask)
        return self.base.loss(used, kbase, batch)

    def eval_loss(self, params: Any, batch: Any = None) -> jax.Array:
        return self.base.eval_loss(params, batch)  # the mask only touches the gradient


class RescaleTask(_Wrapper):
    """``loss(p) = base.loss(scale * p)``, ``init = base.init / scale``."""

    def __init__(self, task: Task, scale: float = 10.0):
        self.base = _check_task(task)
        self.scale = check_float("scale", scale, low=0.0, low_inclusive=False)
        self._extra = {"scale": self.scale}
        self.name = f"{task.name}_rescale{self.scale:g}"

    def init(self, key: jax.Array) -> Any:
        return jax.tree.map(lambda p: p / self.scale, self.base.init(key))

    def loss(self, params: Any, key: jax.Array, batch: Any = None) -> jax.Array:
        return self.base.loss(jax.tree.map(lambda p: p * self.scale, params), key, batch)

    def eval_loss(self, params: Any, batch: Any = None) -> jax.Array:
        return self.base.eval_loss(jax.tree.map(lambda p: p * self.scale, params), batch)


class LogObjectiveTask(_Wrapper):
    """``loss = log(base.loss - offset + eps)``."""

    def __init__(self, task: Task, eps: float = 1e-6, offset: float = 0.0):
        self.base = _check_task(task)
        self.eps = check_float("eps", eps, low=0.0, low_inclusive=False)
        self.offset = check_float("offset", offset)
        self._extra = {"eps": self.eps, "offset": self.offset}
        self.name = f"{task.name}_log"

    def init(self, key: jax.Array) -> Any:
        return self.base.init(key)

    def loss(self, params: Any, key: jax.Array, batch: Any = None) -> jax.Array:
        return jnp.log(self.base.loss(params, key, batch) - self.offset + self.eps)

    def eval_loss(self, params: Any, batch: Any = None) -> jax.Array:
        return jnp.log(self.base.eval_loss(params, batch) - self.offset + self.eps)
