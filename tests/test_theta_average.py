"""θ̄, the exponential moving average of θ over outer steps (config key ``theta_average``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from learned_opt.checkpoint import AVERAGE_STEM, checkpoint_filename, latest_checkpoint, load
from learned_opt.learnable_hand import LearnableSGD
from outer_train import ConstantSchedule, FixedTaskFamily, InnerProblem, TrainConfig, make_estimator, train
from outer_train.theta_average import averaged_theta, theta_average
from outer_train.trainer import make_outer_optimizer
from tasks.quadratic import QuadraticTask


def _closed_form(thetas: list[np.ndarray], beta: float) -> np.ndarray:
    """Σ_i (1−β) β^{t−i} θ_i / (1 − β^t), written out term by term."""
    t = len(thetas)
    num = sum((1 - beta) * beta ** (t - i) * th for i, th in enumerate(thetas, start=1))
    return num / (1 - beta ** t)


def test_average_matches_the_closed_form_and_leaves_updates_unchanged():
    beta = 0.8
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    base = optax.adam(0.1)
    chained = optax.chain(base, theta_average(beta))
    s_base, s_chain = base.init(params), chained.init(params)
    history = []
    for _ in range(7):
        g = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        u_base, s_base = base.update(g, s_base, params)
        u_chain, s_chain = chained.update(g, s_chain, params)
        for a, b in zip(jax.tree_util.tree_leaves(u_base), jax.tree_util.tree_leaves(u_chain)):
            np.testing.assert_array_equal(a, b)
        params = optax.apply_updates(params, u_chain)
        history.append(jax.tree_util.tree_map(np.asarray, params))
    got = averaged_theta(s_chain, beta)
    for k in params:
        want = _closed_form([h[k].astype(np.float64) for h in history], beta)
        np.testing.assert_allclose(np.asarray(got[k]), want, rtol=1e-5, atol=1e-6)
    first = averaged_theta(chained.update(g, chained.init(params), params)[1], beta)
    np.testing.assert_allclose(np.asarray(first["w"]), np.asarray(optax.apply_updates(params, base.update(
        g, base.init(params), params)[0])["w"]), rtol=1e-6)  # θ̄_1 = θ_1


@pytest.mark.parametrize("bad", [1.0, -0.5, 1.5, "0.9", True])
def test_bad_decay_is_a_clear_config_error(bad):
    with pytest.raises((ValueError, TypeError), match="theta_average"):
        TrainConfig(theta_average=bad)


def test_off_by_default_keeps_the_outer_state_layout():
    """0 adds nothing to the outer optimizer state, so runs saved before the option still resume."""
    theta = {"log_lr": jnp.zeros(())}
    off = make_outer_optimizer(TrainConfig()).init(theta)
    on = make_outer_optimizer(TrainConfig(theta_average=0.9)).init(theta)
    assert jax.tree_util.tree_structure(off) != jax.tree_util.tree_structure(on)
    plain = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)).init(theta)
    assert str(jax.tree_util.tree_structure(off)) == str(jax.tree_util.tree_structure(plain))
    with pytest.raises(ValueError, match="no θ average"):
        averaged_theta(off, 0.9)


def _run(out, outer_steps, resume=False):
    lopt = LearnableSGD(0.05)
    prob = InnerProblem(FixedTaskFamily(QuadraticTask(dim=4, condition_number=5.0)), lopt, ConstantSchedule(12))
    est = make_estimator("pes", prob, num_tasks=2, unroll_length=3, sigma=0.05, random_offsets=False)
    config = TrainConfig(optimizer="sgd", outer_steps=outer_steps, outer_lr=0.05, progress=False,
                         tensorboard=False, out=str(out), checkpoint_every=1, theta_average=0.7)
    return train(config, lopt=lopt, estimator=est, resume=resume)


def test_trainer_writes_the_average_of_its_own_theta_files_and_resumes_it_exactly(tmp_path):
    full = _run(tmp_path / "full", 6)
    thetas = [np.float64(load(tmp_path / "full" / f"theta_{s:08d}.lopt")[1]["log_lr"]) for s in range(1, 7)]
    assert len(set(thetas)) > 1  # θ moved
    want = _closed_form(thetas, 0.7)
    np.testing.assert_allclose(float(full.theta_average["log_lr"]), want, rtol=1e-5)
    assert latest_checkpoint(tmp_path / "full", AVERAGE_STEM).name == checkpoint_filename(6, AVERAGE_STEM)
    _, saved = load(latest_checkpoint(tmp_path / "full", AVERAGE_STEM))
    assert float(saved["log_lr"]) == float(full.theta_average["log_lr"])
    assert latest_checkpoint(tmp_path / "full").name == checkpoint_filename(6)  # θ̄ files are not θ files
    assert not (tmp_path / "full" / checkpoint_filename(0, AVERAGE_STEM)).exists()  # no average before a step

    _run(tmp_path / "split", 3)
    resumed = _run(tmp_path / "split", 6, resume=True)
    assert np.asarray(resumed.theta_average["log_lr"]).tobytes() == np.asarray(full.theta_average["log_lr"]).tobytes()
