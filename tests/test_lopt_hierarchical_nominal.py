"""HierarchicalLOpt with the nominal-Adam output: Adam at its initial θ, bounded learned parts."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _lopt_testutil import check_warm_start, moves_updates, random_theta, run_updates
from _lopt_testutil import toy_problem as _problem
from learned_opt.hierarchical_lopt import HierarchicalLOpt


@pytest.mark.parametrize("lr", [1e-3, 0.01, 0.3])
def test_nominal_output_at_initial_theta_is_adam(lr):
    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=lr)
    theta = lopt.init(jax.random.PRNGKey(1))
    params, loss = _problem()
    ours = run_updates(lopt.opt_fn(theta, num_steps=12), params, loss)
    ref = run_updates(optax.adam(lr, b1=0.9, b2=lopt.second_moment_decay, eps=lopt.eps), params, loss)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-5 * lr)


def test_nominal_output_learned_parts_are_bounded():
    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=0.01, max_log_step=2.0, max_correction=0.5)
    theta = lopt.init(jax.random.PRNGKey(0))
    big = {k: v + 50.0 * jax.random.normal(jax.random.PRNGKey(i), v.shape) for i, (k, v) in enumerate(theta.items())}
    params, loss = _problem(2)
    for u in run_updates(lopt.opt_fn(big, num_steps=12), params, loss, steps=4):
        for k in u:
            # |d| <= ~1/(1-b1) for Adam's bias-corrected direction; r, exp(s) bounded
            bound = 0.01 * np.exp(2.0) * (1.0 / (1 - 0.9) + 0.5)
            assert np.all(np.abs(np.asarray(u[k])) <= bound * 1.0001)
    assert lopt.config()["output"] == "nominal_adam"
    assert HierarchicalLOpt(**lopt.config()).config() == lopt.config()


def test_nominal_output_needs_adam_momentum_and_known_output():
    with pytest.raises(ValueError, match="0.9 among momentum_decays"):
        HierarchicalLOpt(output="nominal_adam", momentum_decays=(0.5, 0.99))
    with pytest.raises(ValueError, match="output must be one of"):
        HierarchicalLOpt(output="adam")


def test_trust_features_at_initial_theta_is_adam():
    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=0.01, trust_features=True)
    theta = lopt.init(jax.random.PRNGKey(1))
    params, loss = _problem()
    ours = run_updates(lopt.opt_fn(theta, num_steps=12), params, loss)
    ref = run_updates(optax.adam(0.01, b1=0.9, b2=lopt.second_moment_decay, eps=lopt.eps), params, loss)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-7)


def test_with_trust_features_warm_start_reproduces_the_source_updates():
    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=0.01)
    theta = random_theta(lopt, 3)
    grown_lopt, grown = lopt.with_trust_features(theta)
    ref, problem = check_warm_start(lopt, theta, grown_lopt, grown, {"trust_features": True}, 1e-5, 1e-9)
    # the new block carries the trust inputs: setting it moves the updates
    assert moves_updates(grown_lopt, {**grown, "gru_wt": grown["gru_wt"] + 1.0}, ref, problem)
    with pytest.raises(ValueError, match="trust_features"):
        grown_lopt.with_trust_features(grown)


@pytest.mark.parametrize("lr,expect", [(1e-4, "linear"), (30.0, "overshoot")])
def test_trust_state_reads_actual_over_predicted_decrease(lr, expect):
    """On ``f(x) = ½ Σ c_i x_i²`` the state after one update holds ``P = Σ g·u`` and ``L_0``; the
    next step's features are ``tanh ρ`` with ``ρ = (L_1 - L_0) / P`` computed by hand (≈ 1 for a
    tiny step, < 0 for a huge one)."""
    from learned_opt.feature_math import trust_ratio_features

    c = jnp.asarray([1.0, 3.0, 10.0])

    def f(p):
        return 0.5 * jnp.sum(c * p["x"] ** 2)

    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=lr, trust_features=True)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)), num_steps=10)
    params = {"x": jnp.asarray([1.0, -2.0, 0.5])}
    state = opt.init(params)
    l0, g0 = jax.value_and_grad(f)(params)
    u0, state = opt.update(g0, state, params, loss=l0)
    inner = state.inner if hasattr(state, "inner") else state
    found = [s for s in jax.tree_util.tree_leaves(inner, is_leaf=lambda x: hasattr(x, "rho_ema"))
             if hasattr(s, "rho_ema")]
    assert len(found) == 1
    lstate = found[0]
    predicted = float(jnp.sum(g0["x"] * u0["x"]))
    np.testing.assert_allclose(float(lstate.predicted), predicted, rtol=1e-5)
    assert float(lstate.prev_loss) == float(l0)
    l1 = f(optax.apply_updates(params, u0))
    feats, ema = trust_ratio_features(lstate.count, lstate.prev_loss, lstate.predicted, lstate.rho_ema, l1,
                                      jnp.float32)
    rho_ref = (float(l1) - float(l0)) / predicted
    np.testing.assert_allclose(float(feats[0]), np.tanh(rho_ref), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(ema), 0.1 * np.tanh(rho_ref), rtol=1e-4, atol=1e-7)
    assert abs(rho_ref - 1.0) < 0.01 if expect == "linear" else rho_ref < 0


@pytest.mark.parametrize("kappa", [0.0, 0.1, 0.3])
def test_step_controller_at_initial_theta_matches_the_flat_controller(kappa):
    """At the initial θ the hierarchical controller is Adam with the nominal increment
    ``κ cos(g, m_prev)``: the same updates as ``ScheduledAdamLOpt``'s controller at its initial θ
    (an independent implementation of the same rule); with κ = 0 both are plain Adam."""
    from learned_opt.scheduled_adam import ScheduledAdamLOpt

    kw = dict(learning_rate=0.01, max_log_step=6.0, max_correction=1.0, trust_features=True,
              step_controller=True, hypergradient_gain=kappa)
    hier = HierarchicalLOpt(output="nominal_adam", **kw)
    flat = ScheduledAdamLOpt(**kw)
    params, loss = _problem()
    ours = run_updates(hier.opt_fn(hier.init(jax.random.PRNGKey(1)), num_steps=20), params, loss, steps=20)
    ref = run_updates(flat.opt_fn(flat.init(jax.random.PRNGKey(2)), num_steps=20), params, loss, steps=20)
    adam = run_updates(optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8), params, loss, steps=20)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-7)
    differs = max(float(jnp.max(jnp.abs(u["w"] - a["w"]))) for u, a in zip(ours, adam))
    assert (differs > 1e-5) == (kappa > 0)


def test_step_controller_accumulator_follows_the_rule_by_hand():
    """Two steps on a quadratic with κ = 0.2, K = 0.25: the state's accumulator after step 2 is
    ``clip(K tanh(κ cos(g_2, m_1)/K))`` with ``cos`` computed per tensor in numpy (step 1 has
    ``m_prev = 0``, so ``cos = 0`` and the accumulator stays 0)."""
    c = jnp.asarray([1.0, 3.0, 10.0])

    def f(p):
        return 0.5 * jnp.sum(c * p["x"] ** 2) + jnp.sum((p["y"] - 1.0) ** 2)

    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=0.05, trust_features=True,
                            step_controller=True, hypergradient_gain=0.2)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)), num_steps=10)
    p = {"x": jnp.asarray([1.0, -2.0, 0.5]), "y": jnp.asarray([[3.0, -1.0]])}
    state = opt.init(p)
    g1 = jax.grad(f)(p)
    u, state = opt.update(g1, state, p, loss=f(p))
    acc1 = np.asarray([x for x in jax.tree_util.tree_leaves(state) if x.shape == (2,)][-1])
    np.testing.assert_allclose(acc1, 0.0, atol=1e-7)
    p = optax.apply_updates(p, u)
    g2 = jax.grad(f)(p)
    _, state = opt.update(g2, state, p, loss=f(p))
    acc2 = np.asarray([x for x in jax.tree_util.tree_leaves(state) if x.shape == (2,)][-1])
    expect = []
    for k in ("x", "y"):  # tensors in the layout's (sorted-key) order; m_1 = 0.1 g_1
        a, b = np.ravel(g2[k]), 0.1 * np.ravel(g1[k])
        cos = a @ b / np.sqrt((a @ a) * (b @ b))
        expect.append(0.25 * np.tanh(0.2 * cos / 0.25))
    np.testing.assert_allclose(acc2, expect, rtol=1e-5)


def test_with_step_controller_warm_start_reproduces_the_source_updates():
    lopt = HierarchicalLOpt(output="nominal_adam", learning_rate=0.01, trust_features=True)
    theta = random_theta(lopt, 4)
    grown_lopt, grown = lopt.with_step_controller(theta)
    ref, problem = check_warm_start(lopt, theta, grown_lopt, grown, {"step_controller": True}, 1e-5, 1e-9)
    # each new block is live: the increment readout and the accumulator's GRU input move the updates
    assert moves_updates(grown_lopt, {**grown, "inc_b": grown["inc_b"] + 0.5}, ref, problem)
    with_acc = {**grown, "inc_b": grown["inc_b"] + 0.5, "gru_wa": grown["gru_wa"] + 1.0}
    assert moves_updates(grown_lopt, with_acc, run_updates(
        grown_lopt.opt_fn({**grown, "inc_b": grown["inc_b"] + 0.5}, num_steps=15), *problem), problem)
    with pytest.raises(ValueError, match="already on"):
        grown_lopt.with_step_controller(grown)
    with pytest.raises(ValueError, match="trust_features"):
        plain = HierarchicalLOpt(output="nominal_adam")
        plain.with_step_controller(random_theta(plain, 0))


@pytest.mark.parametrize("kwargs,match", [
    (dict(step_controller=True, trust_features=True), "output='nominal_adam'"),
    (dict(output="nominal_adam", step_controller=True), "trust_features"),
    (dict(output="nominal_adam", trust_features=True, hypergradient_gain=0.1), "needs step_controller"),
    (dict(output="nominal_adam", trust_features=True, step_controller=True, hypergradient_gain=-1.0),
     "hypergradient_gain"),
    (dict(output="nominal_adam", trust_features=True, step_controller=True, max_step_change=0.0),
     "max_step_change"),
])
def test_step_controller_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HierarchicalLOpt(**kwargs)
