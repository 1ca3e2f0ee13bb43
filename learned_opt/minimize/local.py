"""scipy's local methods (``scipy.optimize.minimize``) on the packed vector.

:func:`_minimize_scipy` prepares a :class:`_ScipyRun` (the method's table entry and the options
``minimize`` handles itself), selects the derivatives scipy gets, installs the iteration callback,
calls scipy and turns its answer -- or an early stop -- into an :class:`OptimizeResult`.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import numpy as np
import scipy.optimize as sopt

from learned_opt.minimize import _scipy_compat
from learned_opt.minimize.methods import METHODS, MethodInfo
from learned_opt.minimize.objective import _MaxIter, _NonFinite, _Objective, _Stop
from learned_opt.minimize.options import _call_user_callback, _callback_form, _check_options
from learned_opt.minimize.result import (
    STATUS_CALLBACK,
    OptimizeResult,
    _attach_history,
    _check_final,
    _early_result,
    _grad_tree,
    _nonfinite_result,
)


@dataclasses.dataclass(eq=False)
class _ScipyRun:
    """One ``scipy.optimize.minimize`` call on ``obj`` (whose ``problem`` is the user's call).

    ``meth``: the lower-case name, or ``"_custom"`` for a callable ``method`` (handed to scipy);
    ``mi``: its table entry (None for a custom method: scipy decides what it uses); ``options``:
    what scipy gets; ``tnc_maxiter``: TNC's iteration limit, enforced here (scipy's TNC has only
    ``maxfun``); ``disp_after``: print L-BFGS-B's summary line here (scipy deprecates its own
    ``disp``); ``nit``: iterations counted by the callback so far.
    """

    obj: _Objective
    meth: str
    method: Any
    mi: MethodInfo | None
    options: dict
    tnc_maxiter: int | None = None
    disp_after: bool = False
    nit: int = 0


def _scipy_run(obj: _Objective, meth: str, method: Any, options: dict) -> _ScipyRun:
    """Check ``options`` against the method's and take out the ones handled around scipy."""
    mi = METHODS.get(meth)
    if mi is not None:
        _check_options(options, _scipy_compat.valid_options(meth), f"method {method!r}")
    options = dict(options)
    tnc_maxiter = int(options.pop("maxiter")) if meth == "tnc" and "maxiter" in options else None
    disp_after = bool(options.pop("disp")) if meth == "l-bfgs-b" and "disp" in options else False
    return _ScipyRun(obj, meth, method, mi, options, tnc_maxiter, disp_after)


def _derivatives(run: _ScipyRun):
    """What scipy gets for ``fun``, ``jac``, ``hess`` and ``hessp``, from the method's table entry
    and what the user passed (warnings, as scipy's, for derivatives a method does not use)."""
    f_arg, jac_arg = _value_derivatives(run)
    hess_arg, hessp_arg = _hessian_derivatives(run, jac_arg)
    return f_arg, jac_arg, hess_arg, hessp_arg


def _value_derivatives(run: _ScipyRun) -> tuple[Callable, Any]:
    """``fun`` and ``jac`` for scipy: the value alone, or value and gradient together."""
    obj, mi, jac = run.obj, run.mi, run.obj.problem.jac
    if mi is not None and not mi.uses_gradient:
        if jac is not None and jac is not False:
            warnings.warn(f"Method {run.method} does not use gradient information (jac).", RuntimeWarning,
                          stacklevel=5)
        return obj.value, None
    if isinstance(jac, str):
        return obj.value, jac
    if jac is False:
        return obj.value, None
    return obj.value_and_grad, True


def _hessian_derivatives(run: _ScipyRun, jac_arg: Any) -> tuple[Any, Any]:
    """``hess`` and ``hessp`` for scipy: the user's, or from JAX autodiff in the method's form."""
    obj, mi, method = run.obj, run.mi, run.method
    hess, hessp = obj.problem.hess, obj.problem.hessp
    if mi is not None and mi.hessian == "none":
        if hess is not None:
            warnings.warn(f"Method {method} does not use Hessian information (hess).", RuntimeWarning, stacklevel=5)
        if hessp is not None:
            warnings.warn(f"Method {method} does not use Hessian-vector product information (hessp).",
                          RuntimeWarning, stacklevel=5)
        return None, None
    hess_arg = hessp_arg = None
    if isinstance(hess, str) or isinstance(hess, sopt.HessianUpdateStrategy):
        hess_arg = hess
    elif hess is not None:
        hess_arg = obj.hess
    elif hessp is not None:
        hessp_arg = obj.hessp
    elif obj.autodiff and jac_arg is True:
        if mi is not None and mi.hessian == "dense":
            hess_arg = obj.hess
        else:
            hessp_arg = obj.hessp
    elif mi is not None and mi.needs_hessian:
        raise ValueError(f"method {method!r} needs second derivatives: pass hess= or hessp= (on dicts), "
                         "or use jac=None so they come from JAX autodiff")
    if run.meth == "newton-cg" and hessp is not None and hess is not None:
        hess_arg = None
    return hess_arg, hessp_arg


def _scipy_bounds(run: _ScipyRun, x0vec: np.ndarray) -> tuple[sopt.Bounds | None, np.ndarray]:
    """scipy's ``Bounds`` (None: unbounded) and the start projected into the box (the objective
    is only evaluated there anyway)."""
    obj = run.obj
    if obj.lb is None:
        return None, x0vec
    bounds = sopt.Bounds(obj.lb, obj.ub, keep_feasible=(run.meth == "trust-constr"))  # pyright: ignore[reportArgumentType]  (stub: float; arrays are documented)
    return bounds, np.clip(x0vec, obj.lb, obj.ub)


