"""Result assembly: :class:`OptimizeResult`, status codes, early / non-finite results."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize as sopt

from learned_opt.pytree_vector import PackSpec

if TYPE_CHECKING:
    from learned_opt.minimize.objective import _Objective

STATUS_NONFINITE = 98
STATUS_CALLBACK = 99


class OptimizeResult(sopt.OptimizeResult):
    """Result of :func:`minimize` (a ``scipy.optimize.OptimizeResult``, i.e. a dict with attribute
    access). ``x`` and ``jac`` are trees shaped like x0; see the module docstring for every field,
    including ``fun_history``, ``time_history`` and (optax path) ``loss_history``."""



def _grad_tree(spec: PackSpec, g: Any) -> Any:
    if g is None:
        return None
    g = np.asarray(g, dtype=np.float64)
    if g.shape != (spec.size,):
        return None
    return spec.unpack(g)


def _attach_history(res: OptimizeResult, obj: _Objective) -> OptimizeResult:
    res.fun_history = np.asarray(obj.fun_history, dtype=np.float64)
    res.time_history = np.asarray(obj.time_history, dtype=np.float64)
    return res


def _check_final(res: OptimizeResult, gvec: np.ndarray | None) -> None:
    """A result whose value or gradient is not finite is never reported as a success."""
    bad = not np.isfinite(res.fun) or (gvec is not None and not np.isfinite(gvec).all())
    if bad and res.get("status") != STATUS_NONFINITE:
        res.success = False
        res.status = STATUS_NONFINITE
        where = "value" if not np.isfinite(res.fun) else "gradient"
        res.message = f"{res.get('message', '')} (final {where} is not finite)".strip()


def _early_result(obj: _Objective, spec: PackSpec, x: np.ndarray, f: float | None, status: int,
                  message: str, nit: int) -> OptimizeResult:
    x = obj._clip(np.asarray(x, dtype=np.float64))
    g = None
    if f is None:  # the method did not report f at this iterate (TNC): evaluate it for the report
        f = obj.value_at(x)
    if obj.best_x is not None and np.array_equal(x, obj.best_x):
        g = obj.best_g
    res = OptimizeResult(x=spec.unpack(x), fun=float(f), success=False, status=status, message=message,
                         nit=nit, nfev=obj.nfev, njev=obj.njev, nhev=obj.nhev)
    if g is not None:
        res.jac = _grad_tree(spec, g)
    return _attach_history(res, obj)


def _nonfinite_result(obj: _Objective, spec: PackSpec, x0vec: np.ndarray, message: str, nit: int) -> OptimizeResult:
    if obj.best_x is None:  # nothing finite was ever evaluated: report x0 (not as a success)
        res = OptimizeResult(x=spec.unpack(x0vec), fun=float(obj.fun_history[0]) if obj.fun_history else np.nan,
                             success=False, status=STATUS_NONFINITE, message=message, nit=nit,
                             nfev=obj.nfev, njev=obj.njev, nhev=obj.nhev)
        return _attach_history(res, obj)
    xb = np.array(obj.best_x, dtype=np.float64)
    fb = obj.value_at(xb)  # fun(res.x) by construction, whatever happened to scipy's buffers
    res = OptimizeResult(x=spec.unpack(xb), fun=fb, success=False,
                         status=STATUS_NONFINITE, message=message + "; x is the best finite point evaluated",
                         nit=nit, nfev=obj.nfev, njev=obj.njev, nhev=obj.nhev)
    if obj.best_g is not None and fb == obj.best_f:
        res.jac = _grad_tree(spec, obj.best_g)
    return _attach_history(res, obj)

