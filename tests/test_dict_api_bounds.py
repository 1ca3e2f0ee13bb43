"""learned_opt.minimize with bounds: clipped optima, pinned values, feasibility of every evaluation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as sopt

from learned_opt import minimize

BOUNDED = ["Nelder-Mead", "Powell", "L-BFGS-B", "TNC", "SLSQP", "trust-constr", "COBYLA", "COBYQA"]
UNBOUNDED = ["CG", "BFGS", "Newton-CG", "dogleg", "trust-ncg", "trust-exact", "trust-krylov"]
GRAD_FREE = {"Nelder-Mead", "Powell", "COBYLA", "COBYQA"}

# separable quadratic Σ d_i (x_i − c_i)²: the box-constrained minimizer is clip(c, lb, ub)
D = {"p": np.array([1.0, 2.0, 0.5]), "q": np.array([[1.5, 1.0], [3.0, 0.7]])}
CENTER = {"p": np.array([2.0, -3.0, 0.25]), "q": np.array([[0.5, -2.0], [4.0, 0.0]])}
LB = {"p": np.array([-1.0, -1.0, -1.0]), "q": -1.0}          # scalar leaf broadcast
UB = {"p": 1.0, "q": np.array([[np.inf, 1.0], [2.0, 3.0]])}


def quad(x):
    return sum(jnp.sum(jnp.asarray(D[k]) * (x[k] - jnp.asarray(CENTER[k])) ** 2) for k in ("p", "q"))


def x0():
    return {"p": np.zeros(3), "q": np.zeros((2, 2))}


def clipped_optimum():
    return {k: np.clip(CENTER[k], np.broadcast_to(np.asarray(LB[k], float), CENTER[k].shape),
                       np.broadcast_to(np.asarray(UB[k], float), CENTER[k].shape)) for k in CENTER}


OPTS = {"Nelder-Mead": {"maxiter": 8000, "xatol": 1e-10, "fatol": 1e-14},
        "Powell": {"xtol": 1e-10, "ftol": 1e-14}, "COBYLA": {"maxiter": 8000, "tol": 1e-10},
        "COBYQA": {"final_tr_radius": 1e-10}, "SLSQP": {"ftol": 1e-14},
        "TNC": {"ftol": 1e-16, "gtol": 1e-12}, "L-BFGS-B": {"ftol": 1e-15, "gtol": 1e-10},
        "trust-constr": {"gtol": 1e-12, "xtol": 1e-12}}


@pytest.mark.parametrize("method", BOUNDED)
def test_box_constrained_quadratic_is_clipped_optimum_and_evaluations_stay_inside(method):
    seen = []

    def recorded(x):  # record every point the objective is evaluated at (also inside jit)
        jax.debug.callback(lambda p, q: seen.append((np.array(p), np.array(q))), x["p"], x["q"])
        return quad(x)

    res = minimize(recorded, x0(), method=method, bounds=(LB, UB), options=OPTS.get(method))
    want = clipped_optimum()
    tol = 1e-4 if method in GRAD_FREE else 1e-6
    for k in want:
        np.testing.assert_allclose(res.x[k], want[k], atol=tol)
    assert len(seen) >= res.nfev > 0
    lo, hi = clipped_bounds()
    for p, q in seen:
        v = np.concatenate([p.reshape(-1), q.reshape(-1)])
        assert np.all(v >= lo) and np.all(v <= hi)


def clipped_bounds():
    lo = np.concatenate([np.broadcast_to(np.asarray(LB[k], float), CENTER[k].shape).reshape(-1) for k in ("p", "q")])
    hi = np.concatenate([np.broadcast_to(np.asarray(UB[k], float), CENTER[k].shape).reshape(-1) for k in ("p", "q")])
    return lo, hi


@pytest.mark.filterwarnings("ignore:Method .* does not use gradient information")
@pytest.mark.parametrize("method", BOUNDED)
def test_eager_objective_is_only_evaluated_inside_bounds(method):
    seen = []

    def vg(x):
        seen.append(np.concatenate([x["p"].reshape(-1), x["q"].reshape(-1)]))
        val = sum(np.sum(D[k] * (x[k] - CENTER[k]) ** 2) for k in ("p", "q"))
        return val, {k: 2 * D[k] * (x[k] - CENTER[k]) for k in ("p", "q")}

    minimize(vg, x0(), method=method, jac=True, bounds=(LB, UB),
             options={"maxfun": 50} if method == "TNC" else {"maxiter": 50})
    lo, hi = clipped_bounds()
    assert seen and all(np.all(v >= lo) and np.all(v <= hi) for v in seen)


@pytest.mark.parametrize("method", ["L-BFGS-B", "TNC", "SLSQP", "trust-constr", "Powell", "Nelder-Mead", "COBYQA"])
def test_lb_equal_ub_pins_a_value(method):
    res = minimize(quad, x0(), method=method, lb_dict={"p": np.array([-1.0, 0.7, -np.inf]), "q": None},
                   ub_dict={"p": np.array([1.0, 0.7, np.inf]), "q": None}, options=OPTS.get(method))
    assert res.x["p"][1] == 0.7
    tol = 1e-4 if method in GRAD_FREE else 1e-6
    np.testing.assert_allclose(res.x["p"][[0, 2]], [1.0, 0.25], atol=tol)
    np.testing.assert_allclose(res.x["q"], CENTER["q"], atol=tol)


def test_bounds_match_scipy_on_packed_vector_and_scipy_bounds_object():
    lo, hi = clipped_bounds()

    def f_np(v):
        c = np.concatenate([CENTER["p"], CENTER["q"].reshape(-1)])
        d = np.concatenate([D["p"], D["q"].reshape(-1)])
        return np.sum(d * (v - c) ** 2), 2 * d * (v - c)

    ref = sopt.minimize(f_np, np.zeros(7), jac=True, method="L-BFGS-B", bounds=sopt.Bounds(lo, hi))
    res = minimize(quad, x0(), bounds=(LB, UB))  # default method with bounds: L-BFGS-B
    got = np.concatenate([res.x["p"], res.x["q"].reshape(-1)])
    np.testing.assert_allclose(got, ref.x, rtol=1e-10)
    assert res.nfev == ref.nfev and res.nit == ref.nit
    res2 = minimize(quad, x0(), bounds=sopt.Bounds(lo, hi))  # flat bounds in pack order
    np.testing.assert_allclose(np.concatenate([res2.x["p"], res2.x["q"].reshape(-1)]), ref.x, rtol=1e-10)


@pytest.mark.parametrize("method", UNBOUNDED)
def test_methods_that_would_ignore_bounds_raise(method):
    with pytest.raises(ValueError, match="cannot handle bounds"):
        minimize(quad, x0(), method=method, bounds=(LB, UB))
    # infinite / None bounds are no bounds at all: accepted
    res = minimize(quad, x0(), method=method, bounds=(None, {"p": np.inf, "q": None}))
    np.testing.assert_allclose(res.x["p"], CENTER["p"], atol=1e-5)


def test_lb_greater_than_ub_names_the_key():
    with pytest.raises(ValueError, match=r"lb > ub at \['q'\] \(flat index 1"):
        minimize(quad, x0(), bounds=({"p": -1.0, "q": [[0.0, 2.0], [0.0, 0.0]]}, {"p": 1.0, "q": 1.0}))


@pytest.mark.parametrize("bounds, exc, match", [
    (({"p": -1.0}, {"p": 1.0, "q": 1.0}), ValueError, r"bounds lb.*missing \['q'\]"),
    (({"p": -1.0, "q": -1.0, "r": 0.0}, None), ValueError, r"unexpected \['r'\]"),
    (({"p": np.zeros(2), "q": -1.0}, None), ValueError, r"\['p'\] has shape \(2,\).*\(3,\)"),
    (({"p": np.nan, "q": -1.0}, None), ValueError, r"\['p'\] contains NaN"),
    (([-1.0, 1.0, 2.0]), ValueError, "pair"),
    (({"p": "a", "q": -1.0}, None), TypeError, r"\['p'\]"),
])
def test_bounds_of_the_wrong_structure(bounds, exc, match):
    with pytest.raises(exc, match=match):
        minimize(quad, x0(), method="L-BFGS-B", bounds=bounds)


def test_bounds_and_lb_dict_together_is_an_error():
    with pytest.raises(ValueError, match="either"):
        minimize(quad, x0(), bounds=(LB, UB), lb_dict=LB)
