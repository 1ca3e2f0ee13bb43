"""Tests of tasksets: samplers, build_task, ids, shape signatures, named tasksets, normalization."""
from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasksets
from tasksets import baselines
from tasksets.normalization import normalize_with

REQUIRED_FAMILIES = ["mlp_family", "conv_family", "mlp_ae_family", "mlp_vae_family",
                     "quadratic_family", "synthetic_family", "char_rnn_lm_family"]
ALL_FAMILIES = tasksets.families()


def _first(cfg: dict):
    task = tasksets.build_task(cfg)
    params = task.init(jax.random.PRNGKey(0))
    batch = None if task.datasets is None else next(iter(task.datasets.train))
    return task, params, batch


def first_loss(cfg: dict) -> float:
    """Loss of a freshly built task at init(PRNGKey(0)) on its first training batch (eager)."""
    task, params, batch = _first(cfg)
    return float(task.loss(params, jax.random.PRNGKey(1), batch))


# ----------------------------------------------------------------------------------------------
# registry and samplers

def test_required_families_registered():
    missing = [f for f in REQUIRED_FAMILIES if f not in ALL_FAMILIES]
    assert not missing, f"families not registered: {missing}"


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_sampling_is_deterministic_and_json_round_trips(family):
    for seed in (0, 7, 123456):
        cfg = tasksets.sample_config(family, seed)
        assert cfg == tasksets.sample_config(family, seed)
        assert cfg["family"] == family
        text = json.dumps(cfg)
        back = json.loads(text)
        assert back == cfg
        assert tasksets.task_id(back) == tasksets.task_id(cfg)
        assert json.dumps(back) == text
        assert tasksets.validate_config(back) == cfg


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_different_seeds_give_different_cfgs(family):
    ids = {tasksets.task_id(tasksets.sample_config(family, s)) for s in range(12)}
    assert len(ids) == 12


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_build_first_loss_finite_deterministic_and_seed_dependent(family):
    cfg0 = tasksets.sample_config(family, 0)
    l0 = first_loss(cfg0)
    assert math.isfinite(l0)
    # a second, independent build from a JSON copy reproduces the loss exactly
    assert first_loss(json.loads(json.dumps(cfg0))) == l0
    l1 = first_loss(tasksets.sample_config(family, 1))
    assert math.isfinite(l1)
    assert l1 != l0
    # the gradient at init is finite and not identically zero
    task, params, batch = _first(cfg0)
    grads = jax.jit(jax.grad(task.loss))(params, jax.random.PRNGKey(1), batch)
    leaves = jax.tree_util.tree_leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_sample_config_space_overrides():
    cfg = tasksets.sample_config("mlp_family", 5, datasets=["digits_16x16"], num_layers=[2, 2],
                                 width=[40, 40])
    assert (cfg["dataset"], cfg["image_size"]) == ("digits", 16)
    assert cfg["hidden_sizes"] == [40, 40]
    with pytest.raises(ValueError, match="no_such_option"):
        tasksets.sample_config("mlp_family", 0, no_such_option=3)
    with pytest.raises(ValueError, match="unknown family"):
        tasksets.sample_config("nope_family", 0)
    with pytest.raises(TypeError, match="seed"):
        tasksets.sample_config("mlp_family", 1.5)


# ----------------------------------------------------------------------------------------------
# build_task validation

def test_build_task_rejects_malformed_cfgs():
    cfg = tasksets.sample_config("quadratic_family", 0)
    with pytest.raises(TypeError):
        tasksets.build_task([("family", "quadratic_family")])
    with pytest.raises(ValueError, match="'family'"):
        tasksets.build_task({k: v for k, v in cfg.items() if k != "family"})
    with pytest.raises(ValueError, match="unknown family"):
        tasksets.build_task({**cfg, "family": "no_family"})
    with pytest.raises(ValueError, match="'dim'"):
        tasksets.build_task({k: v for k, v in cfg.items() if k != "dim"})
    with pytest.raises(ValueError, match="'extra_key'"):
        tasksets.build_task({**cfg, "extra_key": 1})
    with pytest.raises(ValueError, match="dim"):
        tasksets.build_task({**cfg, "dim": 0})
    mlp = tasksets.sample_config("mlp_family", 0)
    with pytest.raises(ValueError, match="activation"):
        tasksets.build_task({**mlp, "activation": "not_an_activation"})


