"""optax ``GradientTransformation`` methods (hand-designed or learned optimizers): a jitted loop
``x ← x + update(∇f(x), state, x)`` on the leaves in pack order."""
from __future__ import annotations

import contextlib
import functools
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_opt.minimize.args import _ArgSpec
from learned_opt.minimize.kernels import _scalar_out
from learned_opt.minimize.objective import _host_scalar
from learned_opt.minimize.options import _call_user_callback, _callback_form, _check_options
from learned_opt.minimize.problem import Problem, split_value_grad
from learned_opt.minimize.result import STATUS_CALLBACK, STATUS_NONFINITE, OptimizeResult
from learned_opt.pytree_vector import PackSpec, host_array, keystr


def _optax_update(opt, extra, params, grads, state, value, lb, ub):
    if extra:
        updates, state = opt.update(grads, state, params, loss=value)
    else:
        updates, state = opt.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    if lb is not None:
        new = [jnp.clip(p, l, u).astype(p.dtype) for p, l, u in zip(list(new), lb, ub)]  # pyright: ignore[reportArgumentType]
    return new, state


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _jit_optax_step(fun, spec, argspec, opt, extra, params, state, dyn, lb, ub):
    """One step on the leaf list ``params`` (pack order): f, ∇f at params, then the update."""
    def f(leaves):
        return _scalar_out(fun(spec.build(leaves), *argspec.merge(dyn)))
    value, grads = jax.value_and_grad(f)(params)
    ok = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads]))
    gmax = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) if g.size else jnp.zeros((), g.dtype)
                              for g in grads]).astype(jnp.float32))
    new, state = _optax_update(opt, extra, params, grads, state, value, lb, ub)
    return new, state, value, grads, ok, gmax


@functools.partial(jax.jit, static_argnums=(0, 1))
def _jit_optax_update(opt, extra, params, grads, state, value, lb, ub):
    return _optax_update(opt, extra, params, grads, state, value, lb, ub)


def _nonfinite_message(spec: PackSpec, v: float, g: list, k: int) -> str:
    """What was not finite at step ``k``: the value, or the gradient at which key paths."""
    if not np.isfinite(v):
        return f"objective value is {v} at step {k}"
    gflat = np.concatenate([np.asarray(x, np.float64).reshape(-1) for x in g])
    bad = [f"{keystr(p)} ({int(np.count_nonzero(~np.isfinite(gflat[o:o + s])))} of {s} entries)"
           for p, o, s in zip(spec.paths, spec.offsets, spec.sizes)
           if not np.isfinite(gflat[o:o + s]).all()]
    return f"gradient is not finite at {', '.join(bad)} at step {k}"


