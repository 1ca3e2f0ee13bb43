"""The learned-optimizer interface.

A learned optimizer is a family of optimizers indexed by meta-parameters θ:

* ``init(key) -> theta`` draws the initial meta-parameters (a pytree dict of arrays);
* ``opt_fn(theta, num_steps=None) -> optax.GradientTransformationExtraArgs`` builds an ordinary
  optax optimizer from θ. Its ``update(grads, state, params, *, loss=...)`` receives the current
  training loss as an extra keyword argument (optimizers that do not use it ignore it).

Both functions are pure, so θ can be batched with ``jax.vmap`` (ES populations) and differentiated
through (reparameterization gradients). ``config()`` returns the constructor keyword arguments so a
checkpoint can rebuild the same architecture.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

Theta = Any  # pytree (dict) of meta-parameter arrays


class LearnedOptimizer:
    """Base class for learned optimizers. Subclasses implement ``init``, ``opt_fn``, ``config``."""

    name: str = "learned_optimizer"

    def init(self, key: jax.Array) -> Theta:
        raise NotImplementedError  # abstract

    def opt_fn(self, theta: Theta, num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
        raise NotImplementedError  # abstract

    def config(self) -> dict:
        """JSON-serializable constructor keyword arguments (``type(self)(**config())`` rebuilds it)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def num_meta_params(theta: Theta) -> int:
    """Total number of scalar meta-parameters in θ."""
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(theta)))