def test_task_id_is_order_and_type_independent():
    cfg = tasksets.sample_config("mlp_family", 4)
    reordered = dict(reversed(list(cfg.items())))
    with_tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    assert tasksets.task_id(reordered) == tasksets.task_id(cfg)
    assert tasksets.task_id(with_tuples) == tasksets.task_id(cfg)
    assert tasksets.task_id(cfg).startswith("mlp_family-")
    changed = {**cfg, "batch_size": cfg["batch_size"] + 1}
    assert tasksets.task_id(changed) != tasksets.task_id(cfg)


# ----------------------------------------------------------------------------------------------
# shape signatures

def _shapes(cfg):
    task = tasksets.build_task(cfg)
    params = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    p = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), params)
    if task.datasets is None:
        return p, None
    batch = next(iter(task.datasets.train))
    return p, {k: (v.shape, str(v.dtype)) for k, v in batch.items()}


def test_equal_shape_signature_means_equal_shapes():
    # a narrow space so that several cfgs share an architecture but differ in other values
    cfgs = [tasksets.sample_config("mlp_family", s, datasets=["digits_8x8"], num_layers=[1, 1],
                                   width=[16, 17], batch_sizes=[32]) for s in range(10)]
    cfgs += [tasksets.sample_config("quadratic_family", s, dim=[3, 4]) for s in range(6)]
    cfgs += [tasksets.sample_config("synthetic_family", s, problems=["bowl", "rosenbrock"])
             for s in range(8)]
    groups = tasksets.group_by_shape(cfgs)
    assert sum(len(g) for g in groups.values()) == len(cfgs)
    multi = [g for g in groups.values() if len(g) > 1]
    assert len(multi) >= 4
    for group in multi:
        assert len({tasksets.task_id(c) for c in group}) == len(group)  # distinct tasks
        ref = _shapes(group[0])
        for cfg in group[1:]:
            assert _shapes(cfg) == ref
    # different signatures of one family really differ in shape
    quad = [g[0] for g in groups.values() if g[0]["family"] == "quadratic_family"]
    assert len(quad) == 2 and _shapes(quad[0]) != _shapes(quad[1])


