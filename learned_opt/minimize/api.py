"""The front door: validate the call, build the :class:`Problem`, dispatch to a backend."""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import jax
import scipy.optimize as sopt

from learned_opt import _torch_bridge
from learned_opt.minimize.bounds import _bounds
from learned_opt.minimize.global_methods import _minimize_global
from learned_opt.minimize.local import _minimize_scipy
from learned_opt.minimize.methods import METHODS, _resolve_method
from learned_opt.minimize.objective import _Objective
from learned_opt.minimize.optax_loop import _minimize_optax
from learned_opt.minimize.options import _check_generic
from learned_opt.minimize.problem import FD_SCHEMES, NAN_POLICIES, Problem
from learned_opt.minimize.result import OptimizeResult
from learned_opt.pytree_vector import make_spec


def minimize(fun: Callable, x0: Any, *, args: tuple = (), method: Any = None, jac: Any = None,
             hess: Any = None, hessp: Any = None, bounds: Any = None, lb_dict: Any = None,
             ub_dict: Any = None, tol: float | None = None, callback: Callable | None = None,
             options: dict | None = None) -> OptimizeResult:
    """Minimize ``fun(x, *args)`` over a dict (any pytree) of float arrays ``x`` starting at ``x0``.

    Mirrors :func:`scipy.optimize.minimize` (and dict-minimize's ``minimize``) with every vector
    replaced by a tree shaped like ``x0``; see :mod:`learned_opt.minimize` for derivatives, the float64
    and NaN policies, bounds, callbacks, global and optax methods and the result's fields.

    Raises ``TypeError``/``ValueError`` naming the key path for: integer/complex/non-array leaves,
    an empty x0, gradients with missing/extra keys or wrong shapes, a non-scalar objective, an
    unknown method or option, bounds of the wrong structure, ``lb > ub`` and bounds given to a
    method that would ignore them.
    """
    problem = _problem(fun, x0, args, jac, hess, hessp, bounds, lb_dict, ub_dict, callback, options)
    options = dict(options or {})
    options.pop("nan_policy", None)
    kind, meth = _resolve_method(method, problem.bounded)
    if kind == "optax":
        if problem.spec.has_torch and jac is None:  # torch objective: autograd gradients, optax update in JAX
            torch_fun, spec = fun, problem.spec

            def fun_vg(x, *a):
                return _torch_bridge.value_and_grad_tree(torch_fun, spec, x, a)
            problem = Problem(fun_vg, spec, problem.args, True, hess, hessp, problem.lb, problem.ub,
                              problem.nan_policy)
        return _minimize_optax(problem, x0, meth, tol, callback, options)
    if kind == "scipy" and problem.bounded and not METHODS[meth].bounds:
        bounded = sorted(m.key for m in METHODS.values() if m.bounds and not m.is_global)
        raise ValueError(f"method {METHODS[meth].name!r} cannot handle bounds (scipy would ignore them); use one of "
                         f"{', '.join(METHODS[m].name for m in bounded)}")
    x0vec = problem.spec.pack(x0, what="x0")
    obj = _Objective(problem)
    with jax.enable_x64(True) if problem.spec.has_float64 else contextlib.nullcontext():
        if kind == "global":
            return _minimize_global(obj, x0vec, meth, tol, callback, options)
        if kind == "custom":
            return _minimize_scipy(obj, x0vec, "_custom", method, tol, callback, options)
        return _minimize_scipy(obj, x0vec, meth, METHODS[meth].name, tol, callback, options)


def _problem(fun: Callable, x0: Any, args: Any, jac: Any, hess: Any, hessp: Any, bounds: Any, lb_dict: Any,
             ub_dict: Any, callback: Any, options: Any) -> Problem:
    """Validate everything but the method and its options; the :class:`Problem` of this call."""
    if not callable(fun):
        raise TypeError(f"fun must be callable; got {type(fun).__name__}")
    spec = make_spec(x0)
    if not isinstance(args, tuple):
        args = (args,)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict; got {type(options).__name__}")
    options = dict(options or {})
    nan_policy = options.pop("nan_policy", "stop")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"options['nan_policy'] must be one of {NAN_POLICIES}; got {nan_policy!r}")
    _check_generic(options)
    if not (jac is None or isinstance(jac, bool) or callable(jac) or (isinstance(jac, str) and jac in FD_SCHEMES)):
        raise ValueError(f"jac must be None, True, False, a callable or one of {FD_SCHEMES}; got {jac!r}")
    if hess is not None and not (callable(hess) or isinstance(hess, sopt.HessianUpdateStrategy)
                                 or (isinstance(hess, str) and hess in FD_SCHEMES)):
        raise ValueError(f"hess must be a callable, a HessianUpdateStrategy or one of {FD_SCHEMES}; got {hess!r}")
    if hessp is not None and not callable(hessp):
        raise TypeError(f"hessp must be callable; got {type(hessp).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    lb, ub = _bounds(spec, bounds, lb_dict, ub_dict)
    return Problem(fun, spec, args, jac, hess, hessp, lb, ub, nan_policy)
