"""Options and user callbacks shared by every backend."""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from learned_opt.minimize.result import OptimizeResult
from learned_opt.pytree_vector import PackSpec

_OWN_OPTIONS = ("nan_policy",)
_GENERIC_OPTIONS = ("maxiter", "disp")  # accepted by every method (scipy documents both as generic)

def _check_generic(options: dict) -> None:
    """Validate the generic options ``maxiter`` (non-negative int) and ``disp`` (bool-like)."""
    if "maxiter" in options:
        m = options["maxiter"]
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
            raise ValueError(f"options['maxiter'] must be a non-negative integer; got {m!r}")
    if "disp" in options and not isinstance(options["disp"], (bool, np.bool_, int, np.integer)):
        raise ValueError(f"options['disp'] must be a bool; got {options['disp']!r}")


def _check_options(options: dict, valid: set[str] | None, where: str) -> None:
    if valid is None:
        return
    unknown = sorted(set(options) - valid - set(_GENERIC_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for {where}; valid options: "
                         f"{', '.join(sorted(valid | set(_OWN_OPTIONS) | set(_GENERIC_OPTIONS)))}")


def _callback_form(callback: Callable) -> str:
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return "x"
    return "result" if "intermediate_result" in params else "x"


def _call_user_callback(callback, form: str | None, spec: PackSpec, x: np.ndarray, f: float | None, nit: int,
                        value_at: Callable | None = None) -> bool:
    """Call the user's callback with a dict; True if it asks to stop (returns True / StopIteration).
    ``value_at(x)`` supplies f for the intermediate_result form when the method did not report it."""
    xd = spec.unpack(x)
    if f is None and form == "result" and value_at is not None:
        f = value_at(np.asarray(x, dtype=np.float64))
    try:
        if form == "result":
            ret = callback(intermediate_result=OptimizeResult(x=xd, fun=f, nit=nit))
        else:
            ret = callback(xd)
    except StopIteration:
        return True
    return isinstance(ret, (bool, np.bool_)) and bool(ret)