def test_group_members_can_be_vmapped():
    """Stacked params of one shape group evaluate under vmap like the unbatched losses."""
    cfgs = [tasksets.sample_config("quadratic_family", s, dim=[5, 5], noise_prob=0.0)
            for s in range(4)]
    (group,) = tasksets.group_by_shape(cfgs).values()
    tasks_ = [tasksets.build_task(c) for c in group]
    params = [t.init(jax.random.PRNGKey(i)) for i, t in enumerate(tasks_)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params)
    branches = [lambda p, t=t: t.loss(p, jax.random.PRNGKey(0), None) for t in tasks_]
    vm = jax.vmap(lambda i, p: jax.lax.switch(i, branches, p))(jnp.arange(len(tasks_)), stacked)
    direct = jnp.stack([t.loss(p, jax.random.PRNGKey(0), None) for t, p in zip(tasks_, params)])
    np.testing.assert_allclose(np.asarray(vm), np.asarray(direct), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# normalization

def test_normalize_maps_init_to_one_best_to_zero_and_clips():
    stats = {"loss_init": 3.0, "loss_best": 0.5}
    assert tasksets.normalize(None, 3.0, stats=stats) == pytest.approx(1.0)
    assert tasksets.normalize(None, 0.5, stats=stats) == pytest.approx(0.0)
    assert tasksets.normalize(None, 1.75, stats=stats) == pytest.approx(0.5)
    assert tasksets.normalize(None, 100.0, stats=stats) == 2.0
    assert tasksets.normalize(None, -100.0, stats=stats) == -2.0
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert tasksets.normalize(None, bad, stats=stats) == 2.0
    arr = np.array([3.0, 0.5, np.nan, 1e9, -1e9, 1.75])
    out = tasksets.normalize(None, arr, stats=stats)
    np.testing.assert_allclose(out, [1.0, 0.0, 2.0, 2.0, -2.0, 0.5], rtol=1e-6)
    jitted = jax.jit(lambda x: normalize_with(x, 3.0, 0.5))(jnp.asarray(arr, jnp.float32))
    np.testing.assert_allclose(np.asarray(jitted), [1.0, 0.0, 2.0, 2.0, -2.0, 0.5], rtol=1e-6)


def test_normalize_errors():
    cfg = tasksets.sample_config("quadratic_family", 987654)
    with pytest.raises(ValueError, match="no normalization statistics"):
        tasksets.normalize(cfg, 1.0)
    with pytest.raises(ValueError, match="not built by"):
        tasksets.normalize(object(), 1.0)
    with pytest.raises(ValueError, match="loss_best"):
        tasksets.normalize(None, 1.0, stats={"loss_init": 1.0})
    with pytest.raises(ValueError, match="degenerate"):
        tasksets.normalize(None, 1.0, stats={"loss_init": 1.0, "loss_best": 1.0})


def test_compute_norm_stats_on_quadratic_matches_independent_values():
    cfg = tasksets.sample_config("quadratic_family", 11, dim=[6, 6], condition_number=[10, 10],
                                 noise_prob=0.0)
    task = tasksets.build_task(cfg)
    stats = tasksets.compute_norm_stats(cfg, num_steps=60, seeds=(0, 1))
    # loss_init: mean of the exact objective 1/2 x^T A x - b^T x + c at the two inits
    inits = []
    for seed in (0, 1):
        k_init, _ = jax.random.split(jax.random.PRNGKey(seed))
        x = np.asarray(task.init(k_init)["x"], np.float64)
        inits.append(0.5 * x @ task.A @ x - task.b @ x + task.c)
    assert stats["loss_init"] == pytest.approx(np.mean(inits), rel=1e-4)
    # the minimum of the quadratic is exactly 0; L-BFGS (full-batch task) gets there
    assert stats["lbfgs"] is not None
    assert -1e-3 <= stats["loss_best"] <= 1e-3 * stats["loss_init"]
    assert tasksets.normalize(cfg, stats["loss_init"], stats=stats) == pytest.approx(1.0)
    assert stats["task_id"] == tasksets.task_id(cfg)
    assert len(stats["adam"]["learning_rates"]) >= 7
    json.dumps(stats, allow_nan=False)


def test_adam_sweep_matches_an_unvectorized_optax_run():
    """The vmapped/scanned sweep equals a plain Python loop with optax.adam (same keys)."""
    import optax

    cfg = tasksets.sample_config("quadratic_family", 12, dim=[4, 4], noise_prob=1.0,
                                 noise_std=[0.1, 0.1])
    task = tasksets.build_task(cfg)
    lr, steps = 0.03, 10
    out = baselines._adam_sweep(task, num_steps=steps, learning_rates=[1e-3, lr], seeds=[3],
                                num_eval_points=2, eval_batch=None)
    k_init, k = jax.random.split(jax.random.PRNGKey(3))
    params = task.init(k_init)
    opt = optax.adam(lr)
    state = opt.init(params)
    expected = [float(task.expected_loss(params))]
    for t in range(steps):
        k, _, kl = jax.random.split(k, 3)
        g = jax.grad(task.loss)(params, kl, None)
        upd, state = opt.update(g, state, params)
        params = optax.apply_updates(params, upd)
        if (t + 1) % 5 == 0:
            expected.append(float(task.expected_loss(params)))
    np.testing.assert_allclose(out["curves"][1, 0], expected, rtol=1e-4)
    assert out["steps"] == [0, 5, 10]


# ----------------------------------------------------------------------------------------------
# named tasksets and stored statistics

NAMED = ["train", "heldout", "heldout2", "indist", "ood_family", "ood_size", "ood_dataset", "ood_horizon",
         "ood_horizon10"]


def test_named_tasksets_exist_with_horizons():
    names = tasksets.taskset_names()
    assert all(n in names for n in NAMED)
    train_h = tasksets.taskset_horizon("train")
    assert tasksets.taskset_horizon("ood_horizon") == 5 * train_h
    train_fams = {c["family"] for c in tasksets.load_taskset("train")}
    assert {"mlp_family", "quadratic_family"} <= train_fams
    assert train_fams == {c["family"] for c in tasksets.load_taskset("heldout")}
    assert not train_fams & {c["family"] for c in tasksets.load_taskset("ood_family")}
    assert any(c["dataset"] == "digits" and c["image_size"] is None
               for c in tasksets.load_taskset("train") if c["family"] == "mlp_family")
    # no task shared between training and the evaluation tasksets
    train_ids = {tasksets.task_id(c) for c in tasksets.load_taskset("train")}
    for name in NAMED[1:]:
        assert not train_ids & {tasksets.task_id(c) for c in tasksets.load_taskset(name)}


def test_ood_splits_are_out_of_distribution():
    train = tasksets.load_taskset("train")
    train_data = {(c["dataset"], c["image_size"]) for c in train if "dataset" in c}
    for c in tasksets.load_taskset("ood_dataset"):
        assert (c["dataset"], c["image_size"]) not in train_data
    max_width = max(max(c["hidden_sizes"]) for c in train if c["family"] == "mlp_family")
    max_depth = max(len(c["hidden_sizes"]) for c in train if c["family"] == "mlp_family")
    for c in tasksets.load_taskset("ood_size"):
        if c["family"] == "mlp_family":
            assert max(c["hidden_sizes"]) > max_width or len(c["hidden_sizes"]) > max_depth


@pytest.mark.parametrize("name", NAMED)
def test_frozen_taskset_matches_regeneration(name):
    """A code change that alters sampling makes the frozen files disagree with fresh samples."""
    frozen = tasksets.load_taskset_doc(name)
    fresh = tasksets.freeze_taskset(name, write=False)
    assert frozen["horizon"] == fresh["horizon"]
    assert frozen["spec"] == fresh["spec"]
    assert [t["cfg"] for t in frozen["tasks"]] == [t["cfg"] for t in fresh["tasks"]]
    assert [t["task_id"] for t in frozen["tasks"]] == [tasksets.task_id(t["cfg"]) for t in frozen["tasks"]]


def test_freeze_taskset_writes_and_loads(tmp_path):
    spec = {"horizon": 30, "members": [{"family": "quadratic_family", "seed_start": 5, "count": 3,
                                        "space": {"dim": [2, 3]}}]}
    doc = tasksets.freeze_taskset("tiny", spec, directory=tmp_path)
    cfgs = tasksets.load_taskset("tiny", directory=tmp_path)
    assert cfgs == [tasksets.sample_config("quadratic_family", s, dim=[2, 3]) for s in (5, 6, 7)]
    assert doc["horizon"] == tasksets.taskset_horizon("tiny", directory=tmp_path) == 30
    with pytest.raises(ValueError, match="unknown taskset"):
        tasksets.load_taskset("nope", directory=tmp_path)
    with pytest.raises(ValueError, match="horizon"):
        tasksets.freeze_taskset("bad", {"members": []}, write=False)


@pytest.mark.parametrize("name", NAMED)
def test_stored_stats_cover_every_task(name):
    stats = tasksets.load_norm_stats(name)
    cfgs = tasksets.load_taskset(name)
    assert stats["meta"]["num_steps"] == tasksets.taskset_horizon(name)
    assert len(stats["meta"]["learning_rates"]) >= 7
    for cfg in cfgs:
        entry = stats["tasks"].get(tasksets.task_id(cfg))
        assert entry is not None, f"{name}: no stats for {tasksets.task_id(cfg)}"
        assert math.isfinite(entry["loss_init"]) and math.isfinite(entry["loss_best"])
        assert entry["loss_best"] < entry["loss_init"]
        assert tasksets.normalize(cfg, entry["loss_init"]) == pytest.approx(1.0)
        assert tasksets.normalize(cfg, entry["loss_best"]) == pytest.approx(0.0, abs=1e-9)


def test_normalize_finds_stats_through_a_built_task():
    cfg = tasksets.load_taskset("train")[0]
    entry = tasksets.lookup_stats(cfg)
    task = tasksets.build_task(cfg)
    mid = 0.5 * (entry["loss_init"] + entry["loss_best"])
    assert tasksets.normalize(task, mid) == pytest.approx(0.5)
    assert tasksets.normalize(task, mid, taskset="train") == pytest.approx(0.5)
