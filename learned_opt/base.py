"""The learned-optimizer interface.

A learned optimizer is a family of optimizers indexed by meta-parameters θ:

* ``init(key) -> theta`` draws the initial meta-parameters (a pytree dict of arrays);
* ``opt_fn(theta, num_steps=None) -> optax.GradientTransformationExtraArgs`` builds an ordinary
  optax optimizer from θ. Its ``update(grads, state, params, *, loss=...)`` receives the current
  training loss as an extra keyword argument (optimizers that do not use it ignore it).

Both functions are pure, so θ can be batched with ``jax.vmap`` (ES populations) and differentiated
through (reparameterization gradients).

Optimizers are frozen dataclasses: their fields are the architecture's hyperparameters, they are
hashable and compare by value, and ``config()`` (the fields, tuples as lists) is what a checkpoint
stores to rebuild the same architecture with ``type(lopt)(**config)``. Subclasses normalize and
validate their fields in ``__post_init__`` (through :meth:`LearnedOptimizer._set`).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import numpy as np
import optax

Theta = Any  # pytree (dict) of meta-parameter arrays


def _json_value(value: Any) -> Any:
    """A field value as JSON-ready data: tuples (and nested tuples) become lists."""
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer(abc.ABC):
    """Base class of learned optimizers: subclasses implement ``init`` and ``opt_fn``."""

    name: ClassVar[str] = "learned_optimizer"

    @abc.abstractmethod
    def init(self, key: jax.Array) -> Theta:
        """Initial meta-parameters θ."""

    @abc.abstractmethod
    def opt_fn(self, theta: Theta, num_steps: int | jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        """The optax optimizer with meta-parameters ``theta`` (``num_steps``: the horizon, if known)."""

    def config(self) -> dict:
        """JSON-serializable constructor keyword arguments (``type(self)(**config())`` rebuilds
        it): one entry per dataclass field."""
        return {f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def _set(self, **values: Any) -> None:
        """Store normalized field values (for ``__post_init__`` of the frozen subclasses)."""
        for key, value in values.items():
            object.__setattr__(self, key, value)


def num_meta_params(theta: Theta) -> int:
    """Total number of scalar meta-parameters in θ."""
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(theta)))
