"""``learned-opt minimize``: run :func:`learned_opt.minimize` on a built-in test problem.

The default problem is the 4-D Rosenbrock function split across two keys of a dict,

    f(a, b) = Σ_{i=0,1} 100 (b_i − a_i²)² + (1 − a_i)²,      minimum f = 0 at a = b = (1, 1),

optionally boxed (``--bounds LO HI``). ``--method`` takes any scipy method name, a global
optimizer name, or ``adam`` / ``sgd`` (optax, with ``--lr``).
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

import numpy as np


def rosenbrock_split(p: dict) -> object:
    """Rosenbrock over two keys: Σ_i 100 (b_i − a_i²)² + (1 − a_i)²."""
    a, b = p["a"], p["b"]
    return (100.0 * (b - a ** 2) ** 2 + (1.0 - a) ** 2).sum()


def quadratic(p: dict) -> object:
    """½ xᵀ A x − bᵀ x over two keys with A = diag(1..n) (minimum x* = A⁻¹ b)."""
    import jax.numpy as jnp
    x = jnp.concatenate([p["u"].reshape(-1), p["v"].reshape(-1)])
    d = jnp.arange(1.0, x.size + 1.0, dtype=x.dtype)
    return 0.5 * jnp.sum(d * x * x) - jnp.sum(x)


PROBLEMS = {
    "rosenbrock": (rosenbrock_split, lambda: {"a": np.array([-1.2, -1.2]), "b": np.array([1.0, 1.0])}),
    "quadratic": (quadratic, lambda: {"u": np.zeros((2, 2)), "v": np.zeros(3)}),
}


def _jsonable(tree):
    if isinstance(tree, dict):
        return {str(k): _jsonable(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float64).round(8).tolist()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="learned-opt minimize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", choices=sorted(PROBLEMS), default="rosenbrock")
    ap.add_argument("--method", default="L-BFGS-B",
                    help="scipy method (L-BFGS-B, BFGS, trust-ncg, ...), global optimizer "
                         "(basinhopping, dual_annealing, differential_evolution, shgo) or adam/sgd")
    ap.add_argument("--maxiter", type=int, default=None, help="iteration limit (optax: number of steps)")
    ap.add_argument("--lr", type=float, default=1e-2, help="learning rate for adam/sgd")
    ap.add_argument("--bounds", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="box bounds applied to every entry (required by the global optimizers except basinhopping)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ns = ap.parse_args(list(argv) if argv is not None else None)

    from learned_opt.minimize import GLOBAL_METHODS, minimize

    fun, make_x0 = PROBLEMS[ns.problem]
    x0 = make_x0()
    options: dict = {}
    method: object = ns.method
    if ns.method.lower() in ("adam", "sgd"):
        import optax
        method = optax.adam(ns.lr) if ns.method.lower() == "adam" else optax.sgd(ns.lr)
        options["maxiter"] = ns.maxiter if ns.maxiter is not None else 2000
    elif ns.maxiter is not None:
        key = "niter" if ns.method == "basinhopping" else "maxiter"
        options[key] = ns.maxiter
    bounds = None
    if ns.bounds is not None:
        bounds = (ns.bounds[0], ns.bounds[1])
    elif ns.method in GLOBAL_METHODS and ns.method != "basinhopping":
        bounds = (-2.0, 2.0)
    if ns.method == "differential_evolution":
        options.setdefault("rng", 0)
    elif ns.method in ("dual_annealing", "basinhopping"):
        options.setdefault("rng", 0)
    res = minimize(fun, x0, method=method, bounds=bounds, options=options or None)

    summary = {
        "problem": ns.problem, "method": ns.method, "success": bool(res.success),
        "message": str(res.message), "fun": float(res.fun), "nit": int(res.nit), "nfev": int(res.nfev),
        "njev": int(res.get("njev", 0)), "x": _jsonable(res.x),
    }
    if ns.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"learned_opt.minimize on {ns.problem} (x0 = {_jsonable(x0)}) with {ns.method}")
        for k in ("success", "message", "fun", "nit", "nfev", "njev"):
            print(f"  {k:8s} {summary[k]}")
        for k, v in summary["x"].items():
            print(f"  x[{k!r}] = {v}")
    return 0 if res.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
