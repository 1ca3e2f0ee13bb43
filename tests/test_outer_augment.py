"""Weight-reparameterization augmentation of taskset mixtures: each reset draws new scales, the
function (hence the taskset normalization) is unchanged, and a short meta-training run works."""
import jax
import numpy as np
import pytest

from outer_train import preset
from outer_train.build import build_estimator, build_lopt


def _cfg(**kw):
    return preset("taskset_mixture", optimizer="scheduled_adam", mixture_size=1, num_tasks=2,
                  unroll_length=4, trunc_length=8, outer_steps=2, **kw)


def test_reparam_members_keep_the_loss_and_vary_the_scale():
    cfg = _cfg(reparam="global", reparam_range=[0.01, 100.0])
    est = build_estimator(cfg, build_lopt(cfg))
    fam = est.members[0].problem.family
    base = fam.family.task
    c1, c2 = fam.sample(jax.random.PRNGKey(0)), fam.sample(jax.random.PRNGKey(1))
    s1, s2 = float(c1["scales"]), float(c2["scales"])
    assert s1 != s2 and 0.01 <= min(s1, s2) and max(s1, s2) <= 100.0
    t1 = fam.task_fn(c1)
    key = jax.random.PRNGKey(5)
    w = t1.init(key)
    batch = None if base.datasets is None else base.datasets.train.sample(jax.random.PRNGKey(2))
    theta = jax.tree.map(lambda a: a * s1, w)
    assert float(t1.loss(w, key, batch)) == pytest.approx(float(base.loss(theta, key, batch)), rel=1e-5)


def test_reparam_config_is_validated():
    with pytest.raises(ValueError, match="reparam"):
        _cfg(reparam="weird")
    with pytest.raises(ValueError, match="reparam_range"):
        _cfg(reparam="global", reparam_range=[10.0, 1.0])


@pytest.mark.slow
def test_meta_training_with_reparam_runs_finite(tmp_path):
    from outer_train import train

    cfg = _cfg(reparam="tensor", out=str(tmp_path / "run"), progress=False, tensorboard=False,
               checkpoint_every=2)
    result = train(cfg)
    assert result.step == 2
    leaves = jax.tree_util.tree_leaves(result.theta)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
