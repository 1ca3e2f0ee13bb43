"""The method table: one :class:`MethodInfo` per named method (what it needs and accepts)."""
from __future__ import annotations

import dataclasses
from typing import Any

import optax


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What ``minimize`` needs to know about one named method.

    ``uses_gradient``: the method (or, for a global method, its local minimizer) uses ``∇f``;
    ``bounds``: it accepts bounds; ``needs_finite_bounds``: it cannot run without finite bounds
    on every entry; ``hessian``: ``"hessp"`` (gets an automatic ``H·p``), ``"dense"`` (gets the
    dense ``∇²f``) or ``"none"``; ``needs_hessian``: it cannot run without second derivatives;
    ``private_x``: scipy hands ``fun`` private copies of ``x`` (its ``ScalarFunction`` wrappers),
    so the best point can be kept by reference.
    """

    name: str
    uses_gradient: bool = True
    bounds: bool = False
    hessian: str = "none"
    needs_hessian: bool = False
    is_global: bool = False
    needs_finite_bounds: bool = False
    private_x: bool = True

    @property
    def key(self) -> str:
        return self.name.lower()


_TABLE = (
    MethodInfo("Nelder-Mead", uses_gradient=False, bounds=True),
    MethodInfo("Powell", uses_gradient=False, bounds=True),
    MethodInfo("CG"),
    MethodInfo("BFGS"),
    MethodInfo("Newton-CG", hessian="hessp"),
    MethodInfo("L-BFGS-B", bounds=True),
    MethodInfo("TNC", bounds=True),
    MethodInfo("COBYLA", uses_gradient=False, bounds=True, private_x=False),
    MethodInfo("COBYQA", uses_gradient=False, bounds=True, private_x=False),
    MethodInfo("SLSQP", bounds=True),
    MethodInfo("trust-constr", bounds=True, hessian="hessp"),
    MethodInfo("dogleg", hessian="dense", needs_hessian=True),
    MethodInfo("trust-ncg", hessian="hessp", needs_hessian=True),
    MethodInfo("trust-exact", hessian="dense", needs_hessian=True),
    MethodInfo("trust-krylov", hessian="hessp", needs_hessian=True),
    MethodInfo("basinhopping", bounds=True, is_global=True, private_x=False),
    MethodInfo("dual_annealing", bounds=True, is_global=True, needs_finite_bounds=True, private_x=False),
    MethodInfo("differential_evolution", uses_gradient=False, bounds=True, is_global=True,
               needs_finite_bounds=True, private_x=False),
    MethodInfo("shgo", bounds=True, is_global=True, needs_finite_bounds=True, private_x=False),
)

#: lower-case name -> MethodInfo
METHODS: dict[str, MethodInfo] = {m.key: m for m in _TABLE}
SCIPY_METHODS = tuple(m.name for m in _TABLE if not m.is_global)
GLOBAL_METHODS = tuple(m.name for m in _TABLE if m.is_global)
_CANON = {m.key: m.name for m in _TABLE}


def info(name: str) -> MethodInfo | None:
    """The table entry of a (case-insensitive) method name; None for an unknown name."""
    return METHODS.get(name.lower())


def _resolve_method(method: Any, has_bounds: bool) -> tuple[str, Any]:
    """('scipy' | 'global' | 'optax' | 'custom', lower-case name or the object)."""
    if method is None:
        return "scipy", ("l-bfgs-b" if has_bounds else "bfgs")
    if isinstance(method, str):
        meth = method.lower()
        if meth in METHODS:
            return ("global" if METHODS[meth].is_global else "scipy"), meth
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(SCIPY_METHODS + GLOBAL_METHODS)}, "
                         "an optax GradientTransformation or a learned optimizer's opt_fn(theta)")
    if isinstance(method, optax.GradientTransformation):
        return "optax", method
    if callable(method):
        return "custom", method
    raise TypeError(f"method must be a string, an optax GradientTransformation or a callable; got "
                    f"{type(method).__name__}")
