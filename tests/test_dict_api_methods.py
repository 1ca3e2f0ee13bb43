"""learned_opt.minimize: every scipy method vs scipy on the packed vector, known optima, HVPs, jit."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as sopt

from learned_opt import minimize

ALL = ["Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "COBYLA", "COBYQA",
       "SLSQP", "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov"]
GRAD_FREE = ["Nelder-Mead", "Powell", "COBYLA", "COBYQA"]
GRADIENT = [m for m in ALL if m not in GRAD_FREE]
HESSP = ["Newton-CG", "trust-ncg", "trust-krylov", "trust-constr"]
DENSE = ["dogleg", "trust-exact"]

# ---------------------------------------------------------------------------------------------
# A float64 problem on x = {"w": (3, 2), "b": (2,), "s": ()} (n = 9), and the same problem written
# independently on the flat vector in NumPy with hand-derived gradient and Hessian:
#   f(v) = ½ vᵀAv − cᵀv + ¼ γ Σ v⁴,   ∇f = Av − c + γ v³,   ∇²f = A + 3γ diag(v²)
# ---------------------------------------------------------------------------------------------
N = 9
_rng = np.random.default_rng(0)
_M = _rng.standard_normal((N, N))
A = _M @ _M.T / N + np.eye(N)
C = _rng.standard_normal(N)
GAMMA = 0.1
X0 = {"w": 0.5 * _rng.standard_normal((3, 2)), "b": 0.5 * _rng.standard_normal(2), "s": np.array(0.3)}


def vec_of(x):
    return np.concatenate([np.asarray(x["w"], np.float64).reshape(-1), np.asarray(x["b"], np.float64).reshape(-1),
                           np.asarray(x["s"], np.float64).reshape(-1)])


def f_dict(x):
    v = jnp.concatenate([x["w"].reshape(-1), x["b"].reshape(-1), x["s"].reshape(-1)])
    return 0.5 * v @ (jnp.asarray(A) @ v) - jnp.asarray(C) @ v + 0.25 * GAMMA * jnp.sum(v ** 4)


def f_np(v):
    return 0.5 * v @ A @ v - C @ v + 0.25 * GAMMA * np.sum(v ** 4)


def g_np(v):
    return A @ v - C + GAMMA * v ** 3


def vg_np(v):
    return f_np(v), g_np(v)


def h_np(v):
    return A + 3 * GAMMA * np.diag(v ** 2)


def hp_np(v, p):
    return A @ p + 3 * GAMMA * v ** 2 * p


def unvec(v):
    """The packed vector (pack order: w, b, s) as the dict f_dict takes."""
    return {"w": v[:6].reshape(3, 2), "b": v[6:8], "s": v[8]}


# f_dict on the packed vector, compiled and run in float64: the same computation minimize performs
# (same JAX ops on the same backend), so scipy fed f_vec_jax must reproduce minimize's run bit for
# bit. f_np is the same function only up to a few ulps (XLA and NumPy round A @ v, the dot products
# and Σv⁴ differently; which side is "closer" changes with NumPy/XLA versions), and some runs turn
# such last-bit differences into visibly different ones: scipy's COBYLA (pyprima) picks a different
# trust-region step after 25 evaluations (101 vs 104 iterates in 150 evaluations), and a 2-point
# difference quotient with step h ≈ 1.5e-8 turns ~1e-15 in f into ~1e-7 in ∇f. Those comparisons
# therefore run scipy on f_vec_jax and are exact; the check against f_np is kept separately.
_f_vec_jit = jax.jit(lambda v: f_dict(unvec(v)))


def f_vec_jax(v):
    with jax.enable_x64(True):
        return _f_vec_jit(v).item()  # a complex v (jac="cs") gives a complex value, as scipy needs


OPTS = {"Nelder-Mead": {"maxiter": 150}, "Powell": {"maxiter": 3}, "COBYLA": {"maxiter": 150},
        "COBYQA": {"maxiter": 40}}


def scipy_reference(method, fun=None):
    """scipy on the packed vector: the hand-written f_np/∇f (fun=None) or the given objective."""
    kw = {}
    if method not in GRAD_FREE:
        kw["jac"] = True
    if method in HESSP:
        kw["hessp"] = hp_np
    if method in DENSE:
        kw["hess"] = h_np
    iterates = []
    if method == "trust-constr":
        def cb(intermediate_result):
            iterates.append(np.array(intermediate_result.x))
    else:
        def cb(xk):
            iterates.append(np.array(xk))
    if fun is None:
        fun = vg_np if "jac" in kw else f_np
    res = sopt.minimize(fun, vec_of(X0), method=method, callback=cb, options=OPTS.get(method), **kw)
    return res, iterates


@pytest.mark.parametrize("method", ALL)
def test_same_iterates_and_counts_as_scipy_on_packed_vector(method):
    # derivative-free methods see nothing but f: scipy gets minimize's own float64 computation of it
    # (f_vec_jax), and every iterate must be identical; gradient methods get the hand-written f_np
    # and ∇f, which also checks the autodiff gradient
    exact = method in GRAD_FREE
    ref, ref_iterates = scipy_reference(method, f_vec_jax if exact else None)
    iterates = []
    with jax.enable_x64(True):  # lets the test build float64 expectations; minimize does this itself
        res = minimize(f_dict, X0, method=method, callback=lambda x: iterates.append(vec_of(x)),
                       options=OPTS.get(method))
    assert len(iterates) == len(ref_iterates) > 0
    if exact:
        np.testing.assert_array_equal(np.array(iterates), np.array(ref_iterates))
        np.testing.assert_array_equal(vec_of(res.x), ref.x)
        assert res.fun == ref.fun
        # ... and the reference objective is the hand-written problem, up to rounding
        np.testing.assert_allclose([f_vec_jax(v) for v in ref_iterates], [f_np(v) for v in ref_iterates],
                                   rtol=1e-13)
    else:
        # JAX autodiff and the hand-written NumPy gradient differ in the last bits; methods that take
        # finite differences of gradients internally (TNC) or solve ill-conditioned models amplify that.
        rtol = 1e-6 if method in ("TNC", "SLSQP") else 1e-9
        np.testing.assert_allclose(np.array(iterates), np.array(ref_iterates), rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(vec_of(res.x), ref.x, rtol=rtol, atol=1e-12)
    assert res.nfev == ref.nfev
    assert res.nit == ref.get("nit", ref.get("niter", 0))
    for k in ("njev", "nhev"):
        if k in ref:
            assert res[k] == ref[k]
    assert res.success == ref.success
    assert list(res.x) == ["w", "b", "s"] and res.x["w"].shape == (3, 2) and res.x["s"].shape == ()
    assert all(v.dtype == np.float64 and isinstance(v, np.ndarray) for v in res.x.values())
    # res.fun is fun(res.x), and jac (where scipy reports one) is ∇f at res.x as a dict
    np.testing.assert_allclose(res.fun, f_np(vec_of(res.x)), rtol=1e-12)
    if method not in GRAD_FREE:
        np.testing.assert_allclose(vec_of(res.jac), g_np(vec_of(res.x)), rtol=1e-7, atol=1e-10)
    assert len(res.fun_history) == res.nfev or method in ("trust-constr",)


def test_default_method_is_bfgs_without_bounds_like_scipy():
    ref = sopt.minimize(vg_np, vec_of(X0), jac=True)
    res = minimize(f_dict, X0)
    np.testing.assert_allclose(vec_of(res.x), ref.x, rtol=1e-9)
    assert res.nfev == ref.nfev and res.nit == ref.nit


# ---------------------------------------------------------------------------------------------
# known optima
# ---------------------------------------------------------------------------------------------
def rosen_split(p):
    a, b = p["x_half_a"], p["x_half_b"]
    return jnp.sum(100.0 * (b - a ** 2) ** 2 + (1.0 - a) ** 2)


@pytest.mark.parametrize("method", GRADIENT)
def test_rosenbrock_split_over_two_keys_converges(method):
    x0 = {"x_half_a": np.array([-1.2, 0.3]), "x_half_b": np.array([1.0, 0.05])}
    if method == "dogleg":  # dogleg needs ∇²f ≻ 0 along its path; from the start above it is not
        x0 = {"x_half_a": np.array([0.5, 1.5]), "x_half_b": np.array([0.2, 2.2])}
    opts = {"SLSQP": {"ftol": 1e-12, "maxiter": 500}, "TNC": {"maxfun": 5000, "ftol": 1e-16, "gtol": 1e-10},
            "CG": {"maxiter": 2000}}.get(method, {"maxiter": 2000})
    res = minimize(rosen_split, x0, method=method, options=opts)
    assert res.success, res.message
    for k in ("x_half_a", "x_half_b"):
        np.testing.assert_allclose(res.x[k], [1.0, 1.0], atol=2e-3)
    assert res.fun < 1e-6


@pytest.mark.parametrize("method", ALL)
def test_spd_quadratic_minimizer_is_A_inverse_b(method):
    rng = np.random.default_rng(1)
    M = rng.standard_normal((5, 5))
    Aq = M @ M.T + 5 * np.eye(5)
    bq = rng.standard_normal(5)
    x_star = np.linalg.solve(Aq, bq)

    def quad(p):
        v = jnp.concatenate([p["u"].reshape(-1), p["v"]])
        return 0.5 * v @ (jnp.asarray(Aq) @ v) - jnp.asarray(bq) @ v

    x0 = {"u": np.zeros((2, 2)), "v": np.zeros(1)}
    opts = {"Nelder-Mead": {"maxiter": 5000, "xatol": 1e-9, "fatol": 1e-14},
            "Powell": {"xtol": 1e-10, "ftol": 1e-14}, "COBYLA": {"maxiter": 5000, "tol": 1e-10},
            "COBYQA": {"final_tr_radius": 1e-10}, "SLSQP": {"ftol": 1e-14},
            "TNC": {"ftol": 1e-16, "gtol": 1e-10}}.get(method)
    res = minimize(quad, x0, method=method, options=opts)
    assert res.success, res.message
    got = np.concatenate([res.x["u"].reshape(-1), res.x["v"]])
    np.testing.assert_allclose(got, x_star, atol=1e-4 if method in GRAD_FREE else 1e-6)


def test_float32_problem_keeps_float32_and_jax_types():
    x0 = {"a": jnp.zeros(3, jnp.float32), "b": np.zeros((2,), np.float32)}

    def f(p):
        return jnp.sum((p["a"] - 1.5) ** 2) + jnp.sum((p["b"] + 0.5) ** 2)

    res = minimize(f, x0, method="L-BFGS-B")
    assert isinstance(res.x["a"], jax.Array) and res.x["a"].dtype == jnp.float32
    assert isinstance(res.x["b"], np.ndarray) and res.x["b"].dtype == np.float32
    assert isinstance(res.jac["a"], jax.Array) and isinstance(res.jac["b"], np.ndarray)
    np.testing.assert_allclose(res.x["a"], 1.5, atol=1e-5)
    np.testing.assert_allclose(res.x["b"], -0.5, atol=1e-5)
    assert res.fun == float(f(res.x))


def test_args_are_passed_and_arrays_do_not_retrace():
    traces = []

    def f(p, target, scale):
        traces.append(1)
        return scale * jnp.sum((p["x"] - target) ** 2)

    for t in (1.0, 2.0, 3.0):
        res = minimize(f, {"x": np.zeros(3)}, args=(np.full(3, t), 2.0), method="BFGS")
        np.testing.assert_allclose(res.x["x"], t, atol=1e-6)
    assert len(traces) == 1


# ---------------------------------------------------------------------------------------------
# second order: auto HVP (forward-over-reverse) vs a dense user Hessian; traces counted
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", HESSP)
def test_auto_hvp_matches_dense_hessian_run(method):
    it_auto, it_dense = [], []
    res_auto = minimize(f_dict, X0, method=method, callback=lambda x: it_auto.append(vec_of(x)))
    res_dense = minimize(f_dict, X0, method=method, hess=lambda x: h_np(vec_of(x)),
                         callback=lambda x: it_dense.append(vec_of(x)))
    assert len(it_auto) == len(it_dense)
    np.testing.assert_allclose(np.array(it_auto), np.array(it_dense), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(vec_of(res_auto.x), vec_of(res_dense.x), rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("method", DENSE + ["trust-ncg"])
def test_user_hessian_as_nested_dict_and_hessp_on_dicts(method):
    """jax.hessian's nested-dict layout (H[k1][k2] of shape s1+s2) and hessp(x, p) on dicts."""
    with jax.enable_x64(True):
        hess_jit = jax.jit(jax.hessian(f_dict))

    def hess_nested(x):
        with jax.enable_x64(True):
            return hess_jit(x)

    calls = []

    def hessp_dict(x, p):
        calls.append(1)
        assert list(p) == ["w", "b", "s"]
        hp = hp_np(vec_of(x), vec_of(p))
        return {"s": hp[8], "b": hp[6:8], "w": hp[:6].reshape(3, 2)}

    ref, _ = scipy_reference(method)
    res = minimize(f_dict, X0, method=method, hess=hess_nested)
    np.testing.assert_allclose(vec_of(res.x), ref.x, rtol=1e-8, atol=1e-11)
    if method == "trust-ncg":
        res2 = minimize(f_dict, X0, method=method, hessp=hessp_dict)
        np.testing.assert_allclose(vec_of(res2.x), ref.x, rtol=1e-8, atol=1e-11)
        assert len(calls) > 0 and res2.nhev >= len(calls)


