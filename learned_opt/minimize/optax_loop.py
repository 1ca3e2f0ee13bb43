"""optax ``GradientTransformation`` methods (hand-designed or learned optimizers): a jitted loop
``x ← x + update(∇f(x), state, x)`` on the leaves in pack order.

:func:`_minimize_optax` checks the call, builds an :class:`_OptaxRun` (the problem, the transform,
the bounds as leaf lists, the stopping rules), runs :func:`_loop` and assembles the result; one
step is :func:`_step` (f, ∇f and the update in one compiled call, or an eager user gradient
followed by a compiled update).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import warnings
from typing import Any, Callable

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


@dataclasses.dataclass(eq=False)
class _OptaxRun:
    """One optax loop on ``problem``: the transform ``opt`` (``extra``: it takes ``loss=``), the
    static / dynamic split of the extra arguments, the bounds as leaf lists (None: unbounded) and
    the stopping rules (``maxiter`` steps, gradient inf-norm ``<= tol``, the user's ``callback``).
    Built inside the float64 context of the run (the bound leaves take the leaves' dtypes)."""

    problem: Problem
    opt: Any
    maxiter: int
    tol: Any
    callback: Callable | None
    t0: float
    extra: bool = dataclasses.field(init=False)
    argspec: _ArgSpec = dataclasses.field(init=False)
    dyn: list = dataclasses.field(init=False)
    lbl: list | None = dataclasses.field(init=False)
    ubl: list | None = dataclasses.field(init=False)
    form: str | None = dataclasses.field(init=False)

    def __post_init__(self):
        p = self.problem
        self.extra = isinstance(self.opt, optax.GradientTransformationExtraArgs)
        self.argspec, self.dyn = _ArgSpec(p.args), _ArgSpec.dynamic(p.args)
        self.lbl = self.ubl = None
        if p.lb is not None and p.ub is not None:
            self.lbl, self.ubl = _leaf_list(p.spec, p.lb), _leaf_list(p.spec, p.ub)
        self.form = _callback_form(self.callback) if self.callback is not None else None


@dataclasses.dataclass(eq=False)
class _Trace:
    """What the loop saw: per-step values and wall times, the best finite step ``(f, x, ∇f)`` and
    how it ended (``status``, ``message``, ``success``)."""

    losses: list[float] = dataclasses.field(default_factory=list)
    times: list[float] = dataclasses.field(default_factory=list)
    best: tuple = (np.inf, None, None)
    status: int = 0
    message: str = ""
    success: bool = True


def _check_call(problem: Problem, options: dict) -> int:
    """Validate what an optax method accepts; its ``maxiter`` (default 1000)."""
    _check_options(options, {"maxiter", "disp"}, "an optax method")
    maxiter = options.get("maxiter", 1000)
    if not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"options['maxiter'] must be a non-negative integer; got {maxiter!r}")
    if problem.hess is not None or problem.hessp is not None:
        warnings.warn("optax methods do not use Hessian information (hess/hessp)", RuntimeWarning, stacklevel=4)
    jac = problem.jac
    if not (jac is None or jac is True or callable(jac)):
        raise ValueError(f"jac={jac!r} is not supported with an optax method: use None (autodiff), True "
                         "or a gradient function")
    return int(maxiter)


def _leaf_list(spec: PackSpec, vec: np.ndarray) -> list:
    """A pack-order vector as the list of leaves (shapes and dtypes of ``spec``)."""
    return [jnp.asarray(vec[o:o + s].reshape(sh), d)
            for sh, d, o, s in zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]


def _initial_params(run: _OptaxRun, x0: Any) -> list:
    """x0 as the leaf list, projected into the bounds."""
    spec = run.problem.spec
    params = [jnp.asarray(host_array(leaf), dtype=d) for leaf, d in zip(spec.leaves(x0, "x0"), spec.dtypes)]
    if run.lbl is None or run.ubl is None:
        return params
    return [jnp.clip(p, l, u).astype(p.dtype) for p, l, u in zip(params, run.lbl, run.ubl)]


def _step(run: _OptaxRun, params: list, state: Any):
    """f and ∇f at ``params`` and the update: ``(new params, new state, f, ∇f leaves, finite?, |∇f|∞)``."""
    p = run.problem
    if p.jac is None:  # autodiff: one compiled call
        new, st, v, g, ok, gmax = _jit_optax_step(p.fun, p.spec, run.argspec, run.opt, run.extra, params, state,
                                                  run.dyn, run.lbl, run.ubl)
        v, ok, gmax = jax.device_get((v, ok, gmax))
        return new, st, float(v), g, bool(ok), float(gmax)
    tree = p.spec.to_kinds(params)
    if p.jac is True:
        v, gt = split_value_grad(p.fun(tree, *p.args))
    else:
        assert callable(p.jac)
        v, gt = p.fun(tree, *p.args), p.jac(tree, *p.args)
    v = _host_scalar(v)
    gv = p.spec.pack(gt, what="gradient")
    g = _leaf_list(p.spec, gv)
    ok = bool(np.isfinite(v) and np.isfinite(gv).all())
    new, st = _jit_optax_update(run.opt, run.extra, params, g, state, jnp.asarray(v), run.lbl, run.ubl)
    return new, st, v, g, ok, float(np.max(np.abs(gv))) if gv.size else 0.0


def _loop(run: _OptaxRun, params: list, state: Any) -> tuple[list, float, list, int, _Trace]:
    """Step until a stopping rule or the NaN policy ends the run: ``(x, f, ∇f, steps, trace)``."""
    trace = _Trace(message=f"completed {run.maxiter} steps")
    k = 0
    while True:
        new, new_state, v, g, ok, gmax = _step(run, params, state)
        trace.losses.append(v)
        trace.times.append(time.perf_counter() - run.t0)
        if not ok and run.problem.nan_policy != "propagate":
            params, v, g = _nonfinite_stop(run, trace, params, v, g, k)
            break
        if ok and v < trace.best[0]:
            trace.best = (v, params, g)
        if _finished(run, trace, params, v, gmax, k):
            break
        params, state = new, new_state
        k += 1
    return params, v, g, k, trace


def _nonfinite_stop(run: _OptaxRun, trace: _Trace, params: list, v: float, g: list, k: int) -> tuple:
    """A non-finite f or ∇f at step ``k``: raise (``nan_policy="raise"``) or end the run at the best
    finite step, or at this one if there was none (``"stop"``): its ``(x, f, ∇f)``."""
    msg = _nonfinite_message(run.problem.spec, v, g, k)
    if run.problem.nan_policy == "raise":
        raise FloatingPointError(msg)
    trace.status, trace.success = STATUS_NONFINITE, False
    if trace.best[1] is None:
        trace.message = msg
        return params, v, g
    trace.message = msg + "; x is the best finite iterate"
    fin_f, fin_x, fin_g = trace.best
    return fin_x, fin_f, fin_g


def _finished(run: _OptaxRun, trace: _Trace, params: list, v: float, gmax: float, k: int) -> bool:
    """Whether the run ends after step ``k``: the callback asks to stop, the gradient is below
    ``tol`` or ``maxiter`` steps are done (the message says which)."""
    spec = run.problem.spec
    if run.callback is not None and k > 0:
        if _call_user_callback(run.callback, run.form, spec, _leaves_to_vec(params), v, k):
            trace.status, trace.success = STATUS_CALLBACK, False
            trace.message = f"stopped by the callback after {k} iterations"
            return True
    if run.tol is not None and gmax <= run.tol:
        trace.message = f"gradient inf-norm {gmax:.3g} <= tol after {k} steps"
        return True
    return k >= run.maxiter


def _minimize_optax(problem: Problem, x0: Any, opt: Any, tol, callback, options: dict) -> OptimizeResult:
    maxiter = _check_call(problem, options)
    spec = problem.spec
    t0 = time.perf_counter()
    with jax.enable_x64(True) if spec.has_float64 else contextlib.nullcontext():
        run = _OptaxRun(problem, opt, maxiter, tol, callback, t0)
        params = _initial_params(run, x0)
        params, v, g, nit, trace = _loop(run, params, opt.init(params))
        x_out = spec.to_kinds(params)
        g_out = spec.to_kinds([jnp.asarray(x).astype(d) for x, d in zip(g, spec.dtypes)])
    if options.get("disp"):
        print(f"optax loop: {trace.message}; f = {float(v):.6g} after {nit} steps")
    losses = np.asarray(trace.losses, np.float64)
    finite = bool(np.isfinite(v))
    return OptimizeResult(x=x_out, fun=float(v), jac=g_out, success=trace.success and finite,
                          status=trace.status if finite else STATUS_NONFINITE, message=trace.message,
                          nit=nit, nfev=len(losses), njev=len(losses), nhev=0, loss_history=losses,
                          fun_history=losses.copy(), time_history=np.asarray(trace.times, np.float64))


def _leaves_to_vec(leaves) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in leaves])
