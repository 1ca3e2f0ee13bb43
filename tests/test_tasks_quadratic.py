"""Quadratic tasks and QuadraticFamily: closed-form optima, gradients, vmapped families."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _tasks_testutil import check_grad_fd
from tasks.families import QuadraticFamily
from tasks.quadratic import QuadraticTask


@pytest.mark.parametrize("cond,spectrum", [(1.0, "logspace"), (1e3, "logspace"), (50.0, "random")])
def test_quadratic_optimum_closed_form(cond, spectrum):
    with jax.enable_x64(True):
        task = QuadraticTask(dim=7, condition_number=cond, spectrum=spectrum, seed=3)
        A = task.A
        assert np.allclose(A, A.T)
        eig = np.linalg.eigvalsh(A)
        assert eig.min() > 0
        np.testing.assert_allclose(eig.max() / eig.min(), cond, rtol=1e-8)
        x_star, f_star = task.optimum()
        np.testing.assert_allclose(x_star, np.linalg.solve(A, task.b), rtol=1e-9, atol=1e-12)
        p = {"x": jnp.asarray(x_star)}
        assert abs(float(task.loss(p, jax.random.PRNGKey(0), None)) - f_star) < 1e-10
        g = jax.grad(task.loss)(p, jax.random.PRNGKey(0), None)["x"]
        assert float(jnp.max(jnp.abs(g))) < 1e-9
        # any other point is worse, by exactly 1/2 d^T A d
        d = np.random.default_rng(0).standard_normal(7)
        val = float(task.loss({"x": jnp.asarray(x_star + d)}, None, None))
        np.testing.assert_allclose(val, 0.5 * d @ A @ d, rtol=1e-9)


def test_quadratic_gradient_matches_fd_and_closed_form():
    with jax.enable_x64(True):
        task = QuadraticTask(dim=10, condition_number=100.0, seed=1)
        params = task.init(jax.random.PRNGKey(2))
        assert params["x"].dtype == jnp.float64
        g = check_grad_fd(lambda p: task.loss(p, jax.random.PRNGKey(0), None), params)
        np.testing.assert_allclose(g["x"], task.A @ np.asarray(params["x"]) - task.b, rtol=1e-9)


def test_noisy_quadratic_is_unbiased_and_deterministic():
    with jax.enable_x64(True):
        task = QuadraticTask(dim=5, noise_std=0.3, seed=0)
        assert not task.full_batch
        p = task.init(jax.random.PRNGKey(0))
        k = jax.random.PRNGKey(7)
        assert float(task.loss(p, k, None)) == float(task.loss(p, k, None))
        keys = jax.random.split(jax.random.PRNGKey(1), 20000)
        grads = jax.vmap(lambda kk: jax.grad(task.loss)(p, kk, None)["x"])(keys)
        exact = jax.grad(task.expected_loss)(p)["x"]
        np.testing.assert_allclose(grads.mean(0), exact, atol=4 * 0.3 / np.sqrt(20000) * 1.5)
        np.testing.assert_allclose(grads.std(0), 0.3 * np.ones(5), rtol=0.05)
        assert QuadraticTask(dim=5).full_batch


def test_quadratic_determinism_and_config_roundtrip():
    a = QuadraticTask(dim=6, condition_number=30.0, seed=4)
    b = QuadraticTask(**a.config())
    np.testing.assert_array_equal(a.A, b.A)
    k = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(a.init(k)["x"], b.init(k)["x"])
    assert QuadraticTask(dim=6, seed=5).A.tolist() != a.A.tolist()


def test_quadratic_bad_input():
    with pytest.raises(ValueError, match="condition_number"):
        QuadraticTask(condition_number=0.5)
    with pytest.raises(TypeError, match="dim"):
        QuadraticTask(dim=2.5)
    with pytest.raises(ValueError, match="spectrum"):
        QuadraticTask(spectrum="flat")


def test_quadratic_family_vmap_matches_loop():
    with jax.enable_x64(True):
        fam = QuadraticFamily(dim=6, max_noise_std=0.1, max_log10_cond=2.0)
        n = 3
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        cfgs = jax.vmap(fam.sample)(keys)
        assert cfgs["eigvecs"].shape == (n, 6, 6) and cfgs["eigvals"].shape == (n, 6)
        init_keys = jax.random.split(jax.random.PRNGKey(1), n)
        init_one = lambda c, k: fam.task_fn(c).init(k)
        params = jax.vmap(init_one)(cfgs, init_keys)
        loss_keys = jax.random.split(jax.random.PRNGKey(2), n)
        vg_one = jax.value_and_grad(lambda p, c, k: fam.task_fn(c).loss(p, k, None))
        vals, grads = jax.jit(jax.vmap(vg_one))(params, cfgs, loss_keys)
        sample_loop, init_loop, vg_loop = jax.jit(fam.sample), jax.jit(init_one), jax.jit(vg_one)
        for i in range(n):  # unvectorized: one member at a time
            cfg_i = jax.tree.map(lambda x, i=i: x[i], cfgs)
            single = sample_loop(keys[i])
            for k in cfg_i:
                np.testing.assert_allclose(cfg_i[k], single[k], rtol=1e-10, atol=1e-12)
            p_i = init_loop(cfg_i, init_keys[i])
            np.testing.assert_allclose(p_i["x"], params["x"][i], rtol=1e-12)
            v, g = vg_loop(p_i, cfg_i, loss_keys[i])
            np.testing.assert_allclose(vals[i], v, rtol=1e-10)
            np.testing.assert_allclose(grads["x"][i], g["x"], rtol=1e-9, atol=1e-12)
            # closed form: the matrix is Q diag(lam) Q^T; minimum 0 at the target
            Q = np.asarray(cfg_i["eigvecs"])
            np.testing.assert_allclose(Q.T @ Q, np.eye(6), atol=1e-10)
            lam = np.asarray(cfg_i["eigvals"])
            assert lam.min() > 0  # positive definite: the closed-form minimum below is 0
            assert lam.max() / lam.min() <= 10 ** fam.max_log10_cond * (1 + 1e-9)
            x, t = np.asarray(p_i["x"]), np.asarray(cfg_i["target"])
            A = (Q * lam) @ Q.T
            exact = 0.5 * (x - t) @ A @ (x - t)
            np.testing.assert_allclose(fam.task_fn(cfg_i).expected_loss(p_i), exact, rtol=1e-10)
            assert float(fam.task_fn(cfg_i).expected_loss({"x": cfg_i["target"]})) == pytest.approx(
                0.0, abs=1e-12)
        task = fam.task_fn(cfg_i)
        check_grad_fd(lambda p: task.loss(p, loss_keys[-1], None), p_i, num_directions=1)
