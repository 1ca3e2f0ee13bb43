"""2-D test functions: values and zero gradients at the known minimizers, FD gradients."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize

from _tasks_testutil import check_grad_fd
from tasks.functions2d import Function2DTask, function_names


@pytest.mark.parametrize("name", [n for n in function_names() if n != "flower"])
def test_known_minimizers(name):
    with jax.enable_x64(True):
        task = Function2DTask(name)
        assert task.minimizers
        for m in task.minimizers:
            p = {"xy": jnp.asarray(m, jnp.float64)}
            assert float(task.loss(p, None, None)) == pytest.approx(task.min_value, abs=1e-9)
            g = jax.grad(task.loss)(p, None, None)["xy"]
            assert float(jnp.max(jnp.abs(g))) < 1e-6, (name, m, g)
        # the minimizer is a local minimum: a small random perturbation does not go lower
        rng = np.random.default_rng(0)
        m = np.asarray(task.minimizers[0])
        for _ in range(20):
            q = {"xy": jnp.asarray(m + 1e-3 * rng.standard_normal(2))}
            assert float(task.loss(q, None, None)) >= task.min_value - 1e-12


@pytest.mark.parametrize("name", function_names())
def test_gradient_fd_at_start(name):
    with jax.enable_x64(True):
        task = Function2DTask(name, init_noise=0.1)
        p = task.init(jax.random.PRNGKey(0))
        check_grad_fd(lambda q: task.loss(q, None, None), p, rtol=1e-6)


def test_independent_formulas():
    # a few values against hand-written NumPy formulas at arbitrary points
    pts = [(0.3, -1.7), (2.2, 0.4), (-1.1, 1.3)]
    for x, y in pts:
        refs = {
            "rosenbrock": (1 - x) ** 2 + 100 * (y - x * x) ** 2,
            "booth": (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2,
            "himmelblau": (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2,
            "ackley": -20 * math.exp(-0.2 * math.sqrt(0.5 * (x * x + y * y)))
            - math.exp(0.5 * (math.cos(2 * math.pi * x) + math.cos(2 * math.pi * y))) + math.e + 20,
            "flower": math.hypot(x, y) + math.sin(4 * math.atan2(y, x)),
        }
        for name, ref in refs.items():
            assert float(Function2DTask(name).value(x, y)) == pytest.approx(ref, rel=1e-5)


def test_styblinski_tang_minimum_by_scipy():
    with jax.enable_x64(True):
        task = Function2DTask("styblinski_tang")
        f = jax.jit(lambda z: task.loss({"xy": z}))
        g = jax.jit(jax.grad(lambda z: task.loss({"xy": z})))
        res = scipy_minimize(lambda z: float(f(z)), np.array([-2.0, -3.5]),
                             jac=lambda z: np.asarray(g(z)), method="BFGS", tol=1e-12)
        np.testing.assert_allclose(res.x, task.minimizers[0], atol=1e-6)
        assert res.fun == pytest.approx(task.min_value, abs=1e-9)


def test_flower_infimum_and_origin():
    with jax.enable_x64(True):
        task = Function2DTask("flower")
        assert task.start == (20.0, 20.0)
        assert task.x_range == (-3.0, 3.0)
        theta = -math.pi / 8  # sin(4 theta) = -1
        for r in (1e-1, 1e-3, 1e-6):
            v = float(task.value(r * math.cos(theta), r * math.sin(theta)))
            assert v == pytest.approx(-1.0 + r, abs=1e-9)
            assert v > task.min_value
        p0 = {"xy": jnp.zeros(2)}
        assert np.isfinite(float(task.loss(p0))) and np.all(np.isfinite(jax.grad(task.loss)(p0)["xy"]))


def test_grid_and_path():
    task = Function2DTask("beale")
    X, Y, Z = task.grid(num=11)
    assert X.shape == Y.shape == Z.shape == (11, 11)
    np.testing.assert_allclose(Z[3, 5], float(task.value(X[3, 5], Y[3, 5])), rtol=1e-5)
    path = task.path_xy([{"xy": jnp.array([1.0, 2.0])}, {"xy": jnp.array([3.0, 4.0])}])
    np.testing.assert_array_equal(path, [[1, 2], [3, 4]])
    assert Function2DTask(**task.config()).start == task.start


def test_bad_function_name():
    with pytest.raises(ValueError, match="function"):
        Function2DTask("rosenbrok")
    with pytest.raises(ValueError, match="start"):
        Function2DTask("beale", start=[1.0])