def test_fun_is_traced_once_per_structure():
    traces = []

    def f(p):
        traces.append(tuple(p))  # runs only while JAX traces
        return jnp.sum((p["a"] - 1.0) ** 2) + jnp.sum(p["b"] ** 4) + jnp.sum(p["a"]) * jnp.sum(p["b"])

    res = minimize(f, {"a": np.zeros(3), "b": np.ones(2)}, method="L-BFGS-B")
    assert res.nfev > 5 and len(traces) == 1
    assert traces[0] == ("a", "b")  # fun sees x0's key order inside jit
    minimize(f, {"a": np.full(3, 4.0), "b": np.full(2, -1.0)}, method="BFGS")
    assert len(traces) == 1  # same structure, shapes, dtypes: compiled code reused
    minimize(f, {"a": np.zeros(4), "b": np.ones(2)}, method="L-BFGS-B")
    assert len(traces) == 2  # new shape: one more trace
    res = minimize(f, {"a": np.zeros(3), "b": np.ones(2)}, method="trust-ncg")
    assert res.nhev > 0 and len(traces) == 3  # + the Hessian-vector product function


def test_numpy_objective_with_jac_true_and_callable_jac():
    """dict-minimize's contract: fun returns (value, grad_dict); works for pure NumPy code."""
    def vg(p, shift):
        a, b = p["a"] - shift, p["b"] - shift
        val = np.sum(100 * (b - a ** 2) ** 2 + (1 - a) ** 2)
        ga = -400 * a * (b - a ** 2) - 2 * (1 - a)
        gb = 200 * (b - a ** 2)
        return val, {"b": gb, "a": ga}  # key order of the gradient does not matter

    x0 = {"a": np.array([-1.0, 0.5]), "b": np.array([0.3, 0.1])}
    res = minimize(vg, x0, args=(-1.0,), method="L-BFGS-B", jac=True)
    assert res.success
    np.testing.assert_allclose(res.x["a"], 0.0, atol=1e-4)
    res2 = minimize(lambda p, s: vg(p, s)[0], x0, args=(-1.0,), method="BFGS", jac=lambda p, s: vg(p, s)[1])
    np.testing.assert_allclose(res2.x["b"], 0.0, atol=1e-4)
    # NumPy objective with a derivative-free method needs no gradient at all
    res3 = minimize(lambda p, s: vg(p, s)[0], x0, args=(-1.0,), method="Nelder-Mead",
                    options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12})
    np.testing.assert_allclose(res3.x["a"], 0.0, atol=1e-3)


@pytest.mark.parametrize("fd", ["2-point", "3-point", "cs"])
def test_finite_difference_jac_strings_match_scipy(fd):
    # scipy's differences of the same float64 f on the packed vector (see f_vec_jax): an exact match
    ref = sopt.minimize(f_vec_jax, vec_of(X0), method="L-BFGS-B", jac=fd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = minimize(f_dict, X0, method="L-BFGS-B", jac=fd)
    np.testing.assert_array_equal(vec_of(res.x), ref.x)
    assert res.fun == ref.fun
    assert res.nfev == ref.nfev and res.nit == ref.nit
    # independently of JAX: the hand-written gradient is small at the answer (‖∇f‖ is 1.4 at x0; L-BFGS-B
    # stops at 4e-5 here, 1e-4 one iteration earlier); ∇²f = A + 3γ diag(v²) ⪰ A ⪰ I, so res.x is within
    # ‖∇f(res.x)‖ < 1e-3 of the minimizer
    assert np.linalg.norm(g_np(vec_of(res.x))) < 1e-3
