"""Extra arguments of the objective: array leaves are traced (new values reuse the compiled
objective), every other leaf is a static, hashed constant of the compiled code."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np


class _Static:
    """A hashable wrapper for a non-array argument (hash by value if possible, else by identity)."""

    __slots__ = ("value", "_h")

    def __init__(self, value):
        self.value = value
        try:
            self._h = hash(("v", value))
        except TypeError:
            self._h = hash(("id", id(value)))

    def __hash__(self):
        return self._h

    def __eq__(self, other):
        if not isinstance(other, _Static):
            return False
        if self.value is other.value:
            return True
        try:
            return bool(type(self.value) is type(other.value) and self.value == other.value)
        except Exception:
            return False


def _is_dynamic(leaf: Any) -> bool:
    return isinstance(leaf, (np.ndarray, jax.Array, np.generic))


class _ArgSpec:
    """Split ``args`` into traced array leaves and static (hashed) leaves."""

    __slots__ = ("treedef", "static", "_h")

    def __init__(self, args: tuple):
        leaves, self.treedef = jax.tree_util.tree_flatten(args)
        self.static = tuple(None if _is_dynamic(x) else _Static(x) for x in leaves)
        self._h = hash((self.treedef, self.static))

    @staticmethod
    def dynamic(args: tuple) -> list:
        return [x for x in jax.tree_util.tree_leaves(args) if _is_dynamic(x)]

    def merge(self, dyn: list) -> tuple:
        it = iter(dyn)
        leaves = [next(it) if s is None else s.value for s in self.static]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def __hash__(self):
        return self._h

    def __eq__(self, other):
        return isinstance(other, _ArgSpec) and self.treedef == other.treedef and self.static == other.static

