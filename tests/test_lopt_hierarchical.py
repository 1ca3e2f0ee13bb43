"""HierarchicalLOpt: numerical safety of loss features, validation-loss pathway, loss statistics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt import features as F
from learned_opt import num_meta_params
from learned_opt.hierarchical_lopt import HierarchicalLOpt


def params0():
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    return {"w": jax.random.normal(k[0], (4, 3)), "b": jnp.zeros((3,)), "s": jnp.asarray(0.5)}


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(jnp.asarray(x, jnp.float32)))) for x in jax.tree_util.tree_leaves(tree))


LOPT = HierarchicalLOpt()
TARGET = params0()


def quadratic(p, offset, scale):
    """Minimum value ``offset``, reached at the starting point TARGET (so the loss starts there)."""
    return offset + scale * sum(jnp.sum((a - b) ** 2) for a, b in
                                zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(TARGET)))


@jax.jit
def run_101_steps(theta, offset, scale):
    tx = LOPT.opt_fn(theta, num_steps=101)

    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(quadratic)(p, offset, scale)
        u, s = tx.update(g, s, p, loss=loss, valid_loss=loss * 1.1)
        ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves((u, s))]))
        return (optax.apply_updates(p, u), s), (ok, loss)

    return jax.lax.scan(step, (TARGET, tx.init(TARGET)), None, length=101)


@jax.jit
def first_two_steps(theta, offset, scale):
    tx = LOPT.opt_fn(theta)
    loss, g = jax.value_and_grad(quadratic)(TARGET, offset, scale)
    u0, s1 = tx.update(g, tx.init(TARGET), TARGET, loss=loss)
    u1, s2 = tx.update(g, s1, TARGET, loss=loss)
    return u0, s1, u1, s2


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1e6, 1.0), (0.0, 1e6)],
                         ids=["loss-starts-at-0", "loss-1e6", "loss-and-grads-1e6"])
def test_finite_for_steps_0_to_100_under_jit(offset, scale):
    theta = LOPT.init(jax.random.PRNGKey(1))
    (p, s), (ok, losses) = run_101_steps(theta, jnp.float32(offset), jnp.float32(scale))
    ok = np.asarray(ok)
    assert ok.all(), f"non-finite at steps {np.flatnonzero(~ok)[:5]}"
    assert float(losses[0]) == offset
    assert all_finite((p, s)) and int(s.count) == 101
    # loss statistics were really fed (not silently skipped)
    assert int(s.train_loss.count) == 101 and int(s.valid_loss.count) == 101
    # steps 0 and 1 separately under jit, straight from a fresh state
    assert all_finite(first_two_steps(theta, jnp.float32(offset), jnp.float32(scale)))


def _f(q):
    return jnp.sum(q["w"] ** 2) + jnp.sum(jnp.cos(q["b"])) + q["s"] ** 2


@jax.jit
def five_steps_with_valid(theta, valid):
    tx = LOPT.opt_fn(theta, num_steps=20)

    def step(carry, v):
        q, s = carry
        loss, g = jax.value_and_grad(_f)(q)
        u, s = tx.update(g, s, q, loss=loss, valid_loss=v)
        return (optax.apply_updates(q, u), s), u

    return jax.lax.scan(step, (TARGET, tx.init(TARGET)), valid)[1]


@jax.jit
def five_steps_without_valid(theta):
    tx = LOPT.opt_fn(theta, num_steps=20)

    def step(carry, _):
        q, s = carry
        loss, g = jax.value_and_grad(_f)(q)
        u, s = tx.update(g, s, q, loss=loss)
        return (optax.apply_updates(q, u), s), u

    return jax.lax.scan(step, (TARGET, tx.init(TARGET)), None, length=5)[1]


def test_validation_features_have_no_effect_when_their_weights_are_zero():
    theta = LOPT.init(jax.random.PRNGKey(2))
    assert not np.any(np.asarray(theta["gru_wv"]))  # the validation pathway starts switched off
    # make everything else non-trivial
    theta = {k: (v if k == "gru_wv" else v + 0.05) for k, v in theta.items()}
    valid = 3.0 + 0.5 * jnp.arange(5.0) ** 2
    with_v, without_v = five_steps_with_valid(theta, valid), five_steps_without_valid(theta)
    for x, y in zip(jax.tree_util.tree_leaves(with_v), jax.tree_util.tree_leaves(without_v)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # with non-zero validation weights the validation loss does change the updates
    theta_v = dict(theta, gru_wv=jnp.full_like(theta["gru_wv"], 0.5))
    a, b = five_steps_with_valid(theta_v, valid), five_steps_without_valid(theta_v)
    assert not np.allclose(np.asarray(a["w"][-1]), np.asarray(b["w"][-1]))


def test_training_loss_changes_updates():
    theta = LOPT.init(jax.random.PRNGKey(3))
    g = jax.tree_util.tree_map(jnp.ones_like, TARGET)

    @jax.jit
    def second_update(loss2):
        tx = LOPT.opt_fn(theta)
        _, s = tx.update(g, tx.init(TARGET), TARGET, loss=1.0)
        return tx.update(g, s, TARGET, loss=loss2)[0]

    u_down, u_up = second_update(jnp.float32(0.5)), second_update(jnp.float32(2.0))
    assert not np.allclose(np.asarray(u_down["w"]), np.asarray(u_up["w"]))


def test_loss_statistics_match_numpy_and_features_are_safe():
    decays = np.array([0.5, 0.9])
    stats = F.init_loss_stats(2)
    losses = [1e6, 1e6 + 3.0, 2e6, np.nan, 5.0, 0.0]
    mean = var = first = None
    for l in losses:
        feats = np.asarray(F.loss_features(stats, jnp.float32(l)))
        assert np.all(np.isfinite(feats)) and np.all(np.abs(feats) <= 1)
        if first is None or not np.isfinite(l):
            assert np.all(feats == 0)  # nothing to compare with yet / non-finite loss ignored
        stats = F.update_loss_stats(stats, jnp.float32(l), jnp.asarray(decays, jnp.float32))
        if not np.isfinite(l):
            continue
        l32 = float(np.float32(l))
        if first is None:
            first, mean, var = l32, np.full(2, l32), np.zeros(2)
        else:
            delta = l32 - mean
            var = decays * var + (1 - decays) * decays * delta ** 2
            mean = decays * mean + (1 - decays) * l32
        np.testing.assert_allclose(np.asarray(stats.mean), mean, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(stats.var), var, rtol=1e-4)
        assert float(stats.first) == first
    assert int(stats.count) == 5
    # a constant loss stream gives zero features (after the first) and no NaN at 0
    s = F.init_loss_stats(2)
    for _ in range(3):
        s = F.update_loss_stats(s, jnp.float32(0.0), jnp.asarray(decays, jnp.float32))
    assert np.all(np.asarray(F.loss_features(s, jnp.float32(0.0))) == 0)


def test_meta_parameter_count():
    lopt = HierarchicalLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    h, i = lopt.rnn_size, lopt.num_rnn_inputs
    assert i == 21 + 7 + 4 + 16
    mlp = (lopt.num_param_features + 1) * 16 + 17 * 16 + 17 * 2
    gru = i * 3 * h + 4 * 3 * h + h * 3 * h + 3 * h
    heads = h * 16 + 16 + h + 1
    assert num_meta_params(theta) == mlp + gru + heads == 4115
