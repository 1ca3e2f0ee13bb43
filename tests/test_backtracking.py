"""``backtrack_on_spike``: identical to the wrapped optimizer without spikes; on a spike the
parameters return to the previous point, the inner state is untouched and later steps shrink."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _lopt_testutil import run_trace
from learned_opt.backtracking import backtrack_on_spike
from learned_opt.scheduled_adam import ScheduledAdamLOpt


def _loss(p):
    return 0.5 * jnp.sum((p["w"] - 3.0) ** 2) + jnp.sum(p["b"] ** 2)


PARAMS = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray([[0.3, -0.2]])}


def _run(opt, steps, loss_fn=_loss, params=PARAMS, jit=True):
    """Per step ``(loss, params after the update, state after it)``."""
    return [(l, p, s) for l, _, p, s in run_trace(opt, params, loss_fn, steps, jit)]


def test_without_spikes_it_is_the_wrapped_optimizer():
    ref = _run(optax.with_extra_args_support(optax.adam(0.1)), 30)
    ours = _run(backtrack_on_spike(optax.adam(0.1)), 30)
    for t, ((_, p_ref, _), (_, p, _)) in enumerate(zip(ref, ours)):
        for k in p:
            # the same arithmetic in another compiled program: float rounding only
            np.testing.assert_allclose(np.asarray(p[k]), np.asarray(p_ref[k]), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{k}, step {t}")
    assert int(ours[-1][2].num_spikes) == 0


def _spiky(p, at=(1.0, 1.0)):
    """A quadratic with a cliff: the loss jumps by 100 where ``w[0] > 3.5`` (an overshoot)."""
    return _loss(p) + 100.0 * jax.nn.sigmoid(50.0 * (p["w"][0] - 3.5))


@pytest.mark.parametrize("jit", [True, False])
def test_a_spike_undoes_the_step_keeps_the_inner_state_and_shrinks(jit):
    """SGD at a rate that jumps over the cliff: the step into it is undone exactly, the inner
    state (momentum) is the one before the spike, and the next update is exp(-shrink) smaller."""
    lr, shrink = 0.9, 1.0
    inner = optax.sgd(lr, momentum=0.5)
    opt = backtrack_on_spike(inner, shrink=shrink, warmup=1)
    trace = _run(opt, 6, _spiky, jit=jit)
    losses = [t[0] for t in trace]
    spike_steps = [i for i in range(1, 6) if int(trace[i][2].num_spikes) > int(trace[i - 1][2].num_spikes)]
    assert spike_steps, f"no spike in {losses}"
    i = spike_steps[0]
    # the parameters after the spike step are those before the step that caused it
    for k in PARAMS:
        np.testing.assert_allclose(np.asarray(trace[i][1][k]), np.asarray(trace[i - 2][1][k]), rtol=0, atol=1e-6)
    # the inner state is the one before the spike (its momentum never saw the cliff's gradient)
    for a, b in zip(jax.tree_util.tree_leaves(trace[i][2].inner), jax.tree_util.tree_leaves(trace[i - 1][2].inner)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(trace[i][2].log_scale) == pytest.approx(-shrink)
    # the step after: the inner update at the restored point, scaled by exp(-shrink)
    params = trace[i][1]
    grads = jax.grad(_spiky)(params)
    u_inner, _ = inner.update(grads, trace[i][2].inner, params)
    expected = optax.apply_updates(params, jax.tree_util.tree_map(lambda x: np.exp(-shrink) * x, u_inner))
    for k in PARAMS:
        np.testing.assert_allclose(np.asarray(trace[i + 1][1][k]), np.asarray(expected[k]), rtol=1e-5, atol=1e-7)


def test_non_finite_loss_or_gradient_is_a_spike():
    opt = backtrack_on_spike(optax.sgd(0.1))
    state = opt.init(PARAMS)
    loss, grads = jax.value_and_grad(_loss)(PARAMS)
    u0, state = opt.update(grads, state, PARAMS, loss=loss)
    p1 = optax.apply_updates(PARAMS, u0)
    for bad_loss, bad_grads in [(jnp.nan, jax.grad(_loss)(p1)),
                                (_loss(p1), {"w": jnp.asarray([jnp.inf, 0.0, 0.0]), "b": jnp.zeros((1, 2))})]:
        u, s = opt.update(bad_grads, state, p1, loss=bad_loss)
        back = optax.apply_updates(p1, u)
        assert int(s.num_spikes) == 1
        for k in PARAMS:
            np.testing.assert_allclose(np.asarray(back[k]), np.asarray(PARAMS[k]), atol=1e-7)
            assert np.all(np.isfinite(np.asarray(back[k])))


@pytest.mark.parametrize("warmup,expected_spikes", [(20, 0), (1, 1)])
def test_noise_below_the_bound_is_not_a_spike(warmup, expected_spikes):
    """A noisy, slowly descending loss stream (minibatch-like, ±5%) never triggers with the
    default warm-up; testing from the second loss (σ still 0, the bound at the first loss) lets
    the noise alone trigger a backtrack."""
    rng = np.random.default_rng(0)
    opt = backtrack_on_spike(optax.sgd(0.01), warmup=warmup)
    state = opt.init(PARAMS)
    grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
    for t in range(300):
        loss = 1.0 / (1.0 + 0.002 * t) * (1.0 + 0.05 * rng.standard_normal())
        _, state = opt.update(grads, state, PARAMS, loss=jnp.float32(loss))
    assert int(state.num_spikes) == expected_spikes


def test_needs_the_loss_and_checks_its_options():
    opt = backtrack_on_spike(optax.sgd(0.1))
    with pytest.raises(ValueError, match="needs loss="):
        opt.update(PARAMS, opt.init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match="shrink"):
        backtrack_on_spike(optax.sgd(0.1), shrink=0.0)
    with pytest.raises(ValueError, match="decay"):
        backtrack_on_spike(optax.sgd(0.1), decay=1.0)
    with pytest.raises(ValueError, match="warmup"):
        backtrack_on_spike(optax.sgd(0.1), warmup=0)


def test_scheduled_adam_backtrack_option_wraps_and_round_trips():
    """``ScheduledAdamLOpt(backtrack=True)`` makes the plain optimizer's updates on a spike-free run
    and keeps the option through its config."""
    plain = ScheduledAdamLOpt(learning_rate=0.01, trust_features=True, step_controller=True, hypergradient_gain=0.1)
    guarded = ScheduledAdamLOpt(**{**plain.config(), "backtrack": True})
    theta = plain.init(jax.random.PRNGKey(0))
    ref = _run(plain.opt_fn(theta, num_steps=20), 20)
    ours = _run(guarded.opt_fn(theta, num_steps=20), 20)
    for (_, p_ref, _), (_, p, _) in zip(ref, ours):
        for k in p:
            np.testing.assert_allclose(np.asarray(p[k]), np.asarray(p_ref[k]), rtol=1e-6, atol=1e-8)
    assert guarded.config()["backtrack"] is True
    with pytest.raises(TypeError, match="backtrack"):
        ScheduledAdamLOpt(backtrack="yes")
