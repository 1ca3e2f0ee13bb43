"""dict-minimize's contract, as our own tests of ``learned_opt.minimize``.

The generic options ``maxiter``/``disp`` for every method (TNC included), key order and dtypes
(float16 included) kept in x, jac and the callback, ``args`` passed through, callbacks seeing
dicts of x0's form, and bounded methods never leaving the box.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt import minimize

ALL = ["Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "COBYLA", "COBYQA",
       "SLSQP", "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov"]
GRAD_FREE = ["Nelder-Mead", "Powell", "COBYLA", "COBYQA"]
GRADIENT = [m for m in ALL if m not in GRAD_FREE]
HESS = ["Newton-CG", "dogleg", "trust-ncg", "trust-exact", "trust-krylov"]
BOUNDED = ["Nelder-Mead", "Powell", "L-BFGS-B", "TNC", "SLSQP", "trust-constr", "COBYLA", "COBYQA"]


def rosen(x, *_):
    """Rosenbrock over the concatenation of every leaf (any dict of x0's form), in float64."""
    v = jnp.concatenate([jnp.ravel(x[k]).astype(jnp.float64) for k in x])
    return jnp.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2)


def rosen_np(v):
    return float(np.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2))


def rosen_grad_np(v):
    g = np.zeros_like(v)
    d = v[1:] - v[:-1] ** 2
    g[:-1] += -400.0 * v[:-1] * d - 2.0 * (1.0 - v[:-1])
    g[1:] += 200.0 * d
    return g


def x0_f64():
    # keys deliberately not sorted: insertion order must survive
    return {"z": np.array([-1.2, 1.0]), "a": np.array([[-0.5, 0.8], [1.1, 0.3]]), "m": np.array(0.7)}


def flat(x):
    return np.concatenate([np.asarray(x[k], np.float64).reshape(-1) for k in x])


def unflat_like(v, x0):
    out, o = {}, 0
    for k, leaf in x0.items():
        n = int(np.size(leaf))
        out[k] = v[o:o + n].reshape(np.shape(leaf))
        o += n
    return out


def np_value_and_grad(x, *_):
    """dict-minimize style objective: NumPy, jac=True, returns (value, grad_dict)."""
    v = flat(x)
    return rosen_np(v), unflat_like(rosen_grad_np(v), x)


# ------------------------------------------------------------------------------------------------
# generic options
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", GRADIENT)
def test_maxiter_binds_for_every_gradient_method(method):
    seen = []
    x0 = x0_f64()
    if method == "dogleg":  # needs a positive-definite Hessian: start in Rosenbrock's convex valley
        x0 = {"z": np.array([1.1, 1.2]), "a": np.array([[1.3, 1.5], [1.9, 2.5]]), "m": np.array(1.5)}
    res = minimize(rosen, x0, method=method, options={"maxiter": 3}, callback=lambda x: seen.append(x))
    assert res.nit <= 3, (method, res.nit)
    assert len(seen) <= 3 + (method == "trust-constr")  # trust-constr also reports its start
    assert not res.success  # Rosenbrock from this start is not solved in 3 iterations
    assert res.fun == pytest.approx(rosen_np(flat(res.x)), rel=1e-12)
    longer = minimize(rosen, x0, method=method, options={"maxiter": 200})
    assert longer.nit > res.nit and longer.fun < res.fun  # the limit actually bound


@pytest.mark.parametrize("method", [m for m in GRADIENT if m not in HESS])
def test_maxiter_with_numpy_jac_true(method):
    res = minimize(np_value_and_grad, x0_f64(), jac=True, method=method, options={"maxiter": 4})
    assert res.nit <= 4
    assert list(res.x) == ["z", "a", "m"]


@pytest.mark.parametrize("method", ALL + ["basinhopping", "shgo", "dual_annealing", "differential_evolution"])
def test_maxiter_and_disp_accepted_by_every_method(method):
    bounded = method in ("shgo", "dual_annealing", "differential_evolution")
    x0 = {"p": np.array([0.3, -0.2])}
    opts = {"maxiter": 6, "disp": False}  # COBYLA needs at least n + 2 evaluations
    if method == "differential_evolution":
        opts.update(popsize=4, polish=False, rng=0)
    if method in ("dual_annealing", "basinhopping"):
        opts["rng"] = 0
    res = minimize(rosen, x0, method=method, options=opts, bounds=(-2.0, 2.0) if bounded else None)
    assert np.isfinite(res.fun)
    assert list(res.x) == ["p"] and res.x["p"].dtype == np.float64


