"""Synthetic problems, wrappers (sparse gradient, rescale, log objective), weight
reparameterization and the fixed-task registry."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _tasks_testutil import check_grad_fd, to_f64, toy_image_datasets
from tasks.augment import ReparamFamily, ReparamTask, sample_scales
from tasks.families import QuadraticFamily
from tasks.image_mlp import ImageMLPTask
from tasks.quadratic import QuadraticTask
from tasks.registry import get_task, task_names
from tasks.synthetic import (
    BowlTask,
    LogObjectiveTask,
    NormTask,
    RescaleTask,
    RosenbrockNDTask,
    SparseGradientTask,
    SparseSoftmaxRegressionTask,
)


def test_bowl_and_rosenbrock_optima():
    with jax.enable_x64(True):
        bowl = BowlTask(condition_number=50.0, angle=0.3)
        eig = np.linalg.eigvalsh(bowl.hessian)
        np.testing.assert_allclose(eig, [1.0, 50.0], rtol=1e-12)
        zero = {"x": jnp.zeros(2)}
        assert float(bowl.loss(zero)) == 0.0
        p = bowl.init(jax.random.PRNGKey(0))
        np.testing.assert_allclose(jax.grad(bowl.loss)(p)["x"], bowl.hessian @ np.asarray(p["x"]),
                                   rtol=1e-12)
        ros = RosenbrockNDTask(dim=6)
        ones = {"x": jnp.ones(6)}
        assert float(ros.loss(ones)) == 0.0
        assert float(jnp.max(jnp.abs(jax.grad(ros.loss)(ones)["x"]))) == 0.0
        q = ros.init(jax.random.PRNGKey(1))
        x = np.asarray(q["x"])
        ref = sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(5))
        assert float(ros.loss(q)) == pytest.approx(ref, rel=1e-12)
        check_grad_fd(ros.loss, q)


def test_sparse_softmax_and_norm():
    with jax.enable_x64(True):
        t = SparseSoftmaxRegressionTask(num_features=40, num_classes=4, num_examples=50,
                                        density=0.1, seed=3)
        frac = np.mean(t.features != 0)
        assert 0.05 < frac < 0.15
        p = t.init(jax.random.PRNGKey(0))
        check_grad_fd(t.loss, p)
        zero = jax.tree.map(jnp.zeros_like, p)
        assert float(t.loss(zero)) == pytest.approx(np.log(4), rel=1e-12)
        n = NormTask(dim=4, num_rows=9, power=2.0, seed=1)
        x_ls = np.linalg.lstsq(n.A, n.b, rcond=None)[0]
        g = jax.grad(n.loss)({"x": jnp.asarray(x_ls)})["x"]
        assert float(jnp.max(jnp.abs(g))) < 1e-12  # p = 2: the least-squares solution
        n3 = NormTask(dim=4, num_rows=9, power=3.0, seed=1)
        q = n3.init(jax.random.PRNGKey(2))
        r = n3.A @ np.asarray(q["x"]) - n3.b
        assert float(n3.loss(q)) == pytest.approx(np.mean(np.abs(r) ** 3), rel=1e-12)
        check_grad_fd(n3.loss, q)


def test_sparse_gradient_wrapper():
    with jax.enable_x64(True):
        base = QuadraticTask(dim=400, seed=0)
        task = SparseGradientTask(base, keep_prob=0.3)
        assert not task.full_batch and task.datasets is None
        p = task.init(jax.random.PRNGKey(0))
        key = jax.random.PRNGKey(1)
        # the value is the base loss; the gradient is the base gradient masked
        assert float(task.loss(p, key)) == float(base.loss(p, None))
        g = jax.grad(task.loss)(p, key)["x"]
        g_base = jax.grad(base.loss)(p, None)["x"]
        mask = task.mask(p, jax.random.split(key)[0])["x"]
        np.testing.assert_array_equal(g, jnp.where(mask, g_base, 0.0))
        assert 0.2 < float(mask.mean()) < 0.4
        g2 = jax.grad(task.loss)(p, jax.random.PRNGKey(2))["x"]
        assert not np.array_equal(np.asarray(g) != 0, np.asarray(g2) != 0)
        assert task.config()["base"]["class"] == "QuadraticTask"
        with pytest.raises(ValueError, match="keep_prob"):
            SparseGradientTask(base, keep_prob=0.0)


def test_rescale_and_log_wrappers():
    with jax.enable_x64(True):
        base = QuadraticTask(dim=5, seed=1)
        p_base = base.init(jax.random.PRNGKey(0))
        rs = RescaleTask(base, scale=4.0)
        p = rs.init(jax.random.PRNGKey(0))
        np.testing.assert_allclose(p["x"], p_base["x"] / 4.0, rtol=1e-15)
        assert float(rs.loss(p, None)) == pytest.approx(float(base.loss(p_base, None)), rel=1e-14)
        np.testing.assert_allclose(jax.grad(rs.loss)(p, None)["x"],
                                   4.0 * jax.grad(base.loss)(p_base, None)["x"], rtol=1e-12)
        lg = LogObjectiveTask(base, eps=1e-8)
        v = float(base.loss(p_base, None))
        assert float(lg.loss(p_base, None)) == pytest.approx(np.log(v + 1e-8), rel=1e-14)
        np.testing.assert_allclose(jax.grad(lg.loss)(p_base, None)["x"],
                                   jax.grad(base.loss)(p_base, None)["x"] / (v + 1e-8), rtol=1e-12)
        x_star, _ = base.optimum()
        assert float(lg.loss({"x": jnp.asarray(x_star)}, None)) == pytest.approx(np.log(1e-8), abs=1e-3)


@pytest.mark.parametrize("mode", [pytest.param("global", marks=pytest.mark.slow),
                                  pytest.param("tensor", marks=pytest.mark.slow), "parameter"])
def test_reparam_same_function_chain_rule(mode):
    with jax.enable_x64(True):
        data = toy_image_datasets(n=64, batch_size=16)
        base = ImageMLPTask(datasets=data, hidden_sizes=[8])
        task = ReparamTask(base, mode=mode, min_scale=0.1, max_scale=10.0, seed=3)
        key = jax.random.PRNGKey(0)
        w = task.init(key)
        theta = base.init(key)
        batch = to_f64(next(iter(data.train)))
        assert float(task.loss(w, key, batch)) == pytest.approx(float(base.loss(theta, key, batch)),
                                                                rel=1e-12)
        for a, b in zip(jax.tree.leaves(task.to_base(w)), jax.tree.leaves(theta)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        g_w = jax.grad(task.loss)(w, key, batch)
        g_theta = jax.grad(base.loss)(theta, key, batch)
        scales = task.scales
        if mode == "global":
            assert np.ndim(scales) == 0
            scales = jax.tree.map(lambda _: task.scales, theta)
        for gw, gt, s, t in zip(jax.tree.leaves(g_w), jax.tree.leaves(g_theta),
                                jax.tree.leaves(scales), jax.tree.leaves(theta)):
            s = np.asarray(s)
            assert np.all((s >= 0.1 - 1e-12) & (s <= 10.0 + 1e-12))
            assert s.shape == (() if mode != "parameter" else t.shape)
            np.testing.assert_allclose(gw, s * np.asarray(gt), rtol=1e-10, atol=1e-14)
        # scales are random and spread: different tensors get different scales
        if mode != "global":
            flat = np.concatenate([np.ravel(s) for s in jax.tree.leaves(task.scales)])
            assert np.std(np.log(flat)) > 0.3
        again = ReparamTask(base, mode=mode, min_scale=0.1, max_scale=10.0, seed=3)
        for a, b in zip(jax.tree.leaves(again.scales), jax.tree.leaves(task.scales)):
            np.testing.assert_array_equal(a, b)
        assert json.loads(json.dumps(task.config()))["mode"] == mode


def test_reparam_family_vmaps():
    with jax.enable_x64(True):
        fam = ReparamFamily(QuadraticFamily(dim=4), mode="parameter", min_scale=0.5, max_scale=2.0)
        keys = jax.random.split(jax.random.PRNGKey(0), 3)
        cfgs = jax.vmap(fam.sample)(keys)
        assert cfgs["scales"]["x"].shape == (3, 4)
        ikeys = jax.random.split(jax.random.PRNGKey(1), 3)
        vals = jax.jit(jax.vmap(lambda c, k: fam.task_fn(c).loss(fam.task_fn(c).init(k), k)))(
            cfgs, ikeys)
        base_vals = jax.vmap(lambda c, k: fam.family.task_fn(c).loss(
            fam.family.task_fn(c).init(k), k))(cfgs["base"], ikeys)
        np.testing.assert_allclose(vals, base_vals, rtol=1e-12)
        s = sample_scales(jax.random.PRNGKey(0), {"a": jnp.zeros((2, 3)), "b": jnp.zeros(4)},
                          "tensor", 1.0, 1.0)
        assert float(s["a"]) == pytest.approx(1.0) and np.shape(s["b"]) == ()


def test_registry():
    names = task_names()
    for required in ("rosenbrock", "beale", "booth", "ackley", "himmelblau", "styblinski_tang",
                     "flower", "quadratic_10", "digits_mlp", "least_squares",
                     "logistic_regression", "digits_conv", "digits_ae", "digits_vae", "char_lstm",
                     "bowl", "sparse_softmax_regression"):
        assert required in names
    t = get_task("digits_mlp", hidden_sizes=[7])
    assert t.name == "digits_mlp" and t.config()["hidden_sizes"] == [7]
    p = t.init(jax.random.PRNGKey(0))
    assert p["Dense_0"]["kernel"].shape == (64, 7)
    assert get_task("flower").start == (20.0, 20.0)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("rosenbrok")
    with pytest.raises(TypeError, match="digits_mlp"):
        get_task("digits_mlp", widths=[3])


@pytest.mark.parametrize("name", ["quadratic_10_noisy", "bowl", "rosenbrock_10d",
                                  "sparse_softmax_regression", "norm", "least_squares",
                                  "logistic_regression"])
def test_registry_tasks_deterministic(name):
    a, b = get_task(name), get_task(name)
    k = jax.random.PRNGKey(11)
    pa, pb = a.init(k), b.init(k)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_array_equal(x, y)
    batch = None if a.datasets is None else a.datasets.train.full()
    assert float(a.loss(pa, k, batch)) == float(b.loss(pb, k, batch))
    other = a.init(jax.random.PRNGKey(12))
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(other)))
    assert json.loads(json.dumps(a.config())) == a.config()
