"""scipy's local methods (``scipy.optimize.minimize``) on the packed vector."""
from __future__ import annotations

import warnings
from typing import Any

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


def _derivatives(obj: _Objective, mi: MethodInfo | None, meth: str, method: Any):
    """What scipy gets for ``fun``, ``jac``, ``hess`` and ``hessp``, from the method's table entry
    and what the user passed (warnings, as scipy's, for derivatives a method does not use)."""
    jac, hess, hessp = obj.problem.jac, obj.problem.hess, obj.problem.hessp
    if mi is not None and not mi.uses_gradient:
        if jac is not None and jac is not False:
            warnings.warn(f"Method {method} does not use gradient information (jac).", RuntimeWarning,
                          stacklevel=4)
        f_arg, jac_arg = obj.value, None
    elif isinstance(jac, str):
        f_arg, jac_arg = obj.value, jac
    elif jac is False:
        f_arg, jac_arg = obj.value, None
    else:
        f_arg, jac_arg = obj.value_and_grad, True

    hess_arg = hessp_arg = None
    if mi is not None and mi.hessian == "none":
        if hess is not None:
            warnings.warn(f"Method {method} does not use Hessian information (hess).", RuntimeWarning, stacklevel=4)
        if hessp is not None:
            warnings.warn(f"Method {method} does not use Hessian-vector product information (hessp).",
                          RuntimeWarning, stacklevel=4)
    else:
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
        if meth == "newton-cg" and hessp is not None and hess is not None:
            hess_arg = None

    return f_arg, jac_arg, hess_arg, hessp_arg


def _minimize_scipy(obj: _Objective, x0vec: np.ndarray, meth: str, method: Any, tol, callback,
                    options: dict) -> OptimizeResult:
    """``meth``: the lower-case name, or ``"_custom"`` for a callable ``method`` (handed to scipy)."""
    spec = obj.spec
    mi = METHODS.get(meth)  # None for a custom method: scipy decides what it uses
    if mi is not None:
        _check_options(options, _scipy_compat.valid_options(meth), f"method {method!r}")
    # scipy's TNC has no iteration limit (only maxfun): options["maxiter"] is enforced here by
    # ending the run after that many iterations, counted by TNC's per-iteration callback
    tnc_maxiter = None
    if meth == "tnc" and "maxiter" in options:
        options = dict(options)
        tnc_maxiter = int(options.pop("maxiter"))
    # scipy deprecates L-BFGS-B's own `disp`: the summary line is printed here instead
    disp_after = False
    if meth == "l-bfgs-b" and "disp" in options:
        options = dict(options)
        disp_after = bool(options.pop("disp"))
    f_arg, jac_arg, hess_arg, hessp_arg = _derivatives(obj, mi, meth, method)

    scipy_bounds = None
    if obj.lb is not None:  # start inside the box (the objective is only evaluated there anyway)
        scipy_bounds = sopt.Bounds(obj.lb, obj.ub, keep_feasible=(meth == "trust-constr"))  # pyright: ignore[reportArgumentType]  (stub: float; arrays are documented)
        x0vec = np.clip(x0vec, obj.lb, obj.ub)

    # methods whose evaluations go through scipy's ScalarFunction / copying wrappers
    obj.x_is_private = mi is not None and mi.private_x

    # an iteration counter is always installed (so a NaN stop can report nit); it forwards to the
    # user's callback, whose True / StopIteration ends the run via _Stop
    form = _callback_form(callback) if callback is not None else None
    counter = [0]

    def _handle(xk, fk):
        counter[0] += 1
        xk = obj._clip(np.asarray(xk, dtype=np.float64))  # TNC's rescaling can step 1 ulp outside
        if callback is not None and _call_user_callback(callback, form, spec, xk, fk, counter[0], obj.value_at):
            raise _Stop(np.array(xk, dtype=np.float64), fk, counter[0])
        if tnc_maxiter is not None and counter[0] >= tnc_maxiter:
            raise _MaxIter(np.array(xk, dtype=np.float64), fk, counter[0])

    if tnc_maxiter == 0:  # no iteration at all: report x0 (projected into the bounds)
        f0, g0 = obj.value_and_grad(x0vec)
        res = OptimizeResult(x=spec.unpack(x0vec), fun=float(f0), jac=_grad_tree(spec, g0), success=False,
                             status=1, message="maximum number of iterations (options['maxiter']=0) reached",
                             nit=0, nfev=obj.nfev, njev=obj.njev, nhev=obj.nhev)
        _check_final(res, g0)
        return _attach_history(res, obj)

    def cb_x(xk):  # TNC calls back with the iterate only
        _handle(xk, None)

    def cb_result(intermediate_result):
        _handle(intermediate_result.x, float(intermediate_result.fun)
                if "fun" in intermediate_result else None)
    cb = cb_x if meth == "tnc" else cb_result

    try:
        r = sopt.minimize(f_arg, x0vec, method=method if mi is None else mi.name, jac=jac_arg,
                          hess=hess_arg, hessp=hessp_arg, bounds=scipy_bounds, tol=tol, callback=cb,
                          options=options or None)
    except _MaxIter as stop:
        res = _early_result(obj, spec, stop.x, stop.fun, 1,
                            f"maximum number of iterations (options['maxiter']={stop.nit}) reached", stop.nit)
        if "jac" not in res:
            res.jac = _grad_tree(spec, obj.gradient_at(obj._clip(np.asarray(stop.x, dtype=np.float64))))
        if options.get("disp"):
            print(f"TNC: {res.message}; f = {res.fun:.6g}")
        return res
    except _Stop as stop:
        return _early_result(obj, spec, stop.x, stop.fun, STATUS_CALLBACK,
                             f"stopped by the callback after {stop.nit} iterations", stop.nit)
    except _NonFinite as err:
        return _nonfinite_result(obj, spec, x0vec, err.message, nit=counter[0])

    return _scipy_result(obj, r, mi, method, disp_after)


def _scipy_result(obj: _Objective, r: Any, mi: MethodInfo | None, method: Any, disp_after: bool) -> OptimizeResult:
    """The result of a completed scipy run: x and a fresh gradient as trees, scipy's fields kept."""
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
    if disp_after:
        print(f"{method}: {res.message}; f = {res.fun:.6g} after {res.nit} iterations, {res.nfev} evaluations")
    return _attach_history(res, obj)
