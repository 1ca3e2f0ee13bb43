"""learned_opt.minimize with scipy's global optimizers and with optax GradientTransformations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize as sopt

from learned_opt import minimize


def rastrigin(x):
    """Σ v² − 10 cos(2πv) + 10 over both keys: many local minima, global minimum 0 at 0."""
    v = jnp.concatenate([x["a"].reshape(-1), x["b"].reshape(-1)])
    return jnp.sum(v ** 2 - 10.0 * jnp.cos(2 * jnp.pi * v) + 10.0)


def rastrigin_np(v):
    return float(np.sum(v ** 2 - 10.0 * np.cos(2 * np.pi * v) + 10.0))


X0 = {"a": np.array([3.1]), "b": np.array([-2.2])}
BOUNDS = ({"a": -5.12, "b": -5.12}, {"a": 5.12, "b": 5.12})


@pytest.mark.parametrize("method, options", [
    ("differential_evolution", {"rng": 0, "tol": 1e-10}),
    ("dual_annealing", {"rng": 0, "maxiter": 200}),
    ("shgo", {"n": 128, "sampling_method": "sobol"}),
    ("basinhopping", {"rng": 0, "niter": 60, "stepsize": 1.0}),
])
def test_global_optimizers_find_the_global_minimum_over_dicts(method, options):
    bounds = BOUNDS
    res = minimize(rastrigin, X0, method=method, bounds=bounds, options=options)
    assert res.success, res.message
    assert list(res.x) == ["a", "b"] and res.x["a"].shape == (1,)
    np.testing.assert_allclose(np.concatenate([res.x["a"], res.x["b"]]), 0.0, atol=1e-5)
    assert res.fun < 1e-8
    assert res.fun == pytest.approx(rastrigin_np(np.concatenate([res.x["a"], res.x["b"]])), abs=1e-12)
    np.testing.assert_allclose(np.concatenate([res.jac["a"], res.jac["b"]]), 0.0, atol=1e-3)
    # a local method from the same start is trapped in a local minimum
    local = minimize(rastrigin, X0, method="L-BFGS-B", bounds=bounds)
    assert local.fun > 0.9


def test_differential_evolution_equals_scipy_on_the_packed_vector():
    lo, hi = np.full(2, -5.12), np.full(2, 5.12)
    ref = sopt.differential_evolution(rastrigin_np, list(zip(lo, hi)), rng=1, maxiter=30, popsize=6,
                                      x0=np.array([3.1, -2.2]), polish=False)
    res = minimize(rastrigin, X0, method="differential_evolution", bounds=BOUNDS,
                   options={"rng": 1, "maxiter": 30, "popsize": 6, "polish": False})
    np.testing.assert_allclose(np.concatenate([res.x["a"], res.x["b"]]), ref.x, rtol=1e-10)
    assert res.nfev == ref.nfev and res.nit == ref.nit


@pytest.mark.parametrize("method", ["differential_evolution", "dual_annealing", "shgo"])
def test_global_methods_require_finite_bounds(method):
    with pytest.raises(ValueError, match="needs finite bounds"):
        minimize(rastrigin, X0, method=method)
    with pytest.raises(ValueError, match=r"finite bounds.*\['b'\]"):
        minimize(rastrigin, X0, method=method, bounds=({"a": -1.0, "b": None}, {"a": 1.0, "b": 1.0}))


def test_global_options_pass_through():
    res = minimize(rastrigin, X0, method="differential_evolution", bounds=BOUNDS,
                   options={"rng": 3, "maxiter": 2, "popsize": 4, "polish": False})
    assert res.nit <= 2 and res.nfev <= 3 * 4 * 2
    res2 = minimize(rastrigin, X0, method="differential_evolution", bounds=BOUNDS,
                    options={"rng": 3, "maxiter": 2, "popsize": 4, "polish": False})
    np.testing.assert_array_equal(res.x["a"], res2.x["a"])


# ---------------------------------------------------------------------------------------------
# optax
# ---------------------------------------------------------------------------------------------
A_DIAG = np.array([1.0, 3.0, 0.5, 2.0], np.float32)


def quad(x):
    v = jnp.concatenate([x["w"].reshape(-1), x["b"]])
    return 0.5 * jnp.sum(jnp.asarray(A_DIAG) * (v - 1.0) ** 2)


def manual_loop(opt, x0, steps, pass_loss=False):
    """An independent optax loop over the same dict, for comparison."""
    @jax.jit
    def step(params, state):
        v, g = jax.value_and_grad(quad)(params)
        if pass_loss:
            updates, state = opt.update(g, state, params, loss=v)
        else:
            updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, v

    params = jax.tree_util.tree_map(jnp.asarray, x0)
    state = opt.init(params)
    losses = []
    for _ in range(steps):
        params, state, v = step(params, state)
        losses.append(float(v))
    losses.append(float(quad(params)))
    return params, np.array(losses)


def test_optax_adam_matches_a_manual_loop_and_counts():
    x0 = {"w": np.zeros((1, 3), np.float32), "b": np.zeros(1, np.float32)}
    opt = optax.adam(0.05)
    res = minimize(quad, x0, method=opt, options={"maxiter": 60})
    params, losses = manual_loop(opt, x0, 60)
    assert res.nit == 60 and res.nfev == 61 and res.njev == 61
    assert res.loss_history.shape == (61,)
    np.testing.assert_allclose(res.loss_history, losses, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(res.x["w"], params["w"], rtol=2e-6, atol=1e-7)
    assert res.fun == res.loss_history[-1] and res.fun == pytest.approx(float(quad(res.x)), rel=1e-6)
    assert isinstance(res.x["w"], np.ndarray) and res.x["w"].dtype == np.float32
    assert list(res.x) == ["w", "b"] and list(res.jac) == ["w", "b"]
    assert res.success


def scale_by_loss(lr):
    """A GradientTransformationExtraArgs whose step uses the loss: u = −lr · loss · g."""
    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None, *, loss, **extra):
        return jax.tree_util.tree_map(lambda g: -lr * loss * g, updates), state

    return optax.GradientTransformationExtraArgs(init, update)


def test_extra_args_transformation_receives_the_loss():
    x0 = {"w": np.zeros((1, 3), np.float32), "b": np.zeros(1, np.float32)}
    opt = scale_by_loss(0.1)
    res = minimize(quad, x0, method=opt, options={"maxiter": 25})
    _, losses = manual_loop(opt, x0, 25, pass_loss=True)
    np.testing.assert_allclose(res.loss_history, losses, rtol=2e-6)
    # a plain GradientTransformation must not be given the loss (it would fail on the keyword)
    res2 = minimize(quad, x0, method=optax.sgd(0.1), options={"maxiter": 5})
    assert res2.nit == 5


def test_optax_float64_jax_input_tol_and_bounds():
    with jax.enable_x64(True):
        x0 = {"w": jnp.zeros((1, 3), jnp.float64), "b": jnp.zeros(1, jnp.float64)}
    res = minimize(quad, x0, method=optax.sgd(0.3), tol=1e-10, options={"maxiter": 5000})
    assert isinstance(res.x["w"], jax.Array) and res.x["w"].dtype == jnp.float64
    assert res.nit < 5000 and res.success and "tol" in res.message
    np.testing.assert_allclose(np.asarray(res.x["w"]), 1.0, atol=1e-9)  # float64 precision reached
    boxed = minimize(quad, {"w": np.zeros((1, 3)), "b": np.zeros(1)}, method=optax.adam(0.05),
                     bounds=({"w": -1.0, "b": -1.0}, {"w": 0.5, "b": 2.0}), options={"maxiter": 400})
    assert np.all(boxed.x["w"] <= 0.5)
    np.testing.assert_allclose(boxed.x["w"], 0.5, atol=1e-6)
    np.testing.assert_allclose(boxed.x["b"], 1.0, atol=1e-2)


def test_optax_with_numpy_objective_and_callback():
    def vg(x):
        v = np.concatenate([x["w"].reshape(-1), x["b"]])
        g = A_DIAG * (v - 1.0)
        return 0.5 * float(np.sum(A_DIAG * (v - 1.0) ** 2)), {"w": g[:3].reshape(1, 3), "b": g[3:]}

    seen = []
    x0 = {"w": np.zeros((1, 3), np.float32), "b": np.zeros(1, np.float32)}
    res = minimize(vg, x0, method=optax.adam(0.05), jac=True, options={"maxiter": 60},
                   callback=lambda x: seen.append(np.array(x["b"])))
    _, losses = manual_loop(optax.adam(0.05), x0, 60)
    np.testing.assert_allclose(res.loss_history, losses, rtol=1e-5, atol=1e-6)
    assert len(seen) == 60 and np.array_equal(seen[-1], res.x["b"])


def test_optax_traces_once_per_structure():
    traces = []

    def f(x):
        traces.append(1)
        return jnp.sum((x["p"] - 2.0) ** 2)

    opt = optax.adam(0.1)
    minimize(f, {"p": np.zeros(3, np.float32)}, method=opt, options={"maxiter": 30})
    minimize(f, {"p": np.ones(3, np.float32)}, method=opt, options={"maxiter": 30})
    assert len(traces) == 1
