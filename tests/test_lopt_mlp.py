"""MLPLOpt: an independent per-tensor NumPy reference, invariances, meta-parameter count."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt import num_meta_params
from learned_opt.mlp_lopt import MLPLOpt


def reference_updates(lopt, theta, grads_seq, params_seq, num_steps):
    """Unflattened float64 NumPy re-implementation of the documented update, one tensor at a time."""
    th = {k: np.asarray(v, np.float64) for k, v in theta.items()}
    betas = np.asarray(lopt.momentum_decays)
    names = sorted(params_seq[0])
    m = {k: np.zeros((np.size(params_seq[0][k]), len(betas))) for k in names}
    v = {k: np.zeros(np.size(params_seq[0][k])) for k in names}
    out = []
    for t, (grads, params) in enumerate(zip(grads_seq, params_seq)):
        tf = [math.tanh(t / s) for s in lopt.timescales] + [t / num_steps, 1 - t / num_steps]
        step_t = {}
        for k in names:
            g = np.asarray(grads[k], np.float64).ravel()
            p = np.asarray(params[k], np.float64).ravel()
            m[k] = betas * m[k] + (1 - betas) * g[:, None]
            v[k] = lopt.second_moment_decay * v[k] + (1 - lopt.second_moment_decay) * g ** 2
            r = 1 / np.sqrt(np.maximum(v[k], lopt.rsqrt_eps))
            cols = [p, g] + [m[k][:, i] for i in range(len(betas))] + [np.sqrt(v[k]), g * r] + \
                   [m[k][:, i] * r for i in range(len(betas))]
            cols = [c / np.sqrt(max(np.mean(c ** 2), 1e-24)) for c in cols]
            x = np.concatenate([np.stack(cols, 1), np.tile(tf, (g.size, 1))], 1)
            h = np.maximum(x @ th["w0"] + th["b0"], 0)
            h = np.maximum(h @ th["w1"] + th["b1"], 0)
            o = h @ th["w2"] + th["b2"]
            step_t[k] = (o[:, 0] * np.exp(lopt.exp_mult * o[:, 1]) * lopt.step_mult).reshape(np.shape(params[k]))
        out.append(step_t)
    return out


def sample():
    ks = jax.random.split(jax.random.PRNGKey(4), 6)
    params = {"a": jax.random.normal(ks[0], (5, 3)), "b": jax.random.normal(ks[1], (7,)) * 0.1,
              "c": jax.random.normal(ks[2], (2, 2, 2))}
    g1 = {k: jax.random.normal(kk, x.shape) * s for (k, x), kk, s in
          zip(params.items(), ks[3:], (1e-2, 3.0, 1e-5))}
    return params, g1


def test_matches_unflattened_reference_over_three_steps():
    lopt = MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(7))
    # non-zero biases so that every parameter of θ matters
    theta = {k: (v + 0.1 if k.startswith("b") else v) for k, v in theta.items()}
    params, g = sample()
    tx = lopt.opt_fn(theta, num_steps=50)
    state = tx.init(params)
    grads_seq, params_seq, ours = [], [], []
    update = jax.jit(tx.update)
    for t in range(3):
        grads = {k: x * (1.0 + 0.5 * t) + 0.01 * t for k, x in g.items()}
        upd, state = update(grads, state, params)
        grads_seq.append(grads)
        params_seq.append(params)
        ours.append(upd)
        params = {k: params[k] + upd[k] for k in params}
    ref = reference_updates(lopt, theta, grads_seq, params_seq, 50)
    for t in range(3):
        for k in params:
            np.testing.assert_allclose(np.asarray(ours[t][k]), ref[t][k], rtol=2e-4, atol=1e-9)


@pytest.mark.parametrize("c", [1e-3, 7.5, 1e4])
def test_first_update_invariant_to_scaling_one_tensors_gradient(c):
    lopt = MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(1))
    params, grads = sample()
    tx = lopt.opt_fn(theta, num_steps=100)
    state = tx.init(params)
    base, _ = tx.update(grads, state, params)
    for name in params:
        scaled = dict(grads, **{name: grads[name] * c})
        upd, _ = tx.update(scaled, state, params)
        for k in params:
            ref = np.asarray(base[k])
            assert np.max(np.abs(np.asarray(upd[k]) - ref)) <= 1e-5 * np.max(np.abs(ref)), (name, k)
    # not vacuous: the update responds to the gradient's direction
    flipped, _ = tx.update(dict(grads, a=-grads["a"]), state, params)
    assert not np.allclose(np.asarray(flipped["a"]), np.asarray(base["a"]), rtol=1e-3)


def test_meta_parameter_count_and_small_initial_steps():
    lopt = MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    f = lopt.num_features
    assert f == 23  # w, g, 6 momenta, sqrt(v), 7 rsqrt features, 5 tanh + 2 horizon time features
    assert num_meta_params(theta) == (f + 1) * 32 + 33 * 32 + 33 * 2 == 1890
    params, grads = sample()
    tx = lopt.opt_fn(theta)
    upd, _ = tx.update(grads, tx.init(params), params)
    biggest = max(float(jnp.max(jnp.abs(u))) for u in jax.tree_util.tree_leaves(upd))
    assert 0 < biggest < 0.02  # β = 0.001 times an O(1) network output


def test_horizon_features_change_the_update():
    lopt = MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(2))
    params, grads = sample()
    outs = []
    for n in (None, 10, 1000):
        tx = lopt.opt_fn(theta, num_steps=n)
        s = tx.init(params)
        _, s = tx.update(grads, s, params)
        upd, _ = tx.update(grads, s, params)
        outs.append(np.asarray(upd["a"]))
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])


def test_invalid_config():
    with pytest.raises(ValueError, match="momentum_decays"):
        MLPLOpt(momentum_decays=(0.5, 1.0))
    with pytest.raises(ValueError, match="hidden_sizes"):
        MLPLOpt(hidden_sizes=(0,))
    with pytest.raises(ValueError, match="w0"):
        MLPLOpt().opt_fn(MLPLOpt(hidden_sizes=(16, 32)).init(jax.random.PRNGKey(0)))
