"""`learned-opt run --quick` end to end: every output file, a table row per method and suite."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_run_quick_end_to_end(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, "-m", "learned_opt", "run", "--quick", "--budget", "2",
                           "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("report.md", "results.json", "checkpoint.lopt", "train/config.json",
                "train/metrics.jsonl"):
        assert (out / rel).is_file(), rel
    results = json.loads((out / "results.json").read_text())
    ev = results["evaluation"]
    assert set(ev["summary"]) == {"indist", "ood"}
    assert results["training"]["outer_steps"] > 0
    report = (out / "report.md").read_text()
    for suite, res in ev["suites"].items():
        assert (out / "eval" / f"{suite}_curves.png").stat().st_size > 1000
        assert (out / "eval" / f"{suite}_final.png").stat().st_size > 1000
        names = [m["name"] for m in res["methods"]] + [b["name"] for b in res["baselines"]]
        assert names == ["learned-scheduled_adam", "adam", "adam_cosine", "sgdm", "L-BFGS-B"]
        assert set(ev["summary"][suite]["learned-scheduled_adam"]) >= {"wins", "ties", "losses", "win_rate_ci95"}
        section = report.split(f"## Suite `{suite}`")[1]
        for name in names:
            assert f"| {name} |" in section, (suite, name)
    assert "Quality check" in report and "| indist | adam |" in report
    # the checkpoint is a loadable learned optimizer
    import learned_opt
    lopt, theta = learned_opt.load(out / "checkpoint.lopt")
    assert type(lopt).__name__ == "ScheduledAdamLOpt" and lopt.trust_features
    # a second run on the same directory says it resumes, and from which step
    proc2 = subprocess.run([sys.executable, "-m", "learned_opt", "run", "--quick", "--budget", "1",
                            "--out", str(out), "--no-progress"],
                           capture_output=True, text=True, env=env, timeout=1800)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "resuming meta-training" in proc2.stderr
    assert "resumed from step" in (out / "report.md").read_text()


def test_run_rejects_bad_budget(capsys):
    from eval.main_job import main
    assert main(["--budget", "0", "--out", "/tmp/never"]) == 2
    assert "--budget" in capsys.readouterr().err


@pytest.mark.parametrize("quick", [False, True])
def test_run_config_is_the_recipe_with_trust_inputs(quick, tmp_path):
    """The embedded default trains ScheduledAdamLOpt with the trust-ratio inputs (the measured
    difference between the two is in docs/ablations.md); --optimizer swaps in that optimizer's own
    defaults, --set reaches the optimizer's options."""
    import argparse

    from eval.main_job import train_config
    from learned_opt.registry import get_optimizer
    from learned_opt.scheduled_adam import ScheduledAdamLOpt

    args = argparse.Namespace(quick=quick, optimizer=None, estimator="pes", seed=0, no_progress=True, set=[])
    cfg = train_config(args, 1.0, str(tmp_path))
    assert cfg.optimizer == "scheduled_adam" and cfg.optimizer_kwargs["trust_features"] is True
    lopt = get_optimizer(cfg.optimizer, **cfg.optimizer_kwargs)
    assert isinstance(lopt, ScheduledAdamLOpt) and lopt.trust_features
    assert cfg.task_grad_clip == 1.0  # per-task clipping (docs/ablations.md, "The default run")
    if not quick:  # the job ships the θ average (docs/ablations.md, "The default run")
        assert cfg.theta_average == 0.998
    from outer_train.build import build_estimator
    if quick:  # the clip reaches the estimator that meta-training builds
        assert build_estimator(cfg, lopt).task_grad_clip == 1.0
    off = train_config(argparse.Namespace(**{**vars(args), "set": ["optimizer_kwargs.trust_features=false"]}),
                       1.0, str(tmp_path))
    assert off.optimizer_kwargs["trust_features"] is False
    mlp = train_config(argparse.Namespace(**{**vars(args), "optimizer": "mlp"}), 1.0, str(tmp_path))
    assert mlp.optimizer == "mlp" and mlp.optimizer_kwargs == {}


def test_run_evaluates_the_theta_average_when_the_config_keeps_one(tmp_path):
    """With ``theta_average`` > 0 the job evaluates and ships the newest θ̄ file, else the newest θ."""
    import argparse

    from eval.main_job import evaluated_checkpoint, train_config

    for name in ("theta_00000025.lopt", "theta_00000050.lopt", "theta_average_00000025.lopt",
                 "theta_average_00000050.lopt"):
        (tmp_path / name).write_bytes(b"")
    args = argparse.Namespace(quick=True, optimizer=None, estimator="pes", seed=0, no_progress=True, set=[])
    plain = train_config(args, 1.0, str(tmp_path))
    assert os.path.basename(evaluated_checkpoint(str(tmp_path), plain)) == "theta_00000050.lopt"
    averaged = train_config(argparse.Namespace(**{**vars(args), "set": ["theta_average=0.99"]}), 1.0, str(tmp_path))
    assert os.path.basename(evaluated_checkpoint(str(tmp_path), averaged)) == "theta_average_00000050.lopt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="theta_average"):
        evaluated_checkpoint(str(tmp_path / "empty"), averaged)