def test_tnc_maxiter_counts_iterations_and_reports_the_limit():
    res = minimize(rosen, x0_f64(), method="TNC", options={"maxiter": 5})
    assert res.nit == 5 and res.status == 1 and not res.success
    assert "maxiter" in res.message
    assert res.fun == pytest.approx(rosen_np(flat(res.x)), rel=1e-12)
    np.testing.assert_allclose(flat(res.jac), rosen_grad_np(flat(res.x)), rtol=1e-9)
    # maxfun still works alongside it, and no maxiter = TNC's own stopping rules
    free = minimize(rosen, x0_f64(), method="TNC", options={"maxfun": 2000})
    assert free.nit > 5
    zero = minimize(rosen, x0_f64(), method="TNC", options={"maxiter": 0})
    assert zero.nit == 0 and not zero.success
    np.testing.assert_array_equal(flat(zero.x), flat(x0_f64()))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_bad_maxiter_names_the_option(bad):
    with pytest.raises(ValueError, match=r"options\['maxiter'\]"):
        minimize(rosen, x0_f64(), method="TNC", options={"maxiter": bad})


def test_unknown_option_still_rejected_and_lists_generic_ones():
    with pytest.raises(ValueError, match=r"unknown option.*'maxfev'.*TNC.*maxiter"):
        minimize(rosen, x0_f64(), method="TNC", options={"maxfev": 3})


@pytest.mark.parametrize("method", ["CG", "BFGS", "Newton-CG", "dogleg"])
def test_bounds_on_unbounded_method_name_the_alternatives(method):
    with pytest.raises(ValueError, match=rf"{method}.*cannot handle bounds.*L-BFGS-B.*TNC"):
        minimize(np_value_and_grad, x0_f64(), jac=True, method=method, lb_dict={"z": -1.0, "a": None, "m": 0.0})


# ------------------------------------------------------------------------------------------------
# key order and dtypes
# ------------------------------------------------------------------------------------------------
def _mixed_x0(with_f64: bool):
    x = {"w": np.array([0.5, -0.25, 1.0], np.float16), "b": np.array([[0.1, 0.2]], np.float32)}
    if with_f64:
        x["c"] = np.float64(0.3)
    return x


def quad(x, *_):
    # the minimum (1, 1, ...) is exactly representable in every dtype
    return sum(jnp.sum((jnp.asarray(x[k]).astype(jnp.float32) - 1.0) ** 2) for k in x)


@pytest.mark.parametrize("with_f64", [False, True])
@pytest.mark.parametrize("method", GRADIENT)
def test_key_order_and_dtypes_kept_including_float16(method, with_f64):
    x0 = _mixed_x0(with_f64)
    seen = []

    def f(x):
        seen.append({k: (v.dtype, np.shape(v)) for k, v in x.items()})
        return quad(x)

    res = minimize(f, x0, method=method, options={"maxiter": 50})
    assert list(res.x) == list(x0)
    for k in x0:
        assert np.asarray(res.x[k]).dtype == np.asarray(x0[k]).dtype, k
        assert np.shape(res.x[k]) == np.shape(x0[k])
        assert type(res.x[k]) is type(x0[k]), k
        assert np.asarray(res.jac[k]).dtype == np.asarray(x0[k]).dtype, k
        np.testing.assert_allclose(np.asarray(res.x[k], np.float64), 1.0, atol=2e-3)
    assert list(seen[0]) == list(x0)  # traced once with x0's keys, in order


@pytest.mark.parametrize("method", ["L-BFGS-B", "CG", "TNC", "SLSQP"])
def test_numpy_fun_receives_x0_dtypes_and_order(method):
    x0 = _mixed_x0(True)
    calls = []

    def vg(x):
        calls.append([(k, np.asarray(v).dtype) for k, v in x.items()])
        g = {k: 2.0 * (np.asarray(v, np.float64) - 1.0) for k, v in x.items()}
        return float(sum(np.sum((np.asarray(v, np.float64) - 1.0) ** 2) for v in x.values())), g

    res = minimize(vg, x0, jac=True, method=method, options={"maxiter": 30})
    want = [(k, np.asarray(v).dtype) for k, v in x0.items()]
    assert calls and all(c == want for c in calls)
    assert [(k, np.asarray(v).dtype) for k, v in res.x.items()] == want


# ------------------------------------------------------------------------------------------------
# args
# ------------------------------------------------------------------------------------------------
# jac=True only where it means something: trust-ncg also needs a Hessian, Nelder-Mead no gradient
@pytest.mark.parametrize("method,jac", [(m, j) for m in ["L-BFGS-B", "BFGS", "TNC", "trust-ncg", "Nelder-Mead"]
                                        for j in (None, True)
                                        if not (j is True and m in ("trust-ncg", "Nelder-Mead"))])
