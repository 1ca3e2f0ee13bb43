"""``minimize``: scipy.optimize.minimize (and optax) over dicts — any pytree — of arrays.

``minimize(fun, x0, ...)`` mirrors :func:`scipy.optimize.minimize` with ``x0`` a dict (or any
pytree) of float arrays instead of a vector. The bijection ``x ↔ vec ∈ R^n`` of
:mod:`learned_opt.pytree_vector` packs the leaves (dicts in *insertion* order) into one float64
vector for scipy and rebuilds dicts — each leaf in its own dtype and array type — for ``fun``,
``jac``, ``hess``, ``hessp``, ``callback`` and the result.

Derivatives
    ``jac=None``: ``∇f`` by JAX reverse-mode autodiff. The objective is compiled as a function of
    the flat vector, ``vec ↦ (f(unpack(vec)), ∇_vec f)``, with ``jax.jit`` keyed on
    ``(fun, structure/shapes/dtypes of x0, non-array args)``; calling ``minimize`` again with the
    same function and structure reuses the compiled code. Hessian methods get
    ``H·p = d/dε ∇f(x + ε p)`` (forward-over-reverse, ``jax.jvp`` of ``jax.grad``) for Newton-CG,
    trust-ncg, trust-krylov and trust-constr, and the dense ``∇²f`` only for dogleg and trust-exact.
    ``jac=True``: ``fun(x_dict, *args) -> (value, grad_dict)`` (dict-minimize's contract; any
    NumPy/JAX/other code). ``jac`` callable: ``jac(x_dict, *args) -> grad_dict``. ``jac`` in
    ``{"2-point", "3-point", "cs"}``: scipy's finite differences on the packed vector.

torch tensors
    ``x0`` may hold CPU ``torch.Tensor`` leaves (float16, bfloat16, float32, float64). With
    ``jac=None`` ``fun`` is torch code: every leaf reaches it as a tensor and the derivatives come
    from ``torch.autograd`` (``∇f`` by one backward pass, ``H·p`` by double backward, the dense
    Hessian for dogleg/trust-exact by ``torch.autograd.functional.hessian``); see
    :mod:`learned_opt._torch_bridge`. ``jac=True``/callables work as for NumPy. ``x``, ``jac`` and
    callback arguments are tensors of x0's dtypes. torch is never imported unless a tensor is seen.

Generic options
    ``options["maxiter"]`` (a non-negative int) and ``options["disp"]`` are accepted by every
    method. scipy's TNC has no iteration limit (only ``maxfun``): ``maxiter`` stops it after that
    many iterations (counted by its per-iteration callback) with ``status=1``, ``success=False``
    and ``x`` the last iterate. For basinhopping ``maxiter`` is its ``niter``; for shgo both go
    into its ``options``; for L-BFGS-B and dual_annealing ``disp`` prints a summary line here.
    Any other option unknown to the method raises ``ValueError`` listing the valid ones.

float64 policy
    If any leaf of ``x0`` is float64, the objective (and its derivatives, callbacks and NumPy
    objectives) run inside ``jax.enable_x64(True)`` so a float64 problem is computed in float64
    end to end; otherwise the ambient JAX configuration is left alone and each leaf is computed
    in its own dtype (scipy still sees float64). ``jax_enable_x64`` is never flipped globally.
    On float64 problems the iterates and evaluation counts are those of scipy run directly on the
    packed vector with the same float64 objective, bit for bit. An objective that merely agrees to
    the last bits (e.g. the same formula in NumPy, or a hand-written gradient) gives the same run
    only up to rounding, which some methods amplify (COBYLA's step choices, 2-point differences).

NaN / inf policy (``options["nan_policy"]``)
    ``"stop"`` (default): a non-finite value or gradient ends the run with ``success=False``,
    ``status=98`` and a message naming the evaluation and, for gradients, the key paths; ``x`` is
    the best finite point evaluated so far (``fun == fun(x)`` still holds). ``"raise"``: raise
    ``FloatingPointError`` with that message. ``"propagate"``: hand the values to scipy unchanged
    (its line searches may back off); the final result is still checked and marked failed if its
    value or gradient is not finite.

Bounds
    ``bounds=(lb, ub)`` (or a ``scipy.optimize.Bounds`` over the packed vector), or
    ``lb_dict=``/``ub_dict=``: trees matching x0 whose leaves may be arrays of the leaf's shape,
    scalars (broadcast), ``None`` or ±inf (unbounded); a single scalar/None applies to every
    leaf. ``lb > ub`` → ValueError. A method that cannot handle bounds → ValueError (scipy itself
    would only warn and ignore them). The objective is only ever evaluated inside the box: x0 is
    projected into it, and points a method proposes outside it (COBYLA can) are evaluated as
    ``f(clip(x, lb, ub))`` with the gradient ``∇f`` at the projected point.

Extra arguments
    ``fun(x, *args)`` (also ``jac``, ``hess``, ``hessp``). Array leaves of ``args`` (NumPy/JAX
    arrays and NumPy scalars) are traced, so new values reuse the compiled objective; any other
    leaf (Python numbers, strings, objects) is a static, hashed constant of the compiled code.

Callbacks
    ``callback(x_dict)`` or ``callback(intermediate_result)`` (an OptimizeResult with ``x`` as a
    dict, ``fun`` and ``nit``), called once per iteration. Returning ``True`` (or raising
    ``StopIteration``) stops any method cleanly: ``success=False``, ``status=99``, ``fun = fun(x)``
    and, for local methods and the optax path, ``x`` = the iterate passed to the callback (global
    optimizers return their best point so far). Callbacks run inside the float64 context above.

Global optimizers
    ``method`` in ``{"basinhopping", "dual_annealing", "differential_evolution", "shgo"}``;
    ``options`` are passed as keyword arguments to the scipy function. Finite bounds are required
    for the last three; basinhopping gives them to its local minimizer (default L-BFGS-B with the
    autodiff gradient). Local minimizers of dual_annealing and shgo also get the gradient.

optax / learned optimizers
    ``method`` may be an ``optax.GradientTransformation``: ``options["maxiter"]`` (default 1000)
    jitted steps ``x ← x + update(∇f(x), state, x)``; for an ``optax.GradientTransformationExtraArgs``
    (every learned optimizer) the loss is passed as ``update(..., loss=f(x))``. ``tol`` stops when
    ``max|∇f| <= tol``; bounds project each iterate onto the box. ``fun(x, *args)`` is a
    deterministic function; a stochastic task passes its batch through a closure or ``args``.

Result (``OptimizeResult``, a ``scipy.optimize.OptimizeResult``)
    ``x`` (dict like x0), ``fun`` (= ``fun(x)``), ``jac`` (dict, where the method provides a
    gradient), ``success``, ``status``, ``message``, ``nit``, ``nfev``, ``njev``, ``nhev`` plus
    ``fun_history`` (float64 array: the value at every real function evaluation, in order),
    ``time_history`` (seconds since the start at each of those evaluations) and, for the optax
    path, ``loss_history`` (``f(x_k)`` for ``k = 0..nit``). Other scipy fields (``hess_inv``, ...)
    pass through in the packed-vector coordinates.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize as sopt

from learned_opt import _torch_bridge
from learned_opt.pytree_vector import PackSpec, host_array, keystr, make_spec

__all__ = ["minimize", "OptimizeResult", "SCIPY_METHODS", "GLOBAL_METHODS"]

SCIPY_METHODS = ("Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "COBYLA",
                 "COBYQA", "SLSQP", "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov")
GLOBAL_METHODS = ("basinhopping", "dual_annealing", "differential_evolution", "shgo")
_CANON = {m.lower(): m for m in SCIPY_METHODS + GLOBAL_METHODS}
_GRAD_FREE = {"nelder-mead", "powell", "cobyla", "cobyqa"}
_HESSP = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}   # use an automatic H·p
_DENSE_HESS = {"dogleg", "trust-exact"}                               # need the dense Hessian
_USES_HESS = _HESSP | _DENSE_HESS
_NEEDS_HESS = {"dogleg", "trust-exact", "trust-ncg", "trust-krylov"}
_BOUNDED = {"nelder-mead", "powell", "l-bfgs-b", "tnc", "slsqp", "trust-constr", "cobyla", "cobyqa"}
_FD = ("2-point", "3-point", "cs")
_PRIVATE_X = {"nelder-mead", "powell", "cg", "bfgs", "newton-cg", "l-bfgs-b", "tnc", "slsqp", "trust-constr",
              "dogleg", "trust-ncg", "trust-exact", "trust-krylov"}
_OWN_OPTIONS = ("nan_policy",)
_GENERIC_OPTIONS = ("maxiter", "disp")  # accepted by every method (scipy documents both as generic)
_NAN_POLICIES = ("stop", "raise", "propagate")
STATUS_NONFINITE = 98
STATUS_CALLBACK = 99

_TRACE_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                 jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


class OptimizeResult(sopt.OptimizeResult):
    """Result of :func:`minimize` (a ``scipy.optimize.OptimizeResult``, i.e. a dict with attribute
    access). ``x`` and ``jac`` are trees shaped like x0; see the module docstring for every field,
    including ``fun_history``, ``time_history`` and (optax path) ``loss_history``."""


# ------------------------------------------------------------------------------------------------
# extra arguments: arrays are traced (no recompilation when their values change), the rest static
# ------------------------------------------------------------------------------------------------
class _Static:
    """A hashable wrapper for a non-array argument (hash by value if possible, else by identity)."""

    __slots__ = ("value", "_h")

    def __init__(self, value):
        self.value = value
        try:
            self._h = hash(("v", value))
        except TypeError:
            self._h = hash(("id", id(value)))

    def __hash__(self):
        return self._h

    def __eq__(self, other):
        if not isinstance(other, _Static):
            return False
        if self.value is other.value:
            return True
        try:
            return bool(type(self.value) is type(other.value) and self.value == other.value)
        except Exception:
            return False


def _is_dynamic(leaf: Any) -> bool:
    return isinstance(leaf, (np.ndarray, jax.Array, np.generic))


class _ArgSpec:
    """Split ``args`` into traced array leaves and static (hashed) leaves."""

    __slots__ = ("treedef", "static", "_h")

    def __init__(self, args: tuple):
        leaves, self.treedef = jax.tree_util.tree_flatten(args)
        self.static = tuple(None if _is_dynamic(x) else _Static(x) for x in leaves)
        self._h = hash((self.treedef, self.static))

    @staticmethod
    def dynamic(args: tuple) -> list:
        return [x for x in jax.tree_util.tree_leaves(args) if _is_dynamic(x)]

    def merge(self, dyn: list) -> tuple:
        it = iter(dyn)
        leaves = [next(it) if s is None else s.value for s in self.static]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def __hash__(self):
        return self._h

    def __eq__(self, other):
        return isinstance(other, _ArgSpec) and self.treedef == other.treedef and self.static == other.static


# ------------------------------------------------------------------------------------------------
# the compiled objective on the flat vector (static: fun, spec, argspec, complex flag)
# ------------------------------------------------------------------------------------------------
def _scalar_out(out: Any) -> jax.Array:
    """Check at trace time that ``fun`` returned a real scalar."""
    if isinstance(out, (tuple, list)):
        raise TypeError(f"fun returned a {type(out).__name__} of length {len(out)}; it must return a "
                        "scalar (did you mean jac=True, where fun returns (value, grad_dict)?)")
    out = jnp.asarray(out)
    if out.shape != ():
        raise ValueError(f"fun must return a scalar; it returned an array of shape {out.shape}")
    if jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise TypeError(f"fun must return a real scalar; it returned dtype {out.dtype}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        out = out.astype(jnp.result_type(float))
    return out


def _apply_fun(fun, spec: PackSpec, argspec: _ArgSpec, vec, dyn, lb, ub, cplx: bool = False):
    if lb is not None:  # evaluate inside the box; the gradient is ∇f at the projected point
        vec = vec + jax.lax.stop_gradient(jnp.clip(vec, lb, ub) - vec)
    if cplx:
        leaves = [jax.lax.slice(vec, (o,), (o + s,)).reshape(sh).astype(jnp.result_type(d, jnp.complex64))
                  for sh, d, o, s in zip(spec.shapes, spec.dtypes, spec.offsets, spec.sizes)]
        out = jnp.asarray(fun(spec.build(leaves), *argspec.merge(dyn)))
        if out.shape != ():
            raise ValueError(f"fun must return a scalar; it returned an array of shape {out.shape}")
        return out
    return _scalar_out(fun(spec.unpack_jax(vec), *argspec.merge(dyn)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 7))
def _jit_value(fun, spec, argspec, vec, dyn, lb, ub, cplx):
    return _apply_fun(fun, spec, argspec, vec, dyn, lb, ub, cplx)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_value_and_grad(fun, spec, argspec, vec, dyn, lb, ub):
    """``([f, all-finite flag], ∇f)``: the finiteness check fuses with the gradient computation."""
    v, g = jax.value_and_grad(lambda u: _apply_fun(fun, spec, argspec, u, dyn, lb, ub))(vec)
    ok = jnp.isfinite(v) & jnp.all(jnp.isfinite(g))
    return jnp.stack([v.astype(g.dtype), ok.astype(g.dtype)]), g


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_hvp(fun, spec, argspec, vec, p, dyn, lb, ub):
    grad = jax.grad(lambda u: _apply_fun(fun, spec, argspec, u, dyn, lb, ub))
    return jax.jvp(grad, (vec,), (p.astype(vec.dtype),))[1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_hess(fun, spec, argspec, vec, dyn, lb, ub):
    return jax.hessian(lambda u: _apply_fun(fun, spec, argspec, u, dyn, lb, ub))(vec)


# ------------------------------------------------------------------------------------------------
# control-flow exceptions
# ------------------------------------------------------------------------------------------------
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


def _host_scalar(out: Any, what: str = "fun") -> float | complex:
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

    def __init__(self, spec: PackSpec, fun: Callable, args: tuple, jac: Any, hess: Any, hessp: Any,
                 lb: np.ndarray | None, ub: np.ndarray | None, nan_policy: str):
        self.spec, self.fun, self.args = spec, fun, args
        self.jac, self.user_hess, self.user_hessp = jac, hess, hessp
        self.lb, self.ub = lb, ub
        self.nan_policy = nan_policy
        # autodiff ("jax") unless the user supplies the gradient; "eager" calls fun in Python
        self.autodiff = jac is None or jac is False or (isinstance(jac, str) and jac in _FD)
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

    def _record(self, x: np.ndarray, f: float, g: np.ndarray | None, finite: bool) -> None:
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
    def value(self, x: np.ndarray) -> float:
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
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError("with jac=True, fun must return (value, grad_dict); "
                                    f"it returned {type(out).__name__}")
                out = out[0]
            f = _host_scalar(out)
        self._record(x, f, None, np.isfinite(f))
        return f

    # -- f, ∇f -------------------------------------------------------------------------------------
    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
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
                out = self.fun(tree, *self.args)
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError("with jac=True, fun must return (value, grad_dict); "
                                    f"it returned {type(out).__name__}")
                v, gt = out
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
        if self._memo is not None and np.array_equal(self._memo_x, x):
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


# ------------------------------------------------------------------------------------------------
# bounds
# ------------------------------------------------------------------------------------------------
def _bound_vector(spec: PackSpec, tree: Any, side: str) -> np.ndarray:
    default = -np.inf if side == "lb" else np.inf
    vec = np.empty(spec.size, dtype=np.float64)
    leaves = spec.broadcast_leaves(tree, what=f"bounds {side}")
    for path, leaf, shape, off, size in zip(spec.paths, leaves, spec.shapes, spec.offsets, spec.sizes):
        if leaf is None:
            vec[off:off + size] = default
            continue
        arr = np.asarray(host_array(leaf))
        if arr.dtype.kind not in "fiu" and not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"bounds {side} at {keystr(path)} has dtype {arr.dtype}; expected real numbers")
        try:
            arr = np.broadcast_to(arr.astype(np.float64), shape)
        except ValueError:
            raise ValueError(f"bounds {side} at {keystr(path)} has shape {arr.shape}, which does not "
                             f"broadcast to the leaf's shape {shape}") from None
        if np.isnan(arr).any():
            raise ValueError(f"bounds {side} at {keystr(path)} contains NaN")
        vec[off:off + size] = arr.reshape(-1)
    return vec


def _bounds(spec: PackSpec, bounds: Any, lb_dict: Any, ub_dict: Any):
    """(lb, ub) float64 vectors or (None, None) if there are no finite bounds."""
    if bounds is not None and (lb_dict is not None or ub_dict is not None):
        raise ValueError("pass either bounds=(lb, ub) or lb_dict=/ub_dict=, not both")
    if bounds is not None:
        if isinstance(bounds, sopt.Bounds):  # flat bounds in pack order (or scalars)
            out = []
            for side, v in (("lb", bounds.lb), ("ub", bounds.ub)):
                try:
                    out.append(np.broadcast_to(np.asarray(v, dtype=np.float64), (spec.size,)).copy())
                except (ValueError, TypeError):
                    raise ValueError(f"scipy.optimize.Bounds {side} must be a scalar or a flat vector of "
                                     f"length {spec.size} in pack order; got shape {np.shape(v)}. "
                                     "Pass bounds=(lb_tree, ub_tree) for trees.") from None
            lb_t, ub_t = spec.unpack(out[0]), spec.unpack(out[1])
        elif isinstance(bounds, (tuple, list)) and len(bounds) == 2:
            lb_t, ub_t = bounds
        else:
            raise ValueError("bounds must be a pair (lb, ub) of trees matching x0 (leaves may be "
                             f"scalars, None or ±inf); got {type(bounds).__name__}"
                             + (f" of length {len(bounds)}" if isinstance(bounds, (tuple, list)) else ""))
    else:
        lb_t, ub_t = lb_dict, ub_dict
    if lb_t is None and ub_t is None:
        return None, None
    lb = _bound_vector(spec, lb_t, "lb")
    ub = _bound_vector(spec, ub_t, "ub")
    bad = np.nonzero(lb > ub)[0]
    if bad.size:
        i = int(bad[0])
        k = int(np.searchsorted(spec.offsets, i, side="right") - 1)
        raise ValueError(f"bounds: lb > ub at {keystr(spec.paths[k])} (flat index {i - spec.offsets[k]} "
                         f"of that leaf: lb={lb[i]}, ub={ub[i]}; {bad.size} entries in total)")
    if not (np.isfinite(lb).any() or np.isfinite(ub).any()):
        return None, None
    return lb, ub


# ------------------------------------------------------------------------------------------------
# options and callbacks
# ------------------------------------------------------------------------------------------------
_SOLVER_FUNCS = {
    "nelder-mead": "_minimize_neldermead", "powell": "_minimize_powell", "cg": "_minimize_cg",
    "bfgs": "_minimize_bfgs", "newton-cg": "_minimize_newtoncg", "l-bfgs-b": "_minimize_lbfgsb",
    "tnc": "_minimize_tnc", "cobyla": "_minimize_cobyla", "cobyqa": "_minimize_cobyqa",
    "slsqp": "_minimize_slsqp", "trust-constr": "_minimize_trustregion_constr",
}
_NOT_OPTIONS = {"fun", "func", "x0", "args", "jac", "grad", "hess", "hessp", "bounds", "constraints",
                "callback", "unknown_options", "trust_region_options", "subproblem"}


def _valid_options(meth: str) -> set[str] | None:
    """Option names scipy's solver for ``meth`` accepts (None if scipy's internals changed)."""
    try:
        if meth in ("dogleg", "trust-ncg", "trust-exact", "trust-krylov"):
            from scipy.optimize import _trustregion
            params = set(inspect.signature(_trustregion._minimize_trust_region).parameters)
            if meth == "trust-krylov":
                params.add("inexact")
        else:
            from scipy.optimize import _minimize
            params = set(inspect.signature(getattr(_minimize, _SOLVER_FUNCS[meth])).parameters)
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        return None
    return params - _NOT_OPTIONS


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


def _call_user_callback(callback, form: str, spec: PackSpec, x: np.ndarray, f: float | None, nit: int,
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


# ------------------------------------------------------------------------------------------------
# result assembly
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# scipy local methods
# ------------------------------------------------------------------------------------------------
def _minimize_scipy(obj: _Objective, spec: PackSpec, x0vec: np.ndarray, meth: str, method: Any,
                    jac: Any, hess: Any, hessp: Any, tol, callback, options: dict) -> OptimizeResult:
    if meth != "_custom":
        _check_options(options, _valid_options(meth), f"method {method!r}")
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
    if meth in _GRAD_FREE:
        if jac is not None and jac is not False:
            warnings.warn(f"Method {method} does not use gradient information (jac).", RuntimeWarning,
                          stacklevel=3)
        f_arg, jac_arg = obj.value, None
    elif isinstance(jac, str):
        f_arg, jac_arg = obj.value, jac
    elif jac is False:
        f_arg, jac_arg = obj.value, None
    else:
        f_arg, jac_arg = obj.value_and_grad, True

    hess_arg = hessp_arg = None
    if meth not in _USES_HESS and meth != "_custom":
        if hess is not None:
            warnings.warn(f"Method {method} does not use Hessian information (hess).", RuntimeWarning, stacklevel=3)
        if hessp is not None:
            warnings.warn(f"Method {method} does not use Hessian-vector product information (hessp).",
                          RuntimeWarning, stacklevel=3)
    else:
        if isinstance(hess, str) or isinstance(hess, sopt.HessianUpdateStrategy):
            hess_arg = hess
        elif hess is not None:
            hess_arg = obj.hess
        elif hessp is not None:
            hessp_arg = obj.hessp
        elif obj.autodiff and jac_arg is True:
            if meth in _DENSE_HESS:
                hess_arg = obj.hess
            else:
                hessp_arg = obj.hessp
        elif meth in _NEEDS_HESS:
            raise ValueError(f"method {method!r} needs second derivatives: pass hess= or hessp= (on dicts), "
                             "or use jac=None so they come from JAX autodiff")
        if meth == "newton-cg" and hessp is not None and hess is not None:
            hess_arg = None

    scipy_bounds = None
    if obj.lb is not None:  # start inside the box (the objective is only evaluated there anyway)
        scipy_bounds = sopt.Bounds(obj.lb, obj.ub, keep_feasible=(meth == "trust-constr"))
        x0vec = np.clip(x0vec, obj.lb, obj.ub)

    # methods whose evaluations go through scipy's ScalarFunction / copying wrappers
    obj.x_is_private = meth in _PRIVATE_X

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

    if meth == "tnc":
        def cb(xk):
            _handle(xk, None)
    else:
        def cb(intermediate_result):
            _handle(intermediate_result.x, float(intermediate_result.fun)
                    if "fun" in intermediate_result else None)

    try:
        r = sopt.minimize(f_arg, x0vec, method=method if meth == "_custom" else _CANON[meth], jac=jac_arg,
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

    xvec = obj._clip(np.asarray(r.x, dtype=np.float64))
    gvec = None
    if meth not in _GRAD_FREE and not isinstance(jac, str) and jac is not False:
        # scipy's own res.jac can be stale (Newton-CG, SLSQP report an earlier gradient)
        gvec = obj.gradient_at(xvec)
    res = OptimizeResult({k: v for k, v in r.items() if k not in ("x", "jac", "grad", "fun")})
    res.x = spec.unpack(xvec)
    res.fun = float(np.asarray(r.fun).real)
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
        print(f"{_CANON[meth]}: {res.message}; f = {res.fun:.6g} after {res.nit} iterations, {res.nfev} evaluations")
    return _attach_history(res, obj)


# ------------------------------------------------------------------------------------------------
# scipy global optimizers
# ------------------------------------------------------------------------------------------------
_GLOBAL_RESERVED = {"func", "x0", "bounds", "args", "callback"}


def _minimize_global(obj: _Objective, spec: PackSpec, x0vec: np.ndarray, meth: str, jac, tol,
                     callback, options: dict) -> OptimizeResult:
    fn = getattr(sopt, meth)
    valid = set(inspect.signature(fn).parameters) - _GLOBAL_RESERVED
    if tol is not None and "tol" in valid:
        options.setdefault("tol", tol)
    _check_options(options, valid, f"method {meth!r}")
    # the generic options, mapped onto each global optimizer's own names
    disp_after = False
    if meth == "basinhopping" and "maxiter" in options:
        if "niter" in options:
            raise ValueError("basinhopping: pass either options['maxiter'] or options['niter'], not both")
        options["niter"] = options.pop("maxiter")
    elif meth == "shgo":
        sub = dict(options.pop("options", None) or {})
        for k in _GENERIC_OPTIONS:
            if k in options:
                sub[k] = options.pop(k)
        if sub:
            options["options"] = sub
    elif meth == "dual_annealing" and "disp" in options:
        disp_after = bool(options.pop("disp"))
    has_grad = not (isinstance(jac, str) or jac is False)
    lb, ub = obj.lb, obj.ub
    if meth != "basinhopping":
        if lb is None or not (np.isfinite(lb).all() and np.isfinite(ub).all()):
            bad = [keystr(p) for p, o, s in zip(spec.paths, spec.offsets, spec.sizes)
                   if lb is None or not (np.isfinite(lb[o:o + s]).all() and np.isfinite(ub[o:o + s]).all())]
            raise ValueError(f"method {meth!r} needs finite bounds for every entry; missing or infinite "
                             f"at {', '.join(bad)}")
    form = _callback_form(callback) if callback is not None else None
    counter = [0]
    stopped = [False]

    def ask(x, f):  # the user's callback; remembers a stop request
        counter[0] += 1
        stop = _call_user_callback(callback, form, spec, x, f, counter[0], obj.value_at)
        stopped[0] = stopped[0] or stop
        return stop

    kw = dict(options)
    try:
        if meth == "basinhopping":
            mk = dict(kw.pop("minimizer_kwargs", None) or {})
            local = str(mk.get("method", "L-BFGS-B")).lower()
            mk.setdefault("method", "L-BFGS-B")
            if local in _GRAD_FREE or not has_grad:
                func = obj.value
                if isinstance(jac, str):
                    mk.setdefault("jac", jac)
            else:
                func = obj.value_and_grad
                mk["jac"] = True
                if local in _HESSP and obj.autodiff:
                    mk.setdefault("hessp", obj.hessp)
                elif local in _DENSE_HESS and obj.autodiff:
                    mk.setdefault("hess", obj.hess)
            if lb is not None:
                if local not in _BOUNDED:
                    raise ValueError(f"basinhopping's local method {mk['method']!r} cannot handle bounds")
                mk["bounds"] = sopt.Bounds(lb, ub)
            cb = None
            if callback is not None:
                def cb(x, f, accept):
                    return ask(x, float(f))
            r = fn(func, x0vec, minimizer_kwargs=mk, callback=cb, **kw)
            lowest = r.get("lowest_optimization_result")
            gvec = lowest.get("jac") if lowest is not None else None
            success = bool(lowest.get("success", True)) if lowest is not None else True
        else:
            bnds = list(zip(lb.tolist(), ub.tolist()))
            extra: dict = {}
            if meth in ("dual_annealing", "shgo") and has_grad:
                mk = dict(kw.pop("minimizer_kwargs", None) or {})
                local = str(mk.get("method", "L-BFGS-B" if meth == "dual_annealing" else "SLSQP")).lower()
                if local not in _GRAD_FREE:
                    mk.setdefault("jac", obj.grad)
                if meth == "dual_annealing" and "method" not in mk:
                    mk["method"] = "L-BFGS-B"
                extra["minimizer_kwargs"] = mk
            if meth in ("dual_annealing", "differential_evolution"):
                extra["x0"] = np.clip(x0vec, lb, ub)
            func = obj.value  # most evaluations are samples that need no gradient
            if callback is not None:
                if meth == "dual_annealing":
                    def cb(x, f, context):
                        return ask(x, float(f))
                elif meth == "differential_evolution":
                    def cb(intermediate_result):
                        if ask(intermediate_result.x, float(intermediate_result.fun)):
                            raise StopIteration
                else:
                    def cb(xk):
                        if ask(xk, None):
                            raise _Stop(np.array(xk, dtype=np.float64), None, counter[0])
                extra["callback"] = cb
            kw.update(extra)
            r = fn(func, bnds, **kw)
            gvec = r.get("jac")
            success = bool(r.get("success", True))
    except _Stop as stop:
        return _early_result(obj, spec, stop.x, stop.fun, STATUS_CALLBACK,
                             f"stopped by the callback after {stop.nit} iterations", stop.nit)
    except _NonFinite as err:
        return _nonfinite_result(obj, spec, x0vec, err.message, nit=counter[0])

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
    if stopped[0]:  # the user's callback ended the run (basinhopping reports that as a success)
        res.status = STATUS_CALLBACK
        res.success = False
    res.nit = int(r.get("nit", counter[0]) or 0)
    res.nfev = int(r.get("nfev", obj.nfev))
    res.njev = int(r.get("njev", obj.njev))
    res.nhev = int(r.get("nhev", obj.nhev))
    _check_final(res, None if gvec is None else np.asarray(gvec, dtype=np.float64))
    if disp_after:
        print(f"{meth}: {res.message}; f = {res.fun:.6g} after {res.nit} iterations, {res.nfev} evaluations")
    return _attach_history(res, obj)


# ------------------------------------------------------------------------------------------------
# optax GradientTransformation (hand-designed or learned optimizers)
# ------------------------------------------------------------------------------------------------
def _optax_update(opt, extra, params, grads, state, value, lb, ub):
    import optax
    if extra:
        updates, state = opt.update(grads, state, params, loss=value)
    else:
        updates, state = opt.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    if lb is not None:
        new = [jnp.clip(p, l, u).astype(p.dtype) for p, l, u in zip(new, lb, ub)]
    return new, state


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _jit_optax_step(fun, spec, argspec, opt, extra, params, state, dyn, lb, ub):
    """One step on the leaf list ``params`` (pack order): f, ∇f at params, then the update."""
    def f(leaves):
        return _scalar_out(fun(spec.build(leaves), *argspec.merge(dyn)))
    value, grads = jax.value_and_grad(f)(params)
    ok = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads]))
    gmax = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) if g.size else jnp.zeros((), g.dtype) for g in grads]).astype(jnp.float32))
    new, state = _optax_update(opt, extra, params, grads, state, value, lb, ub)
    return new, state, value, grads, ok, gmax


@functools.partial(jax.jit, static_argnums=(0, 1))
def _jit_optax_update(opt, extra, params, grads, state, value, lb, ub):
    return _optax_update(opt, extra, params, grads, state, value, lb, ub)


def _minimize_optax(fun, spec: PackSpec, x0: Any, opt, args: tuple, jac, hess, hessp, lb, ub, tol,
                    callback, options: dict, nan_policy: str) -> OptimizeResult:
    import optax
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
        if lb is not None:
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
                out = fun(tree, *args)
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError("with jac=True, fun must return (value, grad_dict)")
                v, gt = out
            else:
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
                gflat = np.concatenate([np.asarray(x, np.float64).reshape(-1) for x in g])
                if not np.isfinite(v):
                    msg = f"objective value is {v} at step {k}"
                else:
                    bad = [f"{keystr(p)} ({int(np.count_nonzero(~np.isfinite(gflat[o:o + s])))} of {s} entries)"
                           for p, o, s in zip(spec.paths, spec.offsets, spec.sizes)
                           if not np.isfinite(gflat[o:o + s]).all()]
                    msg = f"gradient is not finite at {', '.join(bad)} at step {k}"
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


# ------------------------------------------------------------------------------------------------
# the front door
# ------------------------------------------------------------------------------------------------
def _resolve_method(method: Any, has_bounds: bool):
    """('scipy' | 'global' | 'optax' | 'custom', lower-case name or the object)."""
    if method is None:
        return "scipy", ("l-bfgs-b" if has_bounds else "bfgs")
    if isinstance(method, str):
        meth = method.lower()
        if meth in _CANON:
            return ("global" if _CANON[meth] in GLOBAL_METHODS else "scipy"), meth
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(SCIPY_METHODS + GLOBAL_METHODS)}, "
                         "an optax GradientTransformation or a learned optimizer's opt_fn(theta)")
    if isinstance(method, optax.GradientTransformation):
        return "optax", method
    if callable(method):
        return "custom", method
    raise TypeError(f"method must be a string, an optax GradientTransformation or a callable; got "
                    f"{type(method).__name__}")


def minimize(fun: Callable, x0: Any, *, args: tuple = (), method: Any = None, jac: Any = None,
             hess: Any = None, hessp: Any = None, bounds: Any = None, lb_dict: Any = None,
             ub_dict: Any = None, tol: float | None = None, callback: Callable | None = None,
             options: dict | None = None) -> OptimizeResult:
    """Minimize ``fun(x, *args)`` over a dict (any pytree) of float arrays ``x`` starting at ``x0``.

    Mirrors :func:`scipy.optimize.minimize` (and dict-minimize's ``minimize``) with every vector
    replaced by a tree shaped like ``x0``; see the module docstring for derivatives, the float64
    and NaN policies, bounds, callbacks, global and optax methods and the result's fields.

    Raises ``TypeError``/``ValueError`` naming the key path for: integer/complex/non-array leaves,
    an empty x0, gradients with missing/extra keys or wrong shapes, a non-scalar objective, an
    unknown method or option, bounds of the wrong structure, ``lb > ub`` and bounds given to a
    method that would ignore them.
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable; got {type(fun).__name__}")
    spec = make_spec(x0)
    if not isinstance(args, tuple):
        args = (args,)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict; got {type(options).__name__}")
    options = dict(options or {})
    nan_policy = options.pop("nan_policy", "stop")
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"options['nan_policy'] must be one of {_NAN_POLICIES}; got {nan_policy!r}")
    _check_generic(options)
    if not (jac is None or isinstance(jac, bool) or callable(jac) or (isinstance(jac, str) and jac in _FD)):
        raise ValueError(f"jac must be None, True, False, a callable or one of {_FD}; got {jac!r}")
    if hess is not None and not (callable(hess) or isinstance(hess, sopt.HessianUpdateStrategy)
                                 or (isinstance(hess, str) and hess in _FD)):
        raise ValueError(f"hess must be a callable, a HessianUpdateStrategy or one of {_FD}; got {hess!r}")
    if hessp is not None and not callable(hessp):
        raise TypeError(f"hessp must be callable; got {type(hessp).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    lb, ub = _bounds(spec, bounds, lb_dict, ub_dict)
    kind, meth = _resolve_method(method, lb is not None)

    if kind == "optax":
        if spec.has_torch and jac is None:  # torch objective: autograd gradients, optax update in JAX
            torch_fun = fun

            def fun(x, *a):
                return _torch_bridge.value_and_grad_tree(torch_fun, spec, x, a)
            jac = True
        return _minimize_optax(fun, spec, x0, meth, args, jac, hess, hessp, lb, ub, tol, callback,
                               options, nan_policy)
    if kind == "scipy" and lb is not None and meth not in _BOUNDED:
        raise ValueError(f"method {_CANON[meth]!r} cannot handle bounds (scipy would ignore them); use one of "
                         f"{', '.join(_CANON[m] for m in sorted(_BOUNDED))}")
    if kind == "custom":
        meth_name = "_custom"
    else:
        meth_name = meth
    x0vec = spec.pack(x0, what="x0")
    obj = _Objective(spec, fun, args, jac, hess, hessp, lb, ub, nan_policy)
    with jax.enable_x64(True) if spec.has_float64 else contextlib.nullcontext():
        if kind == "global":
            return _minimize_global(obj, spec, x0vec, meth, jac, tol, callback, options)
        return _minimize_scipy(obj, spec, x0vec, meth_name, method if kind == "custom" else _CANON[meth],
                               jac, hess, hessp, tol, callback, options)
