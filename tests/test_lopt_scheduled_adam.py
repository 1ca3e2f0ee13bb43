"""ScheduledAdamLOpt: equals optax.adam at its initial θ; its learned parts act as documented."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _lopt_testutil import check_warm_start, moves_updates, random_theta
from _lopt_testutil import run_updates as _run
from _lopt_testutil import toy_problem as _problem
from learned_opt.flat_layout import layout_of
from learned_opt.scheduled_adam import ScheduledAdamLOpt, shape_features


@pytest.mark.parametrize("lr,row_hidden", [(3e-3, (8,)), (0.05, ()), (1e-4, (4, 4))])
def test_initial_theta_is_exactly_adam(lr, row_hidden):
    lopt = ScheduledAdamLOpt(learning_rate=lr, row_hidden=row_hidden)
    theta = lopt.init(jax.random.PRNGKey(3))
    params, loss = _problem()
    ours = _run(lopt.opt_fn(theta, num_steps=15), params, loss)
    ref = _run(optax.adam(lr), params, loss)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-7)


def test_learned_step_size_scales_the_update_per_tensor():
    lopt = ScheduledAdamLOpt(row_hidden=())
    theta = lopt.init(jax.random.PRNGKey(0))
    # a constant output log-step s through the last bias: every update is exp(s) times Adam's
    theta = dict(theta, t_b2=jnp.asarray([1.0]))
    params, loss = _problem(1)
    ours = _run(lopt.opt_fn(theta, num_steps=10), params, loss, steps=3)
    ref = _run(optax.adam(lopt.learning_rate * np.exp(6 * np.tanh(1 / 6))), params, loss, steps=3)
    for u, r in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(r["w"]), rtol=1e-5)


def test_step_size_is_bounded_and_depends_on_training_fraction():
    lopt = ScheduledAdamLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    theta = {k: jnp.asarray(rng.standard_normal(np.shape(v)) * 0.5, jnp.float32) for k, v in theta.items()}
    ctx = np.zeros((2, lopt.num_context), np.float32)
    n_time = len(lopt.timescales)
    ctx[0, n_time], ctx[0, n_time + 1] = 0.0, 1.0  # start of training
    ctx[1, n_time], ctx[1, n_time + 1] = 1.0, 0.0  # end of training
    lrs = np.asarray(lopt.step_sizes(theta, ctx))
    assert lrs[0] != lrs[1]
    assert np.all(lrs <= lopt.learning_rate * np.exp(lopt.max_log_step) * (1 + 1e-6))
    assert np.all(lrs >= lopt.learning_rate * np.exp(-lopt.max_log_step) * (1 - 1e-6))


def test_eager_jit_and_vmap_agree_with_trained_like_theta():
    lopt = ScheduledAdamLOpt()
    theta = lopt.init(jax.random.PRNGKey(1))
    rng = np.random.default_rng(2)
    theta = {k: jnp.asarray(rng.standard_normal(np.shape(v)) * 0.3, jnp.float32) for k, v in theta.items()}
    params, loss = _problem(2)
    opt = lopt.opt_fn(theta, num_steps=20)
    a = _run(opt, params, loss, steps=4, jit=False)
    b = _run(opt, params, loss, steps=4, jit=True)
    for u, r in zip(a, b):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-9)
    thetas = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), theta)

    def first(th):
        o = lopt.opt_fn(th, num_steps=20)
        l, g = jax.value_and_grad(loss)(params)
        return o.update(g, o.init(params), params, loss=l)[0]

    both = jax.jit(jax.vmap(first))(thetas)
    one = first(theta)
    np.testing.assert_allclose(np.asarray(both["w"][0]), np.asarray(one["w"]), rtol=1e-4, atol=1e-9)


def test_rejects_bad_config_and_theta():
    with pytest.raises(ValueError, match="learning_rate"):
        ScheduledAdamLOpt(learning_rate=0.0)
    lopt = ScheduledAdamLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    with pytest.raises((KeyError, ValueError)):
        lopt.opt_fn({k: v for k, v in theta.items() if k != "t_w0"})


@pytest.mark.parametrize("kwargs,extra_context", [({"trust_features": True}, 2),
                                                   ({"trust_features": True, "step_controller": True}, 3),
                                                   ({"shape_features": True}, 3),
                                                   ({"trust_features": True, "step_controller": True,
                                                     "shape_features": True}, 6)])
def test_variants_at_initial_theta_are_still_adam(kwargs, extra_context):
    lopt = ScheduledAdamLOpt(learning_rate=0.01, **kwargs)
    theta = lopt.init(jax.random.PRNGKey(3))
    params, loss = _problem()
    ours = _run(lopt.opt_fn(theta, num_steps=15), params, loss)
    ref = _run(optax.adam(0.01), params, loss)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-7)
    assert all(lopt.config()[k] is True for k in kwargs)
    assert lopt.num_context == ScheduledAdamLOpt().num_context + extra_context
    assert theta["t_w2"].shape[1] == lopt.num_tensor_outputs == (2 if lopt.step_controller else 1)


@pytest.mark.parametrize("lr,expect", [(1e-4, "linear"), (30.0, "overshoot")])
def test_trust_ratio_reads_actual_over_predicted_decrease(lr, expect):
    """On ``f(x) = ½ Σ c_i x_i²`` a tiny Adam step decreases the loss by ≈ its first-order
    prediction (ρ ≈ 1); a huge one makes it rise (ρ < 0). The reference ρ is computed by hand."""
    from learned_opt.scheduled_adam import trust_features

    c = jnp.asarray([1.0, 3.0, 10.0])

    def f(p):
        return 0.5 * jnp.sum(c * p["x"] ** 2)

    lopt = ScheduledAdamLOpt(learning_rate=lr, trust_features=True)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)), num_steps=10)
    params = {"x": jnp.asarray([1.0, -2.0, 0.5])}
    state = opt.init(params)
    l0, g0 = jax.value_and_grad(f)(params)
    u0, state = opt.update(g0, state, params, loss=l0)
    params1 = optax.apply_updates(params, u0)
    l1 = f(params1)
    feats, _ = trust_features(state, l1, jnp.float32)
    rho_ref = (float(l1) - float(l0)) / float(jnp.sum(g0["x"] * u0["x"]))
    np.testing.assert_allclose(float(feats[0]), np.tanh(rho_ref), rtol=1e-4, atol=1e-6)
    if expect == "linear":
        assert abs(rho_ref - 1.0) < 0.01
    else:
        assert rho_ref < 0
    # the first step has no previous loss: both features are 0
    first, _ = trust_features(opt.init(params), l0, jnp.float32)
    assert np.all(np.asarray(first) == 0.0)


def test_with_trust_features_warm_start_reproduces_the_source_updates():
    lopt = ScheduledAdamLOpt(learning_rate=0.01, max_correction=1.0)
    theta = random_theta(lopt, 3)
    grown_lopt, grown = lopt.with_trust_features(theta)
    ref, problem = check_warm_start(lopt, theta, grown_lopt, grown, {"trust_features": True}, 1e-5, 1e-8)
    # exactly the inserted rows are zero, and they carry the trust inputs: setting them moves the updates
    new_rows = np.flatnonzero(np.all(np.asarray(grown["t_w0"]) == 0.0, axis=1))
    assert len(new_rows) == 2
    assert moves_updates(grown_lopt, {**grown, "t_w0": grown["t_w0"].at[new_rows].set(0.5)}, ref, problem)
    with pytest.raises(ValueError, match="trust_features"):
        grown_lopt.with_trust_features(grown)


@pytest.mark.parametrize("increment,max_step_change,cap", [(0.3, 0.25, None), (-2.0, 0.5, None), (5.0, 1.0, None),
                                                           (5.0, 1.0, 1.5), (-2.0, 0.5, 0.5)])
def test_step_controller_accumulates_bounded_increments(increment, max_step_change, cap):
    """A constant increment output ``c`` (through the last bias; memoryless output 0): after ``t``
    steps the accumulator is ``clip(t·K·tanh(c/K), -S, cap)`` (``cap = max_accumulator``, else ``S``)
    and the update is Adam's at ``lr0·exp(S·tanh(a_t/S))`` (closed form, against ``optax.adam`` on
    that schedule)."""
    S, lr0 = 3.0, 0.01
    lopt = ScheduledAdamLOpt(learning_rate=lr0, row_hidden=(), max_log_step=S, trust_features=True,
                             step_controller=True, max_step_change=max_step_change, max_accumulator=cap)
    theta = dict(lopt.init(jax.random.PRNGKey(0)), t_b2=jnp.asarray([0.0, increment]))
    params, loss = _problem(1)
    steps = 12
    ours = _run(lopt.opt_fn(theta, num_steps=steps), params, loss, steps=steps)
    acc = np.clip(np.arange(1, steps + 1) * max_step_change * np.tanh(increment / max_step_change), -S,
                  S if cap is None else cap)
    lrs = jnp.asarray(lr0 * np.exp(S * np.tanh(acc / S)), jnp.float32)
    ref = _run(optax.adam(lambda count: lrs[count]), params, loss, steps=steps)
    for t, (u, r) in enumerate(zip(ours, ref)):
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(r["w"]), rtol=1e-4, atol=1e-9, err_msg=f"step {t}")


def _adam_with_nominal_controller(params, curvature, centre, lr0, gain, K, S, steps, b1=0.9, b2=0.999, eps=1e-8,
                                  trust=False):
    """Unvectorized float64 reference of the nominal controller on ``Σ_k ½ h_k (w_k - c_k)²``: per
    tensor ``a <- clip(a + K tanh(κ n / K), -S, S)``, then Adam at ``lr0 exp(S tanh(a/S))``, with
    ``n = cos(g_t, m_{t-1})`` or (``trust``) ``n = min(cos, ρ̄)``: ``ρ̄ <- 0.9 ρ̄ + 0.1 tanh ρ`` from
    the second step, ``ρ = (L_t - L_{t-1}) / min(Σ g_{t-1} u_{t-1}, -1e-30)``."""
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    acc = {k: 0.0 for k in w}
    rho_avg, prev_loss, predicted = 0.0, 0.0, 0.0
    updates = []
    for t in range(1, steps + 1):
        grads = {k: curvature[k] * (w[k] - centre[k]) for k in w}
        loss = sum(0.5 * curvature[k] * np.sum((w[k] - centre[k]) ** 2) for k in w)
        if t > 1:
            rho_avg = 0.9 * rho_avg + 0.1 * np.tanh((loss - prev_loss) / min(predicted, -1e-30))
        step = {}
        for k, g in grads.items():
            cos = float(np.sum(g * m[k]) / np.sqrt(np.sum(g * g) * np.sum(m[k] * m[k]) + 1e-30))
            signal = min(cos, rho_avg) if trust else cos
            acc[k] = float(np.clip(acc[k] + K * np.tanh(gain * signal / K), -S, S))
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            d = (m[k] / (1 - b1 ** t)) / (np.sqrt(v2[k] / (1 - b2 ** t)) + eps)
            step[k] = -lr0 * np.exp(S * np.tanh(acc[k] / S)) * d
        prev_loss, predicted = loss, sum(float(np.sum(grads[k] * step[k])) for k in w)
        for k in w:
            w[k] = w[k] + step[k]
        updates.append(step)
    return updates, acc


@pytest.mark.parametrize("nominal", ["cosine", "cosine_trust"])
@pytest.mark.parametrize("gain", [0.05, 0.2])
def test_hypergradient_gain_at_initial_theta_is_the_nominal_controller(gain, nominal):
    """At θ0 with ``κ > 0``: Adam whose per-tensor log step follows the nominal increment
    ``κ cos(g_t, m_{t-1})`` (or ``κ min(cos, ρ̄)``) -- against an unvectorized float64 reference on a
    quadratic whose flat tensor undershoots (its step must grow) and whose stiff tensor overshoots
    (must shrink)."""
    S, K, lr0, steps = 4.0, 0.25, 0.05, 40
    rng = np.random.default_rng(0)
    params = {"flat": jnp.asarray(rng.standard_normal(6), jnp.float32),
              "stiff": jnp.asarray(rng.standard_normal((2, 3)), jnp.float32)}
    curvature = {"flat": 0.01, "stiff": 400.0}
    # the stiff tensor starts within Adam's step (~lr0) of its minimum: it oscillates
    centre = {"flat": np.full(6, 3.0), "stiff": np.asarray(params["stiff"]) + 0.02 * rng.standard_normal((2, 3))}

    def loss(p):
        return sum(0.5 * curvature[k] * jnp.sum((p[k] - centre[k]) ** 2) for k in p)

    lopt = ScheduledAdamLOpt(learning_rate=lr0, row_hidden=(), max_log_step=S, trust_features=True,
                             step_controller=True, max_step_change=K, hypergradient_gain=gain,
                             nominal_increment=nominal)
    ours = _run(lopt.opt_fn(lopt.init(jax.random.PRNGKey(1)), num_steps=steps), params, loss, steps=steps)
    ref, acc = _adam_with_nominal_controller(params, curvature, centre, lr0, gain, K, S, steps,
                                             trust=nominal == "cosine_trust")
    for t, (u, r) in enumerate(zip(ours, ref)):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), r[k], rtol=2e-3, atol=2e-6, err_msg=f"{k}, step {t}")
    assert acc["stiff"] < 0  # the overshooting tensor's step shrank
    if nominal == "cosine":
        assert acc["flat"] > 0.5  # and the undershooting one's grew
    else:  # the stiff tensor's oscillation keeps the shared ρ̄ low: the flat tensor grows less
        _, acc_cos = _adam_with_nominal_controller(params, curvature, centre, lr0, gain, K, S, steps)
        assert acc["flat"] < acc_cos["flat"] - 0.2


@pytest.mark.parametrize("nominal", ["cosine", "cosine_trust"])
def test_step_sizes_reads_the_nominal_increment_from_the_context(nominal):
    """``step_sizes`` at θ0 with ``κ``: the cos column ``c``, the trust average ``ρ̄`` and the
    accumulator column ``a/S`` give ``lr0 · exp(S tanh((a + K tanh(κ n / K)) / S))`` with ``n = c``
    or ``min(c, ρ̄)`` (closed form)."""
    S, K, gain, lr0 = 6.0, 0.25, 0.1, 0.01
    lopt = ScheduledAdamLOpt(learning_rate=lr0, trust_features=True, step_controller=True, hypergradient_gain=gain,
                             nominal_increment=nominal)
    theta = lopt.init(jax.random.PRNGKey(0))
    cos_col = lopt.num_context - 1 - 4 + 2  # tensor statistics [log rms, snr, cos, log size], then a/S
    rho_avg_col = (len(lopt.timescales) + 2) + 3 + 1  # time (τ features, 2 more), 3 loss features, [tanh ρ, ρ̄]
    ctx = np.zeros((3, lopt.num_context), np.float32)
    ctx[:, cos_col] = [1.0, -0.5, 0.0]
    ctx[:, rho_avg_col] = [0.3, 0.9, -0.4]
    ctx[:, -1] = [0.0, 0.5, -0.2]
    signal = ctx[:, cos_col] if nominal == "cosine" else np.minimum(ctx[:, cos_col], ctx[:, rho_avg_col])
    a = S * ctx[:, -1] + K * np.tanh(gain * signal / K)
    np.testing.assert_allclose(np.asarray(lopt.step_sizes(theta, ctx)), lr0 * np.exp(S * np.tanh(a / S)), rtol=1e-5)


def test_with_step_controller_warm_start_reproduces_the_source_updates():
    lopt = ScheduledAdamLOpt(learning_rate=0.01, max_correction=1.0, trust_features=True)
    theta = random_theta(lopt, 5)
    grown_lopt, grown = lopt.with_step_controller(theta)
    # the zero row / column change the matmuls' summation order: float noise over 15 steps
    ref, problem = check_warm_start(lopt, theta, grown_lopt, grown, {"step_controller": True}, 3e-4, 1e-7)
    # the new output column drives the accumulator: a nonzero increment moves the updates
    assert moves_updates(grown_lopt, {**grown, "t_b2": grown["t_b2"].at[1].set(0.3)}, ref, problem)
    with pytest.raises(ValueError, match="step_controller is already on"):
        grown_lopt.with_step_controller(grown)
    with pytest.raises(ValueError, match="trust_features"):
        ScheduledAdamLOpt().with_step_controller(ScheduledAdamLOpt().init(jax.random.PRNGKey(0)))


def test_nominal_increment_rejects_unknown_names_and_a_missing_gain():
    with pytest.raises(ValueError, match="nominal_increment must be one of .*'cosine_trust'.* got 'trust'"):
        ScheduledAdamLOpt(trust_features=True, step_controller=True, hypergradient_gain=0.1, nominal_increment="trust")
    with pytest.raises(ValueError, match="nominal_increment='cosine_trust' needs hypergradient_gain > 0"):
        ScheduledAdamLOpt(trust_features=True, step_controller=True, nominal_increment="cosine_trust")


def test_max_accumulator_caps_step_sizes_and_rejects_bad_config():
    """``step_sizes`` with the cap: ``lr0 exp(S tanh(min(a + K tanh(κ c/K), cap)/S))`` (closed form);
    a cap at ``S`` changes nothing; bad caps name the option."""
    S, K, gain, lr0, cap = 6.0, 0.25, 0.1, 0.01, 2.0
    kwargs = dict(learning_rate=lr0, trust_features=True, step_controller=True, hypergradient_gain=gain)
    lopt = ScheduledAdamLOpt(**kwargs, max_accumulator=cap)
    theta = lopt.init(jax.random.PRNGKey(0))
    cos_col = lopt.num_context - 1 - 4 + 2
    ctx = np.zeros((3, lopt.num_context), np.float32)
    ctx[:, cos_col] = [1.0, 1.0, -1.0]
    ctx[:, -1] = [0.0, 1.95 / S, 1.95 / S]
    a = np.minimum(S * ctx[:, -1] + K * np.tanh(gain * ctx[:, cos_col] / K), cap)
    np.testing.assert_allclose(np.asarray(lopt.step_sizes(theta, ctx)), lr0 * np.exp(S * np.tanh(a / S)), rtol=1e-5)
    assert a[1] == cap and a[2] < cap  # the cap bit on the growing tensor only
    np.testing.assert_array_equal(np.asarray(ScheduledAdamLOpt(**kwargs, max_accumulator=S).step_sizes(theta, ctx)),
                                  np.asarray(ScheduledAdamLOpt(**kwargs).step_sizes(theta, ctx)))
    with pytest.raises(ValueError, match="max_accumulator=7.0 must be <= max_log_step=6.0"):
        ScheduledAdamLOpt(**kwargs, max_accumulator=7.0)
    with pytest.raises(ValueError, match="max_accumulator"):
        ScheduledAdamLOpt(**kwargs, max_accumulator=0.0)
    with pytest.raises(ValueError, match="max_accumulator=2.0 needs step_controller=True"):
        ScheduledAdamLOpt(learning_rate=lr0, max_accumulator=2.0)


def test_step_controller_rejects_bad_config():
    with pytest.raises(ValueError, match="trust_features"):
        ScheduledAdamLOpt(step_controller=True)
    with pytest.raises(ValueError, match="max_step_change"):
        ScheduledAdamLOpt(trust_features=True, step_controller=True, max_step_change=0.0)
    with pytest.raises(ValueError, match="hypergradient_gain=0.1 needs step_controller"):
        ScheduledAdamLOpt(trust_features=True, hypergradient_gain=0.1)
    with pytest.raises(ValueError, match="hypergradient_gain must be finite and >= 0"):
        ScheduledAdamLOpt(trust_features=True, step_controller=True, hypergradient_gain=-0.1)


def test_shape_features_closed_form():
    """``[log10(fan_in)/3, log10(fan_out)/3, ndim >= 2]`` per leaf, in the layout's (sorted-key) order."""
    tree = {"a_dense": jnp.zeros((7, 5)), "b_bias": jnp.zeros((5,)), "c_conv": jnp.zeros((3, 3, 2, 4)),
            "d_scalar": jnp.zeros(())}
    got = np.asarray(shape_features(layout_of(tree)))
    want = np.array([[np.log10(7) / 3, np.log10(5) / 3, 1.0],
                     [0.0, np.log10(5) / 3, 0.0],
                     [np.log10(18) / 3, np.log10(4) / 3, 1.0],
                     [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_with_shape_features_warm_start_reproduces_the_source_updates():
    lopt = ScheduledAdamLOpt(learning_rate=0.01, max_correction=1.0, trust_features=True, step_controller=True,
                             hypergradient_gain=0.1)
    theta = random_theta(lopt, 7)
    grown_lopt, grown = lopt.with_shape_features(theta)
    ref, problem = check_warm_start(lopt, theta, grown_lopt, grown, {"shape_features": True}, 3e-4, 1e-7)
    # exactly the inserted rows are zero (after time, loss and trust features), and they carry the
    # shape inputs: setting them moves the updates
    new_rows = np.flatnonzero(np.all(np.asarray(grown["t_w0"]) == 0.0, axis=1))
    start = lopt.num_context - 4 - 1  # before the 4 tensor statistics and the accumulator
    np.testing.assert_array_equal(new_rows, np.arange(start, start + 3))
    np.testing.assert_array_equal(np.asarray(grown["r_w0"])[5 + start:5 + start + 3], 0.0)
    assert moves_updates(grown_lopt, {**grown, "t_w0": grown["t_w0"].at[new_rows].set(0.5)}, ref, problem)
    with pytest.raises(ValueError, match="shape_features is already on"):
        grown_lopt.with_shape_features(grown)
    with pytest.raises(TypeError, match="shape_features"):
        ScheduledAdamLOpt(shape_features="yes")


@pytest.mark.parametrize("floor,kwargs", [(0.0, {}), (0.1, {"row_hidden": ()}),
                                          (0.05, {"trust_features": True, "step_controller": True})])
def test_nominal_cosine_schedule_at_initial_theta_is_adam_with_cosine_decay(floor, kwargs):
    """``nominal_schedule="cosine"`` at the initial θ (κ = 0) makes optax.adam's updates with
    ``optax.cosine_decay_schedule(lr0, T, floor)``, step for step to the horizon and past it."""
    horizon = 12
    lopt = ScheduledAdamLOpt(learning_rate=0.02, nominal_schedule="cosine", nominal_schedule_floor=floor, **kwargs)
    theta = lopt.init(jax.random.PRNGKey(4))
    params, loss = _problem()
    ours = _run(lopt.opt_fn(theta, num_steps=horizon), params, loss, steps=15)
    ref = _run(optax.adam(optax.cosine_decay_schedule(0.02, horizon, alpha=floor)), params, loss, steps=15)
    for u, r in zip(ours, ref):
        for k in u:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-8)
    assert np.abs(np.asarray(ours[1]["w"])).max() > 0  # not vacuous: the early updates are Adam's
    without_horizon = _run(lopt.opt_fn(theta), params, loss, steps=5)  # no horizon: c(t) = 1
    for u, r in zip(without_horizon, _run(optax.adam(0.02), params, loss, steps=5)):
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(r["w"]), rtol=1e-4, atol=1e-8)


def test_nominal_schedule_with_traced_horizon_matches_static():
    lopt = ScheduledAdamLOpt(nominal_schedule="cosine", trust_features=True, step_controller=True,
                             hypergradient_gain=0.1)
    theta = random_theta(lopt, 5)
    params, loss = _problem(1)

    def first_updates(horizon):
        opt = lopt.opt_fn(theta, num_steps=horizon)
        state, p, out = opt.init(params), params, []
        for _ in range(6):
            val, g = jax.value_and_grad(loss)(p)
            u, state = opt.update(g, state, p, loss=val)
            p = optax.apply_updates(p, u)
            out.append(u["w"])
        return jnp.stack(out)

    static = first_updates(8)
    traced = jax.jit(first_updates)(jnp.asarray(8, jnp.int32))
    np.testing.assert_allclose(np.asarray(traced), np.asarray(static), rtol=1e-4, atol=1e-8)


def test_nominal_schedule_config_errors():
    with pytest.raises(ValueError, match="nominal_schedule must be one of"):
        ScheduledAdamLOpt(nominal_schedule="linear")
    with pytest.raises(ValueError, match="nominal_schedule_floor"):
        ScheduledAdamLOpt(nominal_schedule="cosine", nominal_schedule_floor=1.5)
    with pytest.raises(ValueError, match="nominal_schedule_floor"):
        ScheduledAdamLOpt(nominal_schedule_floor=-0.1)
