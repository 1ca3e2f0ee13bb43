"""The problem record every backend receives, and the ``jac=True`` contract."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from learned_opt.pytree_vector import PackSpec

FD_SCHEMES = ("2-point", "3-point", "cs")
NAN_POLICIES = ("stop", "raise", "propagate")


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One validated call of :func:`~learned_opt.minimize.minimize`.

    ``fun(x, *args)`` with ``x`` a tree of layout ``spec``; ``jac``/``hess``/``hessp`` as the
    user gave them; ``lb``/``ub`` float64 vectors in pack order (both None: unbounded);
    ``nan_policy`` one of :data:`NAN_POLICIES`.
    """

    fun: Callable
    spec: PackSpec
    args: tuple = ()
    jac: Any = None
    hess: Any = None
    hessp: Any = None
    lb: np.ndarray | None = None
    ub: np.ndarray | None = None
    nan_policy: str = "stop"

    @property
    def bounded(self) -> bool:
        return self.lb is not None


def split_value_grad(out: Any) -> tuple[Any, Any]:
    """``(value, grad_tree)`` from what ``fun`` returned under ``jac=True`` (dict-minimize's
    contract); TypeError naming what it returned otherwise."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError("with jac=True, fun must return (value, grad_dict); "
                        f"it returned {type(out).__name__}")
    return out[0], out[1]
