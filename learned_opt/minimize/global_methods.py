"""scipy's global optimizers: one small adapter per method (generic options → its own names,
how it gets the objective, gradient, bounds and callback), one shared driver."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import scipy.optimize as sopt

from learned_opt.minimize import _scipy_compat
from learned_opt.minimize.methods import METHODS
from learned_opt.minimize.objective import _NonFinite, _Objective, _Stop
from learned_opt.minimize.options import _GENERIC_OPTIONS, _call_user_callback, _callback_form, _check_options
from learned_opt.minimize.result import (
    STATUS_CALLBACK,
    OptimizeResult,
    _attach_history,
    _check_final,
    _early_result,
    _grad_tree,
    _nonfinite_result,
)
from learned_opt.pytree_vector import keystr


class _Asker:
    """The user's callback (or none) with the iteration counter and a remembered stop request."""

    def __init__(self, obj: _Objective, callback: Callable | None):
        self.obj, self.callback = obj, callback
        self.form = _callback_form(callback) if callback is not None else None
        self.count = 0
        self.stopped = False

    def __call__(self, x, f) -> bool:
        self.count += 1
        stop = _call_user_callback(self.callback, self.form, self.obj.spec, x, f, self.count, self.obj.value_at)
        self.stopped = self.stopped or stop
        return stop


def _local_kwargs(kw: dict, default_method: str) -> tuple[dict, str]:
    mk = dict(kw.pop("minimizer_kwargs", None) or {})
    return mk, str(mk.get("method", default_method)).lower()


def _uses_gradient(local: str) -> bool:
    info = METHODS.get(local)
    return info is None or info.is_global or info.uses_gradient


# -- basinhopping: local minimizer (default L-BFGS-B) with the gradient, optional bounds -------------
def _basinhopping_options(options: dict) -> bool:
    if "maxiter" in options:
        if "niter" in options:
            raise ValueError("basinhopping: pass either options['maxiter'] or options['niter'], not both")
        options["niter"] = options.pop("maxiter")
    return False


def _basinhopping(obj: _Objective, x0vec: np.ndarray, ask: _Asker, has_grad: bool, kw: dict):
    fn = sopt.basinhopping
    mk, local = _local_kwargs(kw, "L-BFGS-B")
    mk.setdefault("method", "L-BFGS-B")
    jac = obj.problem.jac
    if not _uses_gradient(local) or not has_grad:
        func = obj.value
        if isinstance(jac, str):
            mk.setdefault("jac", jac)
    else:
        func = obj.value_and_grad
        mk["jac"] = True
        hessian = METHODS[local].hessian if local in METHODS else "none"
        if hessian == "hessp" and obj.autodiff:
            mk.setdefault("hessp", obj.hessp)
        elif hessian == "dense" and obj.autodiff:
            mk.setdefault("hess", obj.hess)
    if obj.lb is not None:
        if not (local in METHODS and METHODS[local].bounds and not METHODS[local].is_global):
            raise ValueError(f"basinhopping's local method {mk['method']!r} cannot handle bounds")
        mk["bounds"] = sopt.Bounds(obj.lb, obj.ub)  # pyright: ignore[reportArgumentType]  (stub: float; arrays are documented)
    def cb(x, f, accept):
        return ask(x, float(f))
    r = fn(func, x0vec, minimizer_kwargs=mk, callback=cb if ask.callback is not None else None, **kw)
    lowest = r.get("lowest_optimization_result")
    gvec = lowest.get("jac") if lowest is not None else None
    success = bool(lowest.get("success", True)) if lowest is not None else True
    return r, gvec, success


# -- the three box-bounded methods -----------------------------------------------------------------
def _boxed(obj: _Objective, kw: dict, extra: dict, ask_cb: Callable | None, meth: str):
    lb, ub = obj.lb, obj.ub
    assert lb is not None and ub is not None  # checked by the driver (needs_finite_bounds)
    if ask_cb is not None:
        extra["callback"] = ask_cb
    kw.update(extra)
    # most evaluations are samples that need no gradient
    r = getattr(sopt, meth)(obj.value, list(zip(lb.tolist(), ub.tolist())), **kw)
    return r, r.get("jac"), bool(r.get("success", True))


def _local_gradient(obj: _Objective, kw: dict, default_method: str, has_grad: bool, extra: dict) -> dict | None:
    if not has_grad:
        return None
    mk, local = _local_kwargs(kw, default_method)
    if _uses_gradient(local):
        mk.setdefault("jac", obj.grad)
    extra["minimizer_kwargs"] = mk
    return mk


def _dual_annealing_options(options: dict) -> bool:
    return bool(options.pop("disp")) if "disp" in options else False


def _dual_annealing(obj: _Objective, x0vec: np.ndarray, ask: _Asker, has_grad: bool, kw: dict):
    extra: dict = {}
    mk = _local_gradient(obj, kw, "L-BFGS-B", has_grad, extra)
    if mk is not None and "method" not in mk:
        mk["method"] = "L-BFGS-B"
    extra["x0"] = np.clip(x0vec, obj.lb, obj.ub)
    def cb(x, f, context):
        return ask(x, float(f))
    return _boxed(obj, kw, extra, cb if ask.callback is not None else None, "dual_annealing")