def _minimize_optax(problem: Problem, x0: Any, opt: Any, tol, callback, options: dict) -> OptimizeResult:
    fun, spec, args, jac = problem.fun, problem.spec, problem.args, problem.jac
    hess, hessp, lb, ub, nan_policy = problem.hess, problem.hessp, problem.lb, problem.ub, problem.nan_policy
    _check_options(options, {"maxiter", "disp"}, "an optax method")
    maxiter = options.get("maxiter", 1000)
    if not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"options['maxiter'] must be a non-negative integer; got {maxiter!r}")
    if hess is not None or hessp is not None:
        warnings.warn("optax methods do not use Hessian information (hess/hessp)", RuntimeWarning, stacklevel=3)
    if not (jac is None or jac is True or callable(jac)):
        raise ValueError(f"jac={jac!r} is not supported with an optax method: use None (autodiff), True "
                         "or a gradient function")
    extra = isinstance(opt, optax.GradientTransformationExtraArgs)
    argspec, dyn = _ArgSpec(args), _ArgSpec.dynamic(args)
    eager = jac is not None
    t0 = time.perf_counter()
    with jax.enable_x64(True) if spec.has_float64 else contextlib.nullcontext():
        params = [jnp.asarray(host_array(leaf), dtype=d) for leaf, d in zip(spec.leaves(x0, "x0"), spec.dtypes)]
        if lb is not None and ub is not None:
            lbl = [jnp.asarray(lb[o:o + s].reshape(sh), d) for sh, d, o, s in
                   zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]
            ubl = [jnp.asarray(ub[o:o + s].reshape(sh), d) for sh, d, o, s in
                   zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]
            params = [jnp.clip(p, l, u).astype(p.dtype) for p, l, u in zip(params, lbl, ubl)]
        else:
            lbl = ubl = None
        state = opt.init(params)
        form = _callback_form(callback) if callback is not None else None
        losses: list[float] = []
        times: list[float] = []
        best = (np.inf, None, None)
        status, message, success = 0, f"completed {maxiter} steps", True
        nit = 0

        def evaluate(params, state):
            if not eager:
                new, st, v, g, ok, gmax = _jit_optax_step(fun, spec, argspec, opt, extra, params, state,
                                                          dyn, lbl, ubl)
                v, ok, gmax = jax.device_get((v, ok, gmax))
                return new, st, float(v), g, bool(ok), float(gmax)
            tree = spec.to_kinds(params)
            if jac is True:
                v, gt = split_value_grad(fun(tree, *args))
            else:
                assert callable(jac)
                v, gt = fun(tree, *args), jac(tree, *args)
            v = _host_scalar(v)
            gv = spec.pack(gt, what="gradient")
            g = [jnp.asarray(gv[o:o + s].reshape(sh), d) for sh, d, o, s in
                 zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]
            ok = bool(np.isfinite(v) and np.isfinite(gv).all())
            new, st = _jit_optax_update(opt, extra, params, g, state, jnp.asarray(v), lbl, ubl)
            return new, st, v, g, ok, float(np.max(np.abs(gv))) if gv.size else 0.0

        k = 0
        while True:
            new, new_state, v, g, ok, gmax = evaluate(params, state)
            losses.append(v)
            times.append(time.perf_counter() - t0)
            if not ok:
                msg = _nonfinite_message(spec, v, g, k)
                if nan_policy == "raise":
                    raise FloatingPointError(msg)
                if nan_policy == "stop":
                    if best[1] is None:
                        fin_x, fin_f, fin_g = params, v, g
                        message = msg
                    else:
                        fin_f, fin_x, fin_g = best
                        message = msg + "; x is the best finite iterate"
                    status, success = STATUS_NONFINITE, False
                    params, v, g = fin_x, fin_f, fin_g
                    break
            elif v < best[0]:
                best = (v, params, g)
            if callback is not None and k > 0:
                if _call_user_callback(callback, form, spec, _leaves_to_vec(params), v, k):
                    status, success = STATUS_CALLBACK, False
                    message = f"stopped by the callback after {k} iterations"
                    break
            if tol is not None and gmax <= tol:
                message = f"gradient inf-norm {gmax:.3g} <= tol after {k} steps"
                break
            if k >= maxiter:
                break
            params, state = new, new_state
            k += 1
            nit = k
        x_out = spec.to_kinds(params)
        g_out = spec.to_kinds([jnp.asarray(x).astype(d) for x, d in zip(g, spec.dtypes)])
    if options.get("disp"):
        print(f"optax loop: {message}; f = {float(v):.6g} after {nit} steps")
    res = OptimizeResult(x=x_out, fun=float(v), jac=g_out, success=success and bool(np.isfinite(v)),
                         status=status if np.isfinite(v) else STATUS_NONFINITE, message=message,
                         nit=nit, nfev=len(losses), njev=len(losses), nhev=0,
                         loss_history=np.asarray(losses, np.float64), fun_history=np.asarray(losses, np.float64),
                         time_history=np.asarray(times, np.float64))
    return res


def _leaves_to_vec(leaves) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in leaves])

