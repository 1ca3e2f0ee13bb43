"""learned_opt.minimize: bad inputs, the NaN/inf policy and callback early stopping."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt import minimize

ALL = ["Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "COBYLA", "COBYQA",
       "SLSQP", "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov"]


def bowl(x):
    w, b = x["layer"]["w"], x["b"]
    return (jnp.sum((w - 1.0) ** 2) + 2.0 * jnp.sum((b + 0.5) ** 2) + jnp.sum(w ** 4)
            + 3.0 * (jnp.sum(b) - w[0, 0] ** 2) ** 2)


def bowl_np(x):
    w, b = np.asarray(x["layer"]["w"], np.float64), np.asarray(x["b"], np.float64)
    return float(np.sum((w - 1.0) ** 2) + 2.0 * np.sum((b + 0.5) ** 2) + np.sum(w ** 4)
                 + 3.0 * (np.sum(b) - w[0, 0] ** 2) ** 2)


def X0():
    return {"layer": {"w": np.zeros((2, 2))}, "b": np.zeros(3)}


def good_grad(x):
    w, b = np.asarray(x["layer"]["w"]), np.asarray(x["b"])
    r = np.sum(b) - w[0, 0] ** 2
    gw = 2 * (w - 1.0) + 4 * w ** 3
    gw[0, 0] += -12.0 * r * w[0, 0]
    return {"layer": {"w": gw}, "b": 4.0 * (b + 0.5) + 6.0 * r}


# ---------------------------------------------------------------------------------------------
# bad inputs -> TypeError / ValueError naming the key path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_grad, exc, match", [
    (lambda g: {"layer": {}, "b": g["b"]}, ValueError, r"missing \['layer'\]\['w'\]"),
    (lambda g: {**g, "extra": np.zeros(1)}, ValueError, r"unexpected \['extra'\]"),
    (lambda g: {"layer": {"w": g["layer"]["w"].T[:1]}, "b": g["b"]}, ValueError,
     r"\['layer'\]\['w'\] has shape \(1, 2\), expected \(2, 2\)"),
    (lambda g: {"layer": {"w": g["layer"]["w"] + 0j}, "b": g["b"]}, TypeError, r"\['layer'\]\['w'\].*complex"),
    (lambda g: {"layer": [g["layer"]["w"]], "b": g["b"]}, TypeError, r"expected a dict at \['layer'\]"),
])
@pytest.mark.parametrize("form", ["jac_true", "jac_callable"])
def test_bad_gradients_name_the_key(bad_grad, exc, match, form):
    if form == "jac_true":
        kw = dict(fun=lambda x: (bowl_np(x), bad_grad(good_grad(x))), jac=True)
    else:
        kw = dict(fun=bowl_np, jac=lambda x: bad_grad(good_grad(x)))
    with pytest.raises(exc, match=match):
        minimize(x0=X0(), method="L-BFGS-B", **kw)


@pytest.mark.parametrize("x0, exc, match", [
    ({"a": np.arange(3)}, TypeError, r"\['a'\].*integer"),
    ({"a": {"c": np.ones(2, np.complex128)}}, TypeError, r"\['a'\]\['c'\].*complex"),
    ({"a": np.zeros(2), "n": 3}, TypeError, r"\['n'\].*int"),
    ({}, ValueError, "empty"),
    ({"a": np.zeros((0, 2))}, ValueError, "empty"),
])
def test_bad_x0(x0, exc, match):
    with pytest.raises(exc, match=match):
        minimize(lambda x: 0.0, x0)


@pytest.mark.parametrize("method", ["BFGS", "Nelder-Mead"])
def test_non_scalar_objective(method):
    with pytest.raises(ValueError, match=r"scalar.*shape \(2, 2\)"):
        minimize(lambda x: x["layer"]["w"] ** 2, X0(), method=method)
    with pytest.raises(ValueError, match=r"scalar.*shape \(3,\)"):  # eager (NumPy) path too
        minimize(lambda x: (np.asarray(x["b"]), good_grad(x)), X0(), method="BFGS", jac=True)


def test_tuple_objective_without_jac_true_hints_at_jac_true():
    with pytest.raises(TypeError, match="jac=True"):
        minimize(lambda x: (bowl(x), x), X0())


def test_numpy_objective_needing_autodiff_gives_clear_type_error():
    with pytest.raises(TypeError, match="could not be traced by JAX.*jac=True"):
        minimize(bowl_np, X0(), method="BFGS")


@pytest.mark.parametrize("method, options, match", [
    ("fancy", None, "unknown method 'fancy'"),
    ("BFGS", {"maxiterations": 3}, "unknown option.*'maxiterations'.*BFGS"),
    ("TNC", {"maxiters": 3}, "unknown option.*'maxiters'.*TNC"),
    ("trust-ncg", {"bogus": 1}, "unknown option.*'bogus'"),
    ("differential_evolution", {"popsize2": 3}, "unknown option.*'popsize2'"),
    (optax.sgd(0.1), {"maxiter": 3, "lr": 1}, "unknown option.*'lr'"),
    ("BFGS", {"nan_policy": "ignore"}, "nan_policy"),
])
def test_unknown_method_and_option(method, options, match):
    with pytest.raises(ValueError, match=match):
        minimize(bowl, X0(), method=method, options=options, bounds=(-1.0, 1.0)
                 if method == "differential_evolution" else None)


def test_bad_jac_and_method_types():
    with pytest.raises(ValueError, match="jac must be"):
        minimize(bowl, X0(), jac="4-point")
    with pytest.raises(TypeError, match="method must be"):
        minimize(bowl, X0(), method=3)
    with pytest.raises(TypeError, match="fun must be callable"):
        minimize(None, X0())


def test_hessian_method_without_second_derivatives_for_user_gradient():
    with pytest.raises(ValueError, match="needs second derivatives"):
        minimize(lambda x: (bowl_np(x), good_grad(x)), X0(), method="trust-ncg", jac=True)


# ---------------------------------------------------------------------------------------------
# NaN / inf policy
# ---------------------------------------------------------------------------------------------
def cliff(x):
    """Finite for w < 0.6, NaN beyond: a first line-search step overshoots into the NaN region."""
    w = x["layer"]["w"]
    val = jnp.sum((w - 3.0) ** 2) + jnp.sum(x["b"] ** 2)
    return jnp.where(jnp.max(w) < 0.6, val, jnp.nan)


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "CG", "Nelder-Mead", "trust-ncg"])
def test_nan_value_stops_with_failure_and_best_finite_point(method):
    res = minimize(cliff, X0(), method=method)
    assert not res.success and res.status == 98
    assert "objective value is nan" in res.message
    with jax.enable_x64(True):
        assert np.isfinite(res.fun) and res.fun == pytest.approx(float(cliff(res.x)), rel=1e-12)
    assert res.fun <= float(cliff(X0()))
    assert np.isnan(res.fun_history).any() and res.fun == np.nanmin(res.fun_history)


def test_nan_policy_raise():
    with pytest.raises(FloatingPointError, match="objective value is nan"):
        minimize(cliff, X0(), method="L-BFGS-B", options={"nan_policy": "raise"})


def test_nan_gradient_names_the_key():
    def f(x):  # d/db sqrt(b) is inf at b = 0
        return jnp.sum((x["layer"]["w"] - 1.0) ** 2) + jnp.sum(jnp.sqrt(x["b"]))

    res = minimize(f, X0(), method="L-BFGS-B")
    assert not res.success and res.status == 98
    assert "gradient is not finite at ['b'] (3 of 3 entries)" in res.message
    assert "['layer']" not in res.message
    with pytest.raises(FloatingPointError, match=r"\['b'\]"):
        minimize(f, X0(), method="BFGS", options={"nan_policy": "raise"})


def test_nan_everywhere_never_returns_x0_as_success():
    """dict-minimize returns x0 with success when every value is NaN; we must not."""
    for policy in ("stop", "propagate"):
        res = minimize(lambda x: jnp.nan * bowl(x), X0(), method="L-BFGS-B", options={"nan_policy": policy})
        assert not res.success


def test_propagate_lets_scipy_back_off_and_still_checks_the_end():
    res = minimize(cliff, X0(), method="L-BFGS-B", options={"nan_policy": "propagate"})
    assert np.isnan(res.fun_history).any()
    assert np.isfinite(res.fun) or not res.success
    np.testing.assert_allclose(res.x["b"], 0.0, atol=1e-5)


def test_optax_nan_guard():
    res = minimize(bowl, X0(), method=optax.sgd(10.0), options={"maxiter": 200})  # diverges to inf
    assert not res.success and res.status == 98
    assert np.isfinite(res.fun) and all(np.isfinite(v).all() for v in (res.x["b"], res.x["layer"]["w"]))
    assert res.fun == pytest.approx(float(bowl(res.x)), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# callbacks: dicts in, True stops every method cleanly
# ---------------------------------------------------------------------------------------------
STOP_AFTER = 3


@pytest.mark.parametrize("method", ALL + ["basinhopping", "dual_annealing", "differential_evolution", "shgo", "adam"])
def test_callback_returning_true_stops_every_method(method):
    seen = []
    stop_after = 1 if method == "dual_annealing" else STOP_AFTER  # it calls back only on new minima

    def cb(x):
        assert list(x) == ["layer", "b"] and list(x["layer"]) == ["w"]
        seen.append({"w": np.array(x["layer"]["w"]), "b": np.array(x["b"])})
        return len(seen) >= stop_after

    kw = {}
    if method in ("dual_annealing", "differential_evolution", "shgo"):
        kw["bounds"] = (-2.0, 2.0)
    if method in ("basinhopping", "dual_annealing", "differential_evolution"):
        kw["options"] = {"rng": 0}
    m = optax.adam(0.1) if method == "adam" else method
    res = minimize(bowl, X0(), method=m, callback=cb, **kw)
    assert len(seen) == stop_after
    assert not res.success and res.status == 99, res.message
    if method not in ("basinhopping", "dual_annealing", "differential_evolution"):
        # local methods stop at the iterate they passed to the callback
        np.testing.assert_array_equal(res.x["b"], seen[-1]["b"])
        np.testing.assert_array_equal(res.x["layer"]["w"], seen[-1]["w"])
        assert res.nit == stop_after
    assert res.fun == pytest.approx(bowl_np(res.x), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("method", ["L-BFGS-B", "TNC", "trust-constr", "COBYLA"])
def test_intermediate_result_callback_and_stop_iteration(method):
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result)
        if len(seen) == 2:
            raise StopIteration

    res = minimize(bowl, X0(), method=method, callback=cb)
    assert len(seen) == 2 and res.status == 99
    r = seen[-1]
    assert isinstance(r.x, dict) and r.nit == 2
    assert r.fun == pytest.approx(bowl_np(r.x), rel=1e-12)
    np.testing.assert_array_equal(res.x["b"], r.x["b"])


def test_callback_returning_non_bool_does_not_stop():
    res = minimize(bowl, X0(), method="L-BFGS-B", callback=lambda x: "keep going")
    assert res.success
