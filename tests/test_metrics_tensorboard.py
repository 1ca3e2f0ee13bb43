"""TensorBoard event files out of the box: outer training writes its curves to ``<out>/tb``;
``write_scalars`` writes evaluation curves; resume purges the points after the checkpoint."""
from __future__ import annotations

import numpy as np
import pytest

from outer_train.metrics_log import MetricsLogger, read_metrics, read_scalars, write_scalars


def test_tensorboardx_is_installed_with_the_default_dependencies():
    import tensorboardX  # noqa: F401  (a dependency in pyproject: the writer is never skipped)
    logger = MetricsLogger(None)
    assert not logger.tensorboard_enabled


def test_outer_training_writes_event_files(tmp_path):
    from learned_opt import LearnableSGD
    from outer_train import ConstantSchedule, FixedTaskFamily, InnerProblem, TrainConfig, make_estimator, train
    from tasks.quadratic import QuadraticTask

    lopt = LearnableSGD(0.1)
    prob = InnerProblem(FixedTaskFamily(QuadraticTask(dim=4)), lopt, ConstantSchedule(6))
    est = make_estimator("pes", prob, num_tasks=2, unroll_length=3, sigma=0.05, random_offsets=False)
    config = TrainConfig(optimizer="sgd", outer_steps=4, outer_lr=0.1, progress=False, out=str(tmp_path),
                         checkpoint_every=2)
    train(config, lopt=lopt, estimator=est)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    scalars = read_scalars(tmp_path / "tb")
    records = read_metrics(tmp_path)
    numeric = {k for k, v in records[0].items() if k != "step" and isinstance(v, (int, float))
               and not isinstance(v, bool)}
    assert numeric and numeric <= set(scalars)
    for key in numeric:  # the event file holds exactly what metrics.jsonl holds
        want = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
        got = scalars[key]
        assert [s for s, _ in got] == [s for s, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)


def test_resume_purges_points_after_the_checkpoint(tmp_path):
    log = MetricsLogger(tmp_path)
    for step in range(1, 6):
        log.log({"step": step, "meta_loss": float(step)})
    log.close()
    log = MetricsLogger(tmp_path, resume_step=3)  # crashed after step 5, checkpoint at step 3
    for step in range(4, 7):
        log.log({"step": step, "meta_loss": 10.0 * step})
    log.close()
    assert read_scalars(tmp_path / "tb")["meta_loss"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0),
                                                          (5, 50.0), (6, 60.0)]
    assert [r["meta_loss"] for r in read_metrics(tmp_path)] == [1.0, 2.0, 3.0, 40.0, 50.0, 60.0]


def test_write_scalars_for_evaluation_curves(tmp_path):
    write_scalars(tmp_path / "adam", "eval/loss", [3.0, 2.0, 1.5])
    write_scalars(tmp_path / "adam", "eval/acc", np.array([0.25, 0.5]), steps=[10, 20])
    write_scalars(tmp_path / "lopt", "eval/loss", [2.5, 1.0])
    assert read_scalars(tmp_path / "adam") == {"eval/loss": [(0, 3.0), (1, 2.0), (2, 1.5)],
                                               "eval/acc": [(10, 0.25), (20, 0.5)]}
    assert read_scalars(tmp_path / "lopt") == {"eval/loss": [(0, 2.5), (1, 1.0)]}
    assert len(read_scalars(tmp_path)["eval/loss"]) == 5  # `tensorboard --logdir tmp_path` sees both runs


@pytest.mark.parametrize("kwargs, match", [
    ({"tag": "", "values": [1.0]}, "tag"),
    ({"tag": "a", "values": [1.0, 2.0], "steps": [0]}, "steps has 1 entries but values has 2"),
    ({"tag": "a", "values": [1.0], "steps": [0.5]}, "steps must be integers"),
])
def test_write_scalars_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_scalars(tmp_path, **kwargs)
