"""HierarchicalLOpt with the nominal-Adam output: Adam at its initial θ, bounded learned parts."""
import jax
import numpy as np
import optax
import pytest

from _lopt_testutil import run_updates
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
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-4, atol=1e-7 * lr)


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
