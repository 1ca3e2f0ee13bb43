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

from learned_opt.minimize.api import minimize
from learned_opt.minimize.methods import GLOBAL_METHODS, METHODS, SCIPY_METHODS, MethodInfo
from learned_opt.minimize.problem import Problem
from learned_opt.minimize.result import STATUS_CALLBACK, STATUS_NONFINITE, OptimizeResult

__all__ = ["minimize", "OptimizeResult", "SCIPY_METHODS", "GLOBAL_METHODS", "METHODS", "MethodInfo", "Problem",
           "STATUS_CALLBACK", "STATUS_NONFINITE"]
