"""The objective on the packed float64 vector: ``f``, ``∇f``, ``H·p``, ``∇²f`` with evaluation
counters, the value history, the NaN policy and the best finite point seen so far."""
from __future__ import annotations

import contextlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import _torch_bridge
from learned_opt.minimize.args import _ArgSpec
from learned_opt.minimize.kernels import _jit_hess, _jit_hvp, _jit_value, _jit_value_and_grad
from learned_opt.minimize.problem import FD_SCHEMES, Problem, split_value_grad
from learned_opt.pytree_vector import PackSpec, host_array, keystr

_TRACE_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                 jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


class _NonFinite(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Stop(Exception):
    def __init__(self, x: np.ndarray, fun: float | None, nit: int):
        super().__init__("stopped by callback")
        self.x, self.fun, self.nit = x, fun, nit


class _MaxIter(_Stop):
    """options['maxiter'] reached (methods whose scipy solver has no iteration limit: TNC)."""


def _host_scalar(out: Any, what: str = "fun") -> Any:
    """``out`` as a Python float (a complex for a complex-step evaluation)."""
    if isinstance(out, (tuple, list)):
        raise TypeError(f"{what} returned a {type(out).__name__}; expected a scalar")
    arr = np.asarray(host_array(out))
    if arr.shape != ():
        raise ValueError(f"{what} must return a scalar; it returned an array of shape {arr.shape}")
    if arr.dtype.kind == "c":
        return complex(arr)
    if arr.dtype.kind not in "fiub" and not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{what} must return a real scalar; it returned dtype {arr.dtype}")
    return float(arr)


class _Objective:
    """``f``, ``∇f``, ``H·p`` and ``∇²f`` on the packed float64 vector, with evaluation counters,
    the value history, the NaN policy and the best finite point seen so far."""

    def __init__(self, problem: Problem):
        self.problem = problem
        spec, jac, args = problem.spec, problem.jac, problem.args
        self.spec, self.fun, self.args = spec, problem.fun, args
        self.jac, self.user_hess, self.user_hessp = jac, problem.hess, problem.hessp
        self.lb, self.ub = problem.lb, problem.ub
        self.nan_policy = problem.nan_policy
        # autodiff ("jax") unless the user supplies the gradient; "eager" calls fun in Python
        self.autodiff = jac is None or jac is False or (isinstance(jac, str) and jac in FD_SCHEMES)
        # a torch x0 with autodiff: the objective is torch code, differentiated by torch.autograd
        self.value_mode = ("torch" if spec.has_torch else "jax") if self.autodiff else "eager"
        self.argspec = _ArgSpec(args)
        self.dyn = _ArgSpec.dynamic(args)
        if spec.has_float64:
            self.dyn = [np.asarray(x) if isinstance(x, np.generic) else x for x in self.dyn]
        self.nfev = self.njev = self.nhev = 0
        self.fun_history: list[float] = []
        self.time_history: list[float] = []
        self.t0 = time.perf_counter()
        self.best_f = np.inf
        self._best_x: np.ndarray | None = None  # the best finite point evaluated
        self.x_is_private = False  # set by the caller when scipy passes private copies of x
        self.best_g: np.ndarray | None = None
        self._memo_x: np.ndarray | None = None
        self._memo = None

    @property
    def best_x(self) -> np.ndarray | None:
        """The best finite point evaluated so far, as a float64 vector (None before any)."""
        return self._best_x

    @best_x.setter
    def best_x(self, value) -> None:
        self._best_x = value

    # -- helpers ---------------------------------------------------------------------------------
    def _clip(self, x: np.ndarray) -> np.ndarray:
        return x if self.lb is None else np.clip(x, self.lb, self.ub)

    def _eager_tree(self, x: np.ndarray) -> Any:
        return self.spec.unpack(self._clip(x))

    def _record(self, x: np.ndarray, f: Any, g: np.ndarray | None, finite: bool) -> None:
        self.fun_history.append(f)
        self.time_history.append(time.perf_counter() - self.t0)
        if finite and f < self.best_f:
            self.best_f = f
            # scipy's ScalarFunction-based methods hand fun a private copy they never mutate, so a
            # reference suffices there; other callers may reuse their buffer: copy
            self._best_x = x if self.x_is_private else np.array(x, dtype=np.float64)
            self.best_g = g
        elif not finite:
            self._nonfinite(f, g)

    def _nonfinite(self, f: float, g: np.ndarray | None) -> None:
        if self.nan_policy == "propagate":
            return
        n = len(self.fun_history)
        if not np.isfinite(f):
            msg = f"objective value is {f} at function evaluation {n}"
        else:
            assert g is not None  # a finite value with a non-finite gradient
            bad = []
            for path, off, size in zip(self.spec.paths, self.spec.offsets, self.spec.sizes):
                k = int(np.count_nonzero(~np.isfinite(g[off:off + size])))
                if k:
                    bad.append(f"{keystr(path)} ({k} of {size} entries)")
            msg = f"gradient is not finite at {', '.join(bad)} at function evaluation {n}"
        if self.nan_policy == "raise":
            raise FloatingPointError(msg)
        raise _NonFinite(msg)

    def _trace_failed(self, err: Exception, need_grad: bool):
        if need_grad:
            raise TypeError(
                "fun could not be traced by JAX for automatic differentiation (jac=None): "
                f"{type(err).__name__}. For a NumPy (non-JAX) objective pass jac=True with "
                "fun returning (value, grad_dict), a gradient function jac=..., or "
                "jac='2-point'.") from err
        self.value_mode = "eager"  # derivative-free: evaluate the NumPy function directly

    # -- f -----------------------------------------------------------------------------------------
    def value(self, x: np.ndarray) -> Any:
        """f(x): a float (a complex under complex-step differences, ``jac="cs"``)."""
        cplx = np.iscomplexobj(x)
        self.nfev += 1
        if self.value_mode == "torch":
            if cplx:
                raise ValueError("jac='cs' (complex-step) is not supported for torch objectives; use '2-point' "
                                 "or '3-point', or jac=None for autograd gradients")
            f = _torch_bridge.value(self.fun, self.spec, self._clip(x), self.args)
        elif self.value_mode == "jax":
            try:
                v = _jit_value(self.fun, self.spec, self.argspec, x, self.dyn, self.lb, self.ub, cplx)
            except _TRACE_ERRORS as err:
                self._trace_failed(err, need_grad=False)
                self.nfev -= 1
                return self.value(x)
            if cplx:
                return complex(v)
            f = float(v)
        else:
            if cplx:
                tree = self.spec.build([x[o:o + s].reshape(sh) for sh, o, s in
                                        zip(self.spec.shapes, self.spec.offsets, self.spec.sizes)])
                out = self.fun(tree, *self.args)
                return complex(np.asarray(out[0] if self.jac is True else out))
            out = self.fun(self._eager_tree(x), *self.args)
            if self.jac is True:
                out = split_value_grad(out)[0]
            f = _host_scalar(out)
        self._record(x, f, None, np.isfinite(f))
        return f

    # -- f, ∇f -------------------------------------------------------------------------------------
    def value_and_grad(self, x: np.ndarray) -> tuple[Any, np.ndarray]:
        self.nfev += 1
        self.njev += 1
        if self.value_mode == "torch":
            f, g = _torch_bridge.value_and_grad(self.fun, self.spec, self._clip(x), self.args)
            ok = bool(np.isfinite(f) and np.isfinite(g).all())
        elif self.value_mode == "jax":
            try:
                out = _jit_value_and_grad(self.fun, self.spec, self.argspec, x, self.dyn, self.lb, self.ub)
            except _TRACE_ERRORS as err:
                self._trace_failed(err, need_grad=True)
            head, g = out
            head = np.asarray(head)
            f, ok, g = float(head[0]), bool(head[1]), np.asarray(g, dtype=np.float64)
        else:
            tree = self._eager_tree(x)
            if self.jac is True:
                v, gt = split_value_grad(self.fun(tree, *self.args))
            else:
                v = self.fun(tree, *self.args)
                gt = self.jac(tree, *self.args)
            f = _host_scalar(v)
            g = self.spec.pack(gt, what="gradient")
            ok = bool(np.isfinite(f) and np.isfinite(g).all())
        self._record(x, f, g, ok)
        return f, g

    def gradient_at(self, x: np.ndarray) -> np.ndarray:
        """∇f at x for the result: the stored gradient of the best point if x is that point,
        else one extra evaluation (not counted in nfev/njev, not recorded in the history)."""
        if self.best_x is not None and self.best_g is not None and np.array_equal(x, self.best_x):
            return self.best_g
        with self._unrecorded():
            _, g = self.value_and_grad(x)
        return g

    @contextlib.contextmanager
    def _unrecorded(self):
        """Evaluate for reporting only: counters, history, best point and NaN policy untouched."""
        counts, n = (self.nfev, self.njev), len(self.fun_history)
        best = (self.best_f, self._best_x, self.best_g)
        policy, self.nan_policy = self.nan_policy, "propagate"
        try:
            yield
        finally:
            self.nan_policy = policy
            self.nfev, self.njev = counts
            del self.fun_history[n:], self.time_history[n:]
            self.best_f, self._best_x, self.best_g = best

    def value_at(self, x: np.ndarray) -> float:
        """f(x) for reporting (callbacks): not counted, not recorded, no NaN policy."""
        with self._unrecorded():
            return float(np.real(self.value(x)))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """∇f alone (for consumers that call f and ∇f separately): memoized on the last x."""
        if self._memo is not None and self._memo_x is not None and np.array_equal(self._memo_x, x):
            return self._memo[1]
        f, g = self.value_and_grad(x)
        self._memo_x, self._memo = np.array(x, copy=True), (f, g)
        return g

    # -- second order ---------------------------------------------------------------------------
    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        self.nhev += 1
        if self.user_hessp is not None:
            out = self.user_hessp(self._eager_tree(x), self.spec.unpack(p), *self.args)
            return self.spec.pack(out, what="hessp")
        if self.value_mode == "torch":
            return _torch_bridge.hvp(self.fun, self.spec, self._clip(x), p, self.args)
        return np.asarray(_jit_hvp(self.fun, self.spec, self.argspec, x, np.asarray(p, np.float64),
                                   self.dyn, self.lb, self.ub), dtype=np.float64)

    def hess(self, x: np.ndarray) -> np.ndarray:
        self.nhev += 1
        if self.user_hess is not None:
            return _dense_hessian(self.spec, self.user_hess(self._eager_tree(x), *self.args))
        if self.value_mode == "torch":
            return _torch_bridge.hessian(self.fun, self.spec, self._clip(x), self.args)
        return np.asarray(_jit_hess(self.fun, self.spec, self.argspec, x, self.dyn, self.lb, self.ub),
                          dtype=np.float64)


def _dense_hessian(spec: PackSpec, H: Any) -> np.ndarray:
    """A user Hessian as an (n, n) float64 matrix: either already (n, n) in pack order, or nested
    trees ``H[path_i][path_j]`` of shape ``shape_i + shape_j`` (what ``jax.hessian`` returns)."""
    n = spec.size
    H = host_array(H)
    if isinstance(H, (np.ndarray, jax.Array)) and np.ndim(H) == 2 and np.shape(H) == (n, n):
        return np.asarray(H, dtype=np.float64)
    out = np.empty((n, n), dtype=np.float64)
    rows = spec.leaves(H, what="hess")
    for path_i, row, oi, si, shi in zip(spec.paths, rows, spec.offsets, spec.sizes, spec.shapes):
        blocks = spec.leaves(row, what=f"hess{keystr(path_i)}")
        for path_j, blk, oj, sj, shj in zip(spec.paths, blocks, spec.offsets, spec.sizes, spec.shapes):
            arr = np.asarray(host_array(blk), dtype=np.float64)
            if arr.shape != shi + shj:
                raise ValueError(f"hess block {keystr(path_i)}{keystr(path_j)} has shape {arr.shape}, "
                                 f"expected {shi + shj}")
            out[oi:oi + si, oj:oj + sj] = arr.reshape(si, sj)
    return out