def _differential_evolution(obj: _Objective, x0vec: np.ndarray, ask: _Asker, has_grad: bool, kw: dict):
    extra: dict = {"x0": np.clip(x0vec, obj.lb, obj.ub)}
    def cb(intermediate_result):
        if ask(intermediate_result.x, float(intermediate_result.fun)):
            raise StopIteration
    return _boxed(obj, kw, extra, cb if ask.callback is not None else None, "differential_evolution")


def _shgo_options(options: dict) -> bool:
    sub = dict(options.pop("options", None) or {})
    for k in _GENERIC_OPTIONS:
        if k in options:
            sub[k] = options.pop(k)
    if sub:
        options["options"] = sub
    return False


def _shgo(obj: _Objective, x0vec: np.ndarray, ask: _Asker, has_grad: bool, kw: dict):
    extra: dict = {}
    _local_gradient(obj, kw, "SLSQP", has_grad, extra)
    def cb(xk):
        if ask(xk, None):
            raise _Stop(np.array(xk, dtype=np.float64), None, ask.count)
    return _boxed(obj, kw, extra, cb if ask.callback is not None else None, "shgo")


@dataclasses.dataclass(frozen=True)
class _Adapter:
    #: maps the generic options in place onto the method's own; returns "print a summary after"
    options: Callable[[dict], bool]
    #: runs scipy: (obj, x0vec, asker, has_grad, kwargs) -> (scipy result, gradient or None, success)
    run: Callable[..., tuple[Any, Any, bool]]


def _no_mapping(options: dict) -> bool:
    return False


ADAPTERS = {
    "basinhopping": _Adapter(_basinhopping_options, _basinhopping),
    "dual_annealing": _Adapter(_dual_annealing_options, _dual_annealing),
    "differential_evolution": _Adapter(_no_mapping, _differential_evolution),
    "shgo": _Adapter(_shgo_options, _shgo),
}


def _check_finite_bounds(obj: _Objective, meth: str) -> None:
    lb, ub, spec = obj.lb, obj.ub, obj.spec
    if lb is None or ub is None or not (np.isfinite(lb).all() and np.isfinite(ub).all()):
        bad = [keystr(p) for p, o, s in zip(spec.paths, spec.offsets, spec.sizes)
               if lb is None or ub is None
               or not (np.isfinite(lb[o:o + s]).all() and np.isfinite(ub[o:o + s]).all())]
        raise ValueError(f"method {meth!r} needs finite bounds for every entry; missing or infinite "
                         f"at {', '.join(bad)}")


def _minimize_global(obj: _Objective, x0vec: np.ndarray, meth: str, tol, callback,
                     options: dict) -> OptimizeResult:
    spec, jac = obj.spec, obj.problem.jac
    valid = _scipy_compat.global_options(getattr(sopt, meth))
    if tol is not None and "tol" in valid:
        options.setdefault("tol", tol)
    _check_options(options, valid, f"method {meth!r}")
    adapter = ADAPTERS[meth]
    disp_after = adapter.options(options)
    has_grad = not (isinstance(jac, str) or jac is False)
    if METHODS[meth].needs_finite_bounds:
        _check_finite_bounds(obj, meth)
    ask = _Asker(obj, callback)
    try:
        r, gvec, success = adapter.run(obj, x0vec, ask, has_grad, dict(options))
    except _Stop as stop:
        return _early_result(obj, spec, stop.x, stop.fun, STATUS_CALLBACK,
                             f"stopped by the callback after {stop.nit} iterations", stop.nit)
    except _NonFinite as err:
        return _nonfinite_result(obj, spec, x0vec, err.message, nit=ask.count)
    return _global_result(obj, meth, r, gvec, success, has_grad, ask, disp_after)


def _global_result(obj: _Objective, meth: str, r: Any, gvec: Any, success: bool, has_grad: bool,
                   ask: _Asker, disp_after: bool) -> OptimizeResult:
    spec = obj.spec
    xvec = obj._clip(np.asarray(r.x, dtype=np.float64))
    res = OptimizeResult({k: v for k, v in r.items() if k not in ("x", "jac", "fun", "lowest_optimization_result",
                                                                   "xl", "funl")})
    res.x = spec.unpack(xvec)
    res.fun = float(r.fun)
    if (gvec is None or np.shape(gvec) != (spec.size,)) and has_grad:
        _, gvec = obj.value_and_grad(xvec)   # the gradient at the answer (one more evaluation)
    if gvec is not None and np.shape(gvec) == (spec.size,):
        res.jac = _grad_tree(spec, gvec)
    else:
        gvec = None
    msg = r.get("message", "")
    res.message = "; ".join(map(str, msg)) if isinstance(msg, (list, tuple)) else str(msg)
    res.success = success
    res.status = int(r.get("status", 0 if success else 1))
    if ask.stopped:  # the user's callback ended the run (basinhopping reports that as a success)
        res.status = STATUS_CALLBACK
        res.success = False
    res.nit = int(r.get("nit", ask.count) or 0)
    res.nfev = int(r.get("nfev", obj.nfev))
    res.njev = int(r.get("njev", obj.njev))
    res.nhev = int(r.get("nhev", obj.nhev))
    _check_final(res, None if gvec is None else np.asarray(gvec, dtype=np.float64))
    if disp_after:
        print(f"{meth}: {res.message}; f = {res.fun:.6g} after {res.nit} iterations, {res.nfev} evaluations")
    return _attach_history(res, obj)
