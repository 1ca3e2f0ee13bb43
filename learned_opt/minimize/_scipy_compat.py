"""Everything that reads scipy's *private* internals, in one place.

scipy validates a method's ``options`` only by warning; ``minimize`` raises instead, so it needs
the option names each solver accepts, which scipy exposes only through the signatures of its
private solver functions. ``tests/test_minimize_scipy_compat.py`` fails loudly when scipy moves
or renames them (``valid_options`` then returns None and option checking is skipped).
"""
from __future__ import annotations

import inspect
from typing import Callable

#: lower-case method name -> the private function in ``scipy.optimize._minimize`` that runs it
SOLVER_FUNCS = {
    "nelder-mead": "_minimize_neldermead", "powell": "_minimize_powell", "cg": "_minimize_cg",
    "bfgs": "_minimize_bfgs", "newton-cg": "_minimize_newtoncg", "l-bfgs-b": "_minimize_lbfgsb",
    "tnc": "_minimize_tnc", "cobyla": "_minimize_cobyla", "cobyqa": "_minimize_cobyqa",
    "slsqp": "_minimize_slsqp", "trust-constr": "_minimize_trustregion_constr",
}
#: the trust-region methods share ``scipy.optimize._trustregion._minimize_trust_region``
TRUST_REGION = ("dogleg", "trust-ncg", "trust-exact", "trust-krylov")
_NOT_OPTIONS = {"fun", "func", "x0", "args", "jac", "grad", "hess", "hessp", "bounds", "constraints",
                "callback", "unknown_options", "trust_region_options", "subproblem"}
_GLOBAL_RESERVED = {"func", "x0", "bounds", "args", "callback"}


def solver_function(meth: str) -> Callable:
    """scipy's private solver function for the local method ``meth`` (lower case); raises
    ImportError / AttributeError / KeyError if scipy's internals changed."""
    if meth in TRUST_REGION:
        from scipy.optimize import _trustregion
        return _trustregion._minimize_trust_region
    from scipy.optimize import _minimize
    return getattr(_minimize, SOLVER_FUNCS[meth])


def valid_options(meth: str) -> set[str] | None:
    """Option names scipy's solver for ``meth`` accepts (None if scipy's internals changed)."""
    try:
        params = set(inspect.signature(solver_function(meth)).parameters)
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        return None
    if meth == "trust-krylov":
        params.add("inexact")
    return params - _NOT_OPTIONS


def global_options(fn: Callable) -> set[str]:
    """Option names of a public global optimizer (``scipy.optimize.shgo`` ...), minus the ones
    ``minimize`` sets itself."""
    return set(inspect.signature(fn).parameters) - _GLOBAL_RESERVED