def _scipy_callback(run: _ScipyRun, callback: Callable | None) -> Callable:
    """The callback scipy gets. It is always installed (so a NaN stop can report ``nit``): it
    counts iterations, forwards to the user's callback, whose True / StopIteration ends the run via
    :class:`_Stop`, and ends a TNC run at ``tnc_maxiter`` via :class:`_MaxIter`."""
    obj = run.obj
    form = _callback_form(callback) if callback is not None else None

    def handle(xk, fk):
        run.nit += 1
        xk = obj._clip(np.asarray(xk, dtype=np.float64))  # TNC's rescaling can step 1 ulp outside
        if callback is not None and _call_user_callback(callback, form, obj.spec, xk, fk, run.nit, obj.value_at):
            raise _Stop(np.array(xk, dtype=np.float64), fk, run.nit)
        if run.tnc_maxiter is not None and run.nit >= run.tnc_maxiter:
            raise _MaxIter(np.array(xk, dtype=np.float64), fk, run.nit)

    def cb_x(xk):  # TNC calls back with the iterate only
        handle(xk, None)

    def cb_result(intermediate_result):  # scipy passes the result by this parameter's name
        handle(intermediate_result.x, float(intermediate_result.fun) if "fun" in intermediate_result else None)

    return cb_x if run.meth == "tnc" else cb_result


def _minimize_scipy(obj: _Objective, x0vec: np.ndarray, meth: str, method: Any, tol, callback,
                    options: dict) -> OptimizeResult:
    """``meth``: the lower-case name, or ``"_custom"`` for a callable ``method`` (handed to scipy)."""
    run = _scipy_run(obj, meth, method, options)
    f_arg, jac_arg, hess_arg, hessp_arg = _derivatives(run)
    scipy_bounds, x0vec = _scipy_bounds(run, x0vec)
    # methods whose evaluations go through scipy's ScalarFunction / copying wrappers
    obj.x_is_private = run.mi is not None and run.mi.private_x
    cb = _scipy_callback(run, callback)
    if run.tnc_maxiter == 0:  # no iteration at all: report x0 (projected into the bounds)
        return _no_iteration_result(obj, x0vec)
    try:
        r = sopt.minimize(f_arg, x0vec, method=method if run.mi is None else run.mi.name, jac=jac_arg,
                          hess=hess_arg, hessp=hessp_arg, bounds=scipy_bounds, tol=tol, callback=cb,
                          options=run.options or None)
    except _MaxIter as stop:
        return _maxiter_result(run, stop)
    except _Stop as stop:
        return _early_result(obj, obj.spec, stop.x, stop.fun, STATUS_CALLBACK,
                             f"stopped by the callback after {stop.nit} iterations", stop.nit)
    except _NonFinite as err:
        return _nonfinite_result(obj, obj.spec, x0vec, err.message, nit=run.nit)
    return _scipy_result(run, r)


def _no_iteration_result(obj: _Objective, x0vec: np.ndarray) -> OptimizeResult:
    """TNC with ``options['maxiter']=0``: ``x0``, its value and gradient, not a success."""
    spec = obj.spec
    f0, g0 = obj.value_and_grad(x0vec)
    res = OptimizeResult(x=spec.unpack(x0vec), fun=float(f0), jac=_grad_tree(spec, g0), success=False,
                         status=1, message="maximum number of iterations (options['maxiter']=0) reached",
                         nit=0, nfev=obj.nfev, njev=obj.njev, nhev=obj.nhev)
    _check_final(res, g0)
    return _attach_history(res, obj)


def _maxiter_result(run: _ScipyRun, stop: _MaxIter) -> OptimizeResult:
    """TNC ended at ``options['maxiter']`` iterations: the last iterate, with its gradient."""
    obj = run.obj
    res = _early_result(obj, obj.spec, stop.x, stop.fun, 1,
                        f"maximum number of iterations (options['maxiter']={stop.nit}) reached", stop.nit)
    if "jac" not in res:
        res.jac = _grad_tree(obj.spec, obj.gradient_at(obj._clip(np.asarray(stop.x, dtype=np.float64))))
    if run.options.get("disp"):
        print(f"TNC: {res.message}; f = {res.fun:.6g}")
    return res


def _scipy_result(run: _ScipyRun, r: Any) -> OptimizeResult:
    """The result of a completed scipy run: x and a fresh gradient as trees, scipy's fields kept."""
    obj, mi = run.obj, run.mi
    spec, jac = obj.spec, obj.problem.jac
    xvec = obj._clip(np.asarray(r.x, dtype=np.float64))
    gvec = None
    if (mi is None or mi.uses_gradient) and not isinstance(jac, str) and jac is not False:
        # scipy's own res.jac can be stale (Newton-CG, SLSQP report an earlier gradient)
        gvec = obj.gradient_at(xvec)
    res = OptimizeResult({k: v for k, v in r.items() if k not in ("x", "jac", "grad", "fun")})
    res.x = spec.unpack(xvec)
    res.fun = float(np.real(np.asarray(r.fun)))
    if gvec is not None:
        res.jac = _grad_tree(spec, gvec)
    res.success = bool(r.get("success", True))
    res.status = int(r.get("status", 0)) if np.ndim(r.get("status", 0)) == 0 else r.get("status")
    res.message = str(r.get("message", ""))
    res.nit = int(r.get("nit", r.get("niter", 0)) or 0)
    res.nfev = int(r.get("nfev", obj.nfev))
    res.njev = int(r.get("njev", obj.njev))
    res.nhev = int(r.get("nhev", obj.nhev))
    _check_final(res, None if gvec is None else np.asarray(gvec, dtype=np.float64))
    if run.disp_after:
        print(f"{run.method}: {res.message}; f = {res.fun:.6g} after {res.nit} iterations, {res.nfev} evaluations")
    return _attach_history(res, obj)
