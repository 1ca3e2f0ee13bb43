"""Image MLP classifiers and ImageMLPFamily: FD gradients, NumPy forward pass, vmapped family."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _tasks_testutil import check_grad_fd, to_f64, toy_image_datasets
from tasks.families import ImageMLPFamily
from tasks.image_mlp import ImageMLPTask
from tasks.nn import ACTIVATIONS, INITIALIZERS, activation_switch, initializer_switch


@pytest.fixture(scope="module")
def data():
    return toy_image_datasets(n=256, size=8, batch_size=32)


@pytest.mark.parametrize("kw", [
    dict(hidden_sizes=[16, 8], activation="gelu", layer_norm=True, l2=1e-2),
    dict(hidden_sizes=[12], activation="softplus", dropout_rate=0.3),
])
def test_mlp_gradient_fd(data, kw):
    with jax.enable_x64(True):
        task = ImageMLPTask(datasets=data, **kw)
        params = task.init(jax.random.PRNGKey(0))
        assert isinstance(params, dict) and all(isinstance(v, dict) for v in params.values())
        batch = to_f64(next(iter(data.train)))
        key = jax.random.PRNGKey(1)
        check_grad_fd(lambda p: task.loss(p, key, batch), params, num_directions=2)


def test_mlp_matches_numpy_forward(data):
    task = ImageMLPTask(datasets=data, hidden_sizes=[16, 8], activation="relu")
    params = task.init(jax.random.PRNGKey(3))
    batch = next(iter(data.train))
    x = batch["image"].reshape(len(batch["image"]), -1).astype(np.float64)
    h = x
    for name in ("Dense_0", "Dense_1"):
        h = np.maximum(h @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    logits = h @ np.asarray(params["Dense_2"]["kernel"]) + np.asarray(params["Dense_2"]["bias"])
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -logp[np.arange(len(x)), batch["label"]].mean()
    assert float(task.loss(params, jax.random.PRNGKey(0), batch)) == pytest.approx(ref, rel=1e-5)
    # the L2 term covers kernels only: 0.5 * l2 * sum ||W||^2
    reg = ImageMLPTask(datasets=data, hidden_sizes=[16, 8], activation="relu", l2=0.3)
    sq = sum(float(np.sum(np.asarray(params[n]["kernel"], np.float64) ** 2))
             for n in ("Dense_0", "Dense_1", "Dense_2"))
    assert float(reg.loss(params, jax.random.PRNGKey(0), batch)) == pytest.approx(
        ref + 0.15 * sq, rel=1e-5)
    acc = float(task.accuracy(params, batch))
    assert acc == pytest.approx(float(np.mean(logits.argmax(1) == batch["label"])))


def test_dropout_uses_key_and_is_deterministic(data):
    task = ImageMLPTask(datasets=data, hidden_sizes=[32], dropout_rate=0.5)
    p = task.init(jax.random.PRNGKey(0))
    b = next(iter(data.train))
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    assert float(task.loss(p, k1, b)) == float(task.loss(p, k1, b))
    assert float(task.loss(p, k1, b)) != float(task.loss(p, k2, b))
    np.testing.assert_array_equal(task.init(jax.random.PRNGKey(0))["Dense_0"]["kernel"],
                                  p["Dense_0"]["kernel"])
    with pytest.raises(ValueError, match="dropout"):
        ImageMLPTask(datasets=data, dropout_rate=0.5, full_batch=True)


def test_bad_options(data):
    with pytest.raises(ValueError, match="activation"):
        ImageMLPTask(datasets=data, activation="relux")
    with pytest.raises(ValueError, match="w_init"):
        ImageMLPTask(datasets=data, w_init="kaiming")
    with pytest.raises(TypeError, match="hidden_sizes"):
        ImageMLPTask(datasets=data, hidden_sizes="32")


def test_activation_switch_matches_table():
    x = jnp.linspace(-3, 3, 13)
    names = ("relu", "tanh", "gelu", "softplus")
    for i, n in enumerate(names):
        np.testing.assert_allclose(activation_switch(i, x, names), ACTIVATIONS[n](x), rtol=1e-6)
    out = jax.vmap(lambda i: activation_switch(i, x, names))(jnp.arange(4))
    for i, n in enumerate(names):
        np.testing.assert_allclose(out[i], ACTIVATIONS[n](x), rtol=1e-6)


def test_family_vmap_matches_loop(data):
    with jax.enable_x64(True):
        # a small switch keeps compilation cheap; the default lists are checked below
        fam = ImageMLPFamily(datasets=data, hidden_sizes=[16], activations=["relu", "tanh", "gelu"],
                             initializers=["he_normal", "glorot_uniform"])
        n = 4
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        cfgs = jax.vmap(fam.sample)(keys)
        assert cfgs["activation"].shape == (n,) and cfgs["activation"].dtype == jnp.int32
        init_keys = jax.random.split(jax.random.PRNGKey(1), n)
        init_one = lambda c, k: fam.task_fn(c).init(k)
        params = jax.jit(jax.vmap(init_one))(cfgs, init_keys)
        batch = to_f64(next(iter(data.train)))
        lk = jax.random.PRNGKey(5)
        vg_one = jax.value_and_grad(lambda p, c: fam.task_fn(c).loss(p, lk, batch))
        vals, grads = jax.jit(jax.vmap(vg_one))(params, cfgs)
        # initial kernels: init_scale times the chosen initializer's standard deviation
        expected_std = {"he_normal": np.sqrt(2 / 64), "glorot_uniform": np.sqrt(2 / (64 + 16))}
        for i in range(n):
            name = fam.initializers[int(cfgs["w_init"][i])]
            std = float(np.std(params["Dense_0"]["kernel"][i]))
            assert std == pytest.approx(float(cfgs["init_scale"][i]) * expected_std[name], rel=0.1)
        vg_loop = jax.jit(vg_one)  # unvectorized, one task at a time
        for i in range(n):
            cfg_i = jax.tree.map(lambda x, i=i: x[i], cfgs)
            p_i = jax.tree.map(lambda x, i=i: x[i], params)
            v, g = vg_loop(p_i, cfg_i)
            np.testing.assert_allclose(vals[i], v, rtol=1e-9)
            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads)):
                np.testing.assert_allclose(a, b[i], rtol=1e-7, atol=1e-10)
        # a member equals the fixed task with the same activation / initializer names
        fixed = ImageMLPTask(datasets=data, hidden_sizes=[16],
                             activation=fam.activations[int(cfg_i["activation"])],
                             w_init=fam.initializers[int(cfg_i["w_init"])])
        assert float(fixed.loss(p_i, lk, batch)) == pytest.approx(float(v), rel=1e-10)
        check_grad_fd(lambda p: fam.task_fn(cfg_i).loss(p, lk, batch), p_i, num_directions=1)
        # sampled indices cover several activations
        full = ImageMLPFamily(datasets=data, hidden_sizes=[16])
        sample = jax.jit(full.sample)
        many = jax.tree.map(lambda *xs: np.stack(xs),
                            *[sample(k) for k in jax.random.split(jax.random.PRNGKey(9), 64)])
        assert len(np.unique(many["activation"])) >= 6
        assert len(np.unique(many["w_init"])) >= 4
        assert np.all(many["init_scale"] >= fam.min_init_scale - 1e-12)
        assert np.all(many["init_scale"] <= fam.max_init_scale + 1e-12)


def test_initializer_switch_distribution():
    """The closed-form switch draws with the same std / support as the named initializers."""
    names = ("glorot_uniform", "he_normal", "lecun_uniform", "glorot_normal")
    shape = (300, 200)
    for i, n in enumerate(names):
        w = np.asarray(initializer_switch(i, names)(jax.random.PRNGKey(i), shape))
        ref = np.asarray(INITIALIZERS[n](jax.random.PRNGKey(100 + i), shape))
        assert w.std() == pytest.approx(ref.std(), rel=0.02), n
        assert np.abs(w).max() == pytest.approx(np.abs(ref).max(), rel=0.02), n
    slow = initializer_switch(1, ("orthogonal", "he_normal"))  # lax.switch path
    np.testing.assert_array_equal(slow(jax.random.PRNGKey(0), (4, 3)),
                                  INITIALIZERS["he_normal"](jax.random.PRNGKey(0), (4, 3)))


def test_family_config_lists():
    import json
    data = toy_image_datasets(n=64)
    fam = ImageMLPFamily(datasets=data, hidden_sizes=(8, 4))
    cfg = fam.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["hidden_sizes"] == [8, 4] and set(cfg["initializers"]) <= set(INITIALIZERS)


@pytest.mark.slow
def test_conv_family_vmap_matches_loop(data):
    from tasks.conv import ConvTask
    from tasks.families import ConvFamily
    with jax.enable_x64(True):
        fam = ConvFamily(datasets=data, channels=[4, 6], strides=[2, 2],
                         activations=["relu", "tanh"], initializers=["he_normal", "lecun_uniform"])
        n = 3
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        cfgs = jax.vmap(fam.sample)(keys)
        params = jax.jit(jax.vmap(lambda c, k: fam.task_fn(c).init(k)))(cfgs, keys)
        assert params["Conv_0"]["kernel"].shape == (n, 3, 3, 1, 4)
        batch = to_f64(next(iter(data.train)))
        vg_one = jax.value_and_grad(lambda p, c: fam.task_fn(c).loss(p, None, batch))
        vals, grads = jax.jit(jax.vmap(vg_one))(params, cfgs)
        vg_loop = jax.jit(vg_one)
        for i in range(n):
            cfg_i = jax.tree.map(lambda x, i=i: x[i], cfgs)
            p_i = jax.tree.map(lambda x, i=i: x[i], params)
            v, g = vg_loop(p_i, cfg_i)
            np.testing.assert_allclose(vals[i], v, rtol=1e-9)
            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads)):
                np.testing.assert_allclose(a, b[i], rtol=1e-7, atol=1e-10)
        fixed = ConvTask(datasets=data, channels=[4, 6], strides=[2, 2],
                         activation=fam.activations[int(cfg_i["activation"])])
        assert float(fixed.loss(p_i, None, batch)) == pytest.approx(float(v), rel=1e-10)
        cfg = fam.config()
        assert cfg["channels"] == [4, 6] and "hidden_sizes" not in cfg
