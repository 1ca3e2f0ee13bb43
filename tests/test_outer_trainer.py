"""The outer-training loop: exact resume after SIGKILL, NaN guards, config and CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt.learnable_hand import LearnableSGD
from outer_train import (
    ConstantSchedule,
    FixedTaskFamily,
    InnerProblem,
    TrainConfig,
    apply_overrides,
    make_estimator,
    preset,
    presets,
    train,
)
from outer_train.checkpointing import load_state
from outer_train.cli import main as cli_main
from tasks.base import Task

REPO = Path(__file__).resolve().parents[1]
RUN_ARGS = ["--preset", "quadratic_sgd", "--outer-steps", "10", "--checkpoint-every", "4",
            "--num-tasks", "3", "--unroll-length", "5", "--trunc-length", "12", "--no-progress"]

KILL_SCRIPT = """
import os, signal, sys
from outer_train.cli import resolve_config, _parser
from outer_train.trainer import train
import jax
args = _parser().parse_args(sys.argv[1:])
jax.config.update("jax_compilation_cache_dir", args.compile_cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
def cb(step, record):
    if step == 7:
        os.kill(os.getpid(), signal.SIGKILL)
train(resolve_config(args), callback=cb)
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _leaves(run_dir):
    with np.load(Path(run_dir) / "resume.npz") as data:
        return [data[k] for k in sorted(data.files) if k.startswith("leaf_")]


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    cache = str(tmp_path / "cache")
    a, b = tmp_path / "a", tmp_path / "b"
    run = [sys.executable, "-m", "learned_opt", "train"]
    subprocess.run(run + RUN_ARGS + ["--out", str(a), "--compile-cache", cache], check=True, env=_env(),
                   cwd=tmp_path, capture_output=True)
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *RUN_ARGS, "--out", str(b), "--compile-cache", cache],
                            env=_env(), cwd=tmp_path, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert json.loads((b / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 7
    subprocess.run(run + ["--resume", "--out", str(b), "--no-progress", "--compile-cache", cache], check=True,
                   env=_env(), cwd=tmp_path, capture_output=True)
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb) > 5
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
    import learned_opt
    _, theta_a = learned_opt.load(a)  # the newest θ of the run directory
    _, theta_b = learned_opt.load(b / "theta_00000010.lopt")
    assert np.asarray(theta_a["log_lr"]).tobytes() == np.asarray(theta_b["log_lr"]).tobytes()
    assert float(theta_a["log_lr"]) != float(np.log(np.float32(0.01)))  # θ moved
    ma = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in mb] == list(range(1, 11))
    assert [r["meta_loss"] for r in ma] == [r["meta_loss"] for r in mb]


class _NaNAfter(Task):
    """A quadratic whose loss becomes NaN after ``t`` loss evaluations (counted in model state)."""

    name = "nan_after"

    def __init__(self, t: int):
        self.t = t

    def init_with_state(self, key):
        return {"x": jax.random.normal(key, (3,))}, jnp.zeros((), jnp.int32)

    def loss_with_state(self, params, state, key, batch):
        loss = jnp.sum(params["x"] ** 2) * jnp.where(state >= self.t, jnp.nan, 1.0)
        return loss, state + 1


@pytest.mark.parametrize("kind", ["tbptt", "pes"])
def test_nan_task_never_makes_theta_nonfinite(kind, tmp_path):
    lopt = LearnableSGD(0.1)
    prob = InnerProblem(FixedTaskFamily(_NaNAfter(6)), lopt, ConstantSchedule(8))
    est = make_estimator(kind, prob, num_tasks=2, unroll_length=3, sigma=0.05, random_offsets=False)
    config = TrainConfig(optimizer="sgd", outer_steps=9, outer_lr=0.1, progress=False, out=str(tmp_path),
                         checkpoint_every=3)
    result = train(config, lopt=lopt, estimator=est)
    assert np.isfinite(float(result.theta["log_lr"]))
    assert float(result.theta["log_lr"]) != float(np.log(np.float32(0.1)))  # finite steps still applied
    if kind == "tbptt":  # gradients through NaN losses are NaN: dropped per task or per step
        assert sum(r["num_nonfinite"] for r in result.history) + result.num_dropped > 0
    state, _ = load_state(tmp_path, _template(config, lopt, est))
    for leaf in jax.tree_util.tree_leaves(state.theta) + jax.tree_util.tree_leaves(state.opt_state):
        assert np.all(np.isfinite(np.asarray(leaf)))


def _template(config, lopt, est):
    from outer_train.trainer import init_state, make_outer_optimizer
    return init_state(config, lopt, est, make_outer_optimizer(config))


def test_trainer_drops_nonfinite_meta_gradients():
    """An estimator that returns NaN on odd steps: those steps are not applied and are counted."""
    import optax

    from outer_train.trainer import make_outer_step

    def estimator(theta, state, key):
        bad = state % 2 == 1
        g = jax.tree_util.tree_map(lambda x: jnp.where(bad, jnp.nan, jnp.ones_like(x)), theta)
        return g, state + 1, {"meta_loss": jnp.float32(1.0)}

    from outer_train.trainer import TrainState
    theta = {"w": jnp.zeros(2)}
    opt = optax.sgd(0.5)
    st = TrainState(theta, opt.init(theta), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                    jax.random.PRNGKey(0), jnp.zeros((), jnp.int32))
    step = jax.jit(make_outer_step(estimator, opt))
    for _ in range(4):
        st, m = step(st)
    np.testing.assert_array_equal(np.asarray(st.theta["w"]), [-1.0, -1.0])  # 2 good steps of -0.5
    assert int(st.num_dropped) == 2


def test_config_overrides_files_and_errors(tmp_path):
    cfg = apply_overrides(preset("image_mlp"), ["task_kwargs.hidden_sizes=[64]", "sigma=0.003",
                                                "estimator=es", "time_budget=1.5"])
    assert cfg.task_kwargs["hidden_sizes"] == [64] and cfg.task_kwargs["batch_size"] == 128
    assert cfg.sigma == 0.003 and cfg.estimator == "es" and cfg.time_budget == 1.5
    path = tmp_path / "c.yaml"
    path.write_text("preset: quadratic\nnum_tasks: 4\ntask_kwargs: {dim: 20}\n")
    from outer_train import load_config
    loaded = load_config(str(path))
    assert loaded.num_tasks == 4 and loaded.task_kwargs == {"dim": 20} and loaded.optimizer == "mlp"
    (tmp_path / "c.json").write_text(json.dumps(loaded.to_dict()))
    assert load_config(str(tmp_path / "c.json")) == loaded
    with pytest.raises(ValueError, match="num_taks"):
        TrainConfig.from_dict({"num_taks": 3})
    with pytest.raises(ValueError, match="estimator"):
        apply_overrides(cfg, ["estimator=sgd"])
    with pytest.raises(ValueError, match="unroll_length"):
        TrainConfig(unroll_length=0)
    assert {"quadratic", "image_mlp", "taskset_mixture"} <= set(presets())


def test_cli_list_presets_and_bad_input(capsys):
    assert cli_main(["--list-presets"]) == 0
    assert "image_mlp" in capsys.readouterr().out
    assert cli_main(["--preset", "nope", "--out", "x"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert cli_main(["--preset", "quadratic", "--set", "outer_lr=-1", "--print-config"]) == 2