def test_args_passed_through(method, jac):
    target = np.array([2.0, -3.0])
    got = []

    def f(x, t, scale):
        got.append((type(t), scale))
        return scale * jnp.sum((x["p"] - t) ** 2)

    def vg(x, t, scale):
        got.append((type(t), scale))
        return scale * float(np.sum((x["p"] - t) ** 2)), {"p": 2.0 * scale * (x["p"] - t)}

    opts = {"maxiter": 2000, "xatol": 1e-8, "fatol": 1e-12} if method == "Nelder-Mead" else {}
    res = minimize(f if jac is None else vg, {"p": np.zeros(2)}, args=(target, 3.0), jac=jac, method=method,
                   options=opts)
    np.testing.assert_allclose(res.x["p"], target, atol=1e-4)
    assert got and all(s == 3.0 for _, s in got)
    if jac is True:
        assert all(t is np.ndarray for t, _ in got)  # the user's arrays, untouched


# ------------------------------------------------------------------------------------------------
# callbacks
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["x", "intermediate_result"])
@pytest.mark.parametrize("method", ALL)
def test_callback_sees_dicts_of_x0_form(method, form):
    x0 = {"z": np.array([-1.2, 1.0], np.float32), "a": np.array([[0.5]], np.float64), "m": np.float64(0.2)}
    seen = []
    if form == "x":
        def cb(x):
            seen.append(x)
    else:
        def cb(intermediate_result):
            assert np.isfinite(intermediate_result.fun)
            seen.append(intermediate_result.x)
    minimize(rosen, x0, method=method, callback=cb, options={"maxiter": 30 if method in GRAD_FREE else 5})
    assert seen, method
    for x in seen:
        assert type(x) is dict and list(x) == ["z", "a", "m"]
        for k in x0:
            assert type(x[k]) is type(x0[k]), (method, k, type(x[k]))
            assert np.asarray(x[k]).dtype == np.asarray(x0[k]).dtype
            assert np.shape(x[k]) == np.shape(x0[k])


# ------------------------------------------------------------------------------------------------
# bounds: every iterate stays inside
# ------------------------------------------------------------------------------------------------
LB = {"z": np.array([0.0, -0.5]), "a": None, "m": 0.5}
UB = {"z": 0.8, "a": np.array([[0.6, 0.6], [2.0, 2.0]]), "m": np.inf}


def _inside(x, tol=0.0):
    z, a, m = np.asarray(x["z"]), np.asarray(x["a"]), float(x["m"])
    return (np.all(z >= LB["z"] - tol) and np.all(z <= UB["z"] + tol) and np.all(a <= UB["a"] + tol)
            and m >= LB["m"] - tol)


# gradient-free bounded methods run with jac=None only (a supplied gradient would be unused)
@pytest.mark.parametrize("method,jac", [(m, j) for m in BOUNDED for j in (None, True)
                                        if not (j is True and m in GRAD_FREE)])
def test_bounded_methods_keep_every_iterate_inside(method, jac):
    evaluated, reported = [], []

    def vg(x):
        evaluated.append({k: np.array(v) for k, v in x.items()})
        return np_value_and_grad(x)

    # value_and_grad of a JAX fun is traced once; record the real points through the callback
    res = minimize(rosen if jac is None else vg, x0_f64(), jac=jac, method=method, lb_dict=LB, ub_dict=UB,
                   callback=lambda x: reported.append(x), options={"maxiter": 40})
    assert reported, method
    for x in reported + ([] if jac is None else evaluated):
        assert _inside(x), (method, x)
    assert _inside(res.x)
    # the box is active: the unconstrained optimum (all ones) is outside it
    assert float(res.x["z"][0]) <= 0.8 and float(res.x["a"][0, 0]) <= 0.6


def test_bounded_evaluations_inside_box_with_jax_objective():
    pts = []

    def f(x):
        return rosen(x)

    def cb(x):
        pts.append(x)

    res = minimize(f, x0_f64(), method="L-BFGS-B", bounds=(LB, UB), callback=cb)
    assert res.success and pts and all(_inside(p) for p in pts)
    assert res.fun_history.size == res.nfev


def test_minimize_never_imports_torch_without_a_tensor():
    import subprocess
    import sys
    code = ("import sys, numpy as np, jax.numpy as jnp\n"
            "from learned_opt import minimize\n"
            "r = minimize(lambda p: jnp.sum((p['a'] - 1) ** 2), {'a': np.zeros(3)}, method='trust-ncg')\n"
            "r = minimize(lambda p: (float(np.sum(p['a'] ** 2)), {'a': 2 * p['a']}), {'a': np.ones(2)}, jac=True)\n"
            "assert r.success\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
