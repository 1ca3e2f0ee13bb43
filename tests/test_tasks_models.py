"""Regression, conv, autoencoder, VAE and char-RNN tasks: FD gradients at init (float64),
closed-form / independent NumPy references, determinism and config round trips."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize

from _tasks_testutil import check_grad_fd, to_f64, toy_image_datasets
from tasks.autoencoder import MLPAutoencoderTask, MLPVAETask
from tasks.base import Datasets, Split
from tasks.char_rnn import CharRNNTask
from tasks.conv import ConvTask
from tasks.regression import LeastSquaresTask, LogisticRegressionTask


@pytest.fixture(scope="module")
def images():
    return toy_image_datasets(n=128, size=8, batch_size=16)


@pytest.fixture(scope="module")
def pixels():
    return toy_image_datasets(n=128, size=8, batch_size=16, center=False)


def _relu(x):
    return np.maximum(x, 0)


# --- regression ----------------------------------------------------------------------------------

@pytest.mark.parametrize("l2,fit_bias", [(0.0, True), (0.05, True), (0.0, False)])
def test_least_squares_optimum(l2, fit_bias):
    with jax.enable_x64(True):
        task = LeastSquaresTask(num_examples=64, dim=5, l2=l2, fit_bias=fit_bias, seed=2)
        assert task.full_batch
        data = to_f64(task.datasets.train.full())
        assert data["x"].shape == (64, 5)
        opt, val = task.optimum()
        p = {"w": jnp.asarray(opt["w"]), "b": jnp.asarray(opt["b"], jnp.float64)}
        assert float(task.loss(p, None, data)) == pytest.approx(val, rel=1e-10)
        g = jax.grad(task.loss)(p, None, data)
        assert float(jnp.max(jnp.abs(g["w"]))) < 1e-10
        if fit_bias:
            assert abs(float(g["b"])) < 1e-10
        if l2 == 0 and fit_bias:
            x = np.asarray(data["x"])
            sol = np.linalg.lstsq(np.c_[x, np.ones(64)], np.asarray(data["y"]), rcond=None)[0]
            np.testing.assert_allclose(opt["w"], sol[:5], rtol=1e-8)
        check_grad_fd(lambda q: task.loss(q, None, data), task.init(jax.random.PRNGKey(0)))


def test_logistic_regression_matches_scipy_on_numpy_objective():
    with jax.enable_x64(True):
        task = LogisticRegressionTask(num_examples=96, dim=4, num_classes=3, l2=0.01, seed=1)
        data = to_f64(task.datasets.train.full())
        x, y = np.asarray(data["x"]), np.asarray(data["label"])
        n, d, k = len(y), 4, 3

        def np_obj(theta):  # independent NumPy objective and gradient
            W, b = theta[:d * k].reshape(d, k), theta[d * k:]
            z = x @ W + b
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            p = np.exp(logp)
            val = -logp[np.arange(n), y].mean() + 0.5 * 0.01 * np.sum(W * W)
            p[np.arange(n), y] -= 1
            gW = x.T @ p / n + 0.01 * W
            return val, np.concatenate([gW.ravel(), p.mean(0)])

        res = scipy_minimize(np_obj, np.zeros(d * k + k), jac=True, method="BFGS", tol=1e-12)
        p = {"w": jnp.asarray(res.x[:d * k].reshape(d, k)), "b": jnp.asarray(res.x[d * k:])}
        assert float(task.loss(p, None, data)) == pytest.approx(res.fun, rel=1e-9)
        g = jax.grad(task.loss)(p, None, data)
        assert max(float(jnp.max(jnp.abs(v))) for v in g.values()) < 1e-6
        q = task.init(jax.random.PRNGKey(0))
        val, _ = np_obj(np.concatenate([np.asarray(q["w"]).ravel(), np.asarray(q["b"])]))
        assert float(task.loss(q, None, data)) == pytest.approx(val, rel=1e-10)
        check_grad_fd(lambda r: task.loss(r, None, data), q)


def test_logistic_regression_on_digits():
    task = LogisticRegressionTask(dataset="digits")
    assert task.num_classes == 10 and task.dim == 64 and task.full_batch
    data = task.datasets.train.full()
    assert len(data["label"]) == len(task.datasets.train)
    p = task.init(jax.random.PRNGKey(0))
    assert float(task.loss(p, None, data)) == pytest.approx(math.log(10), abs=0.05)


# --- conv ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    pytest.param(dict(channels=[4], strides=1, pooling="max", head="fc", padding="VALID"),
                 marks=pytest.mark.slow),
    dict(channels=[3, 4], strides=[1, 2], pooling="avg", head="squared_mean", activation="elu"),
])
def test_conv_gradient_fd(images, kw):
    with jax.enable_x64(True):
        task = ConvTask(datasets=images, **kw)
        p = task.init(jax.random.PRNGKey(0))
        batch = to_f64(next(iter(images.train)))
        check_grad_fd(lambda q: task.loss(q, None, batch), p, num_directions=2)


def test_conv_matches_numpy(images):
    """One stride-1 SAME 3x3 conv, relu, global mean, dense -- against a NumPy loop."""
    task = ConvTask(datasets=images, channels=[3], strides=1, head="mean", activation="relu")
    p = task.init(jax.random.PRNGKey(1))
    batch = next(iter(images.train))
    x = np.pad(batch["image"].astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    K, bias = np.asarray(p["Conv_0"]["kernel"], np.float64), np.asarray(p["Conv_0"]["bias"])
    out = np.zeros((x.shape[0], 8, 8, 3))
    for i in range(8):
        for j in range(8):
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", x[:, i:i + 3, j:j + 3, :], K)
    h = _relu(out + bias).mean((1, 2))
    logits = h @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])
    np.testing.assert_allclose(task.logits(p, batch), logits, rtol=2e-4, atol=2e-5)


def test_conv_bad_options(images):
    with pytest.raises(ValueError, match="strides"):
        ConvTask(datasets=images, channels=[4, 4], strides=[1, 1, 1])
    with pytest.raises(ValueError, match="pooling"):
        ConvTask(datasets=images, pooling="median")


# --- autoencoders --------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["mse", "bernoulli"])
def test_autoencoder_fd_and_numpy(pixels, loss):
    with jax.enable_x64(True):
        task = MLPAutoencoderTask(datasets=pixels, hidden_sizes=[12, 4], loss=loss)
        p = task.init(jax.random.PRNGKey(0))
        batch = to_f64(next(iter(pixels.train)))
        check_grad_fd(lambda q: task.loss(q, None, batch), p, num_directions=2)
        x = np.asarray(batch["image"]).reshape(16, -1)
        e, d = p["encoder"], p["decoder"]
        lin = lambda h, layer: h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
        code = _relu(lin(_relu(lin(x, e["Dense_0"])), e["Dense_1"]))
        o = lin(_relu(lin(code, d["Dense_0"])), d["Dense_1"])
        if loss == "mse":
            ref = np.mean((1 / (1 + np.exp(-o)) - x) ** 2)
        else:
            ref = np.mean(np.logaddexp(0, o) - x * o)
        assert float(task.loss(p, None, batch)) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_elbo_matches_numpy(pixels, likelihood):
    with jax.enable_x64(True):
        task = MLPVAETask(datasets=pixels, hidden_sizes=[10], latent_dim=3, likelihood=likelihood)
        p = task.init(jax.random.PRNGKey(0))
        batch = to_f64(next(iter(pixels.train)))
        key = jax.random.PRNGKey(4)
        if likelihood == "bernoulli":  # the gaussian head differs only in the closed-form nll
            check_grad_fd(lambda q: task.loss(q, key, batch), p, num_directions=2)
        # independent NumPy negative ELBO with the same eps
        x = np.asarray(batch["image"]).reshape(16, -1)
        lin = lambda h, layer: h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
        h = lin(_relu(lin(x, p["encoder"]["Dense_0"])), p["encoder"]["Dense_1"])
        mu, sigma = h[:, :3], np.logaddexp(0, h[:, 3:]) + 1e-4
        eps = np.asarray(jax.random.normal(key, (16, 3), jnp.float64))
        z = mu + sigma * eps
        o = lin(_relu(lin(z, p["decoder"]["Dense_0"])), p["decoder"]["Dense_1"])
        if likelihood == "bernoulli":
            nll = (np.logaddexp(0, o) - x * o).sum(1)
        else:
            nll = (0.5 * (x - o) ** 2 + 0.5 * np.log(2 * np.pi)).sum(1)
        kl = (0.5 * (mu ** 2 + sigma ** 2 - 1) - np.log(sigma)).sum(1)
        assert float(task.loss(p, key, batch)) == pytest.approx(np.mean(nll + kl), rel=1e-10)
        # the key drives the reparameterization noise; same key, same value
        k2 = jax.random.PRNGKey(5)
        assert float(task.loss(p, k2, batch)) != float(task.loss(p, key, batch))
        assert float(task.loss(p, key, batch)) == float(task.loss(p, key, batch))
        assert not task.full_batch


# --- char RNN ------------------------------------------------------------------------------------

def _toy_text(vocab=11, seq_len=6, n=64, seed=0):
    rng = np.random.default_rng(seed)
    mk = lambda m: {"tokens": rng.integers(0, vocab, (m, seq_len + 1)).astype(np.int32)}
    ds = Datasets(Split(mk(n), 8), Split(mk(16), 8), Split(mk(16), 8), Split(mk(16), 8))
    ds.vocab_size = vocab
    return ds


@pytest.mark.parametrize("cell", ["rnn", pytest.param("gru", marks=pytest.mark.slow), "lstm"])
def test_char_rnn_gradient_fd(cell):
    with jax.enable_x64(True):
        ds = _toy_text()
        task = CharRNNTask(datasets=ds, cell=cell, hidden_size=5, embed_dim=4, seq_len=6)
        p = task.init(jax.random.PRNGKey(0))
        assert all(l.dtype == jnp.float64 for l in jax.tree.leaves(p))
        batch = next(iter(ds.train))
        check_grad_fd(lambda q: task.loss(q, None, batch), p, num_directions=2)


def test_vanilla_rnn_matches_numpy():
    ds = _toy_text()
    task = CharRNNTask(datasets=ds, cell="rnn", hidden_size=5, embed_dim=4, seq_len=6)
    with jax.enable_x64(True):
        p = task.init(jax.random.PRNGKey(1))
        batch = next(iter(ds.train))
        tok = batch["tokens"]
        E = np.asarray(p["Embed_0"]["embedding"])
        c = p["SimpleCell_0"]
        Wi, bi, Wh = (np.asarray(c["i"]["kernel"]), np.asarray(c["i"]["bias"]),
                      np.asarray(c["h"]["kernel"]))
        h = np.zeros((tok.shape[0], 5))
        total = 0.0
        for t in range(6):
            h = np.tanh(E[tok[:, t]] @ Wi + bi + h @ Wh)
            z = h @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            total += -logp[np.arange(len(tok)), tok[:, t + 1]].mean()
        assert float(task.loss(p, None, batch)) == pytest.approx(total / 6, rel=1e-10)


def test_char_rnn_on_python_docs():
    task = CharRNNTask(seq_len=16, batch_size=8, hidden_size=8, embed_dim=4)
    assert task.vocab_size == task.datasets.vocab_size
    batch = next(iter(task.datasets.train))
    assert batch["tokens"].shape == (8, 17)
    p = task.init(jax.random.PRNGKey(0))
    # near-uniform predictions at init: loss close to log(vocab)
    assert float(task.loss(p, None, batch)) == pytest.approx(math.log(task.vocab_size), abs=0.3)
    with pytest.raises(ValueError, match="cell"):
        CharRNNTask(cell="transformer", datasets=_toy_text())


def test_configs_rebuild_same_task(images, pixels):
    built = [ConvTask(datasets=images, channels=[3]), MLPVAETask(datasets=pixels),
             LeastSquaresTask(dim=3, num_examples=32)]
    for task in built:
        cfg = task.config()
        extra = {} if isinstance(task, LeastSquaresTask) else {"datasets": task.datasets}
        again = type(task)(**cfg, **extra)
        k = jax.random.PRNGKey(3)
        for a, b in zip(jax.tree.leaves(task.init(k)), jax.tree.leaves(again.init(k))):
            np.testing.assert_array_equal(a, b)
        batch = next(iter(task.datasets.train))
        assert float(task.loss(task.init(k), k, batch)) == float(again.loss(again.init(k), k, batch))
