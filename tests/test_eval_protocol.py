"""The evaluation protocol against closed forms and constructed cases: ties are ties, a clearly
better optimizer wins, selection and report use different data, noise is off at evaluation."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from eval import metrics, scoring
from eval.baselines import hand_sweep
from eval.methods import FirstOrderMethod
from eval.pipeline import run_suite
from eval.protocol import Protocol
from eval.runner import prepare_task, run_method
from eval.suites import custom_suite
from learned_opt.inner_loop import LEARNING_RATE_GRID
from tasks.base import Datasets, Split, Task

FAST = Protocol(baselines=("adam", "adam_cosine", "L-BFGS-B"))


def _converging_suite():
    """The smoke tasks with a horizon long enough for tuned Adam to converge on the quadratic: a
    grid entry can then beat the tuned setting only through selection noise, which held-out
    selection does not rule out in general (on 2 seeds of a 40-step quadratic, the rate chosen on
    the selection seeds can trail another grid rate on the reported seeds)."""
    from eval.suites import Suite, _fixed

    return Suite("converging", 0, "smoke tasks, quadratic at 150 steps",
                 (_fixed("tasks.quadratic:QuadraticTask", 150, name="q10", dim=10, condition_number=20.0),
                  _fixed("tasks.regression:LogisticRegressionTask", 40, name="logreg16")), seeds=2)


@pytest.fixture(scope="module")
def smoke_results():
    """An exact copy of tuned Adam, every fixed Adam rate of the grid, and a NaN-producing method."""
    nan_opt = optax.GradientTransformation(lambda p: optax.EmptyState(),
                                           lambda g, s, p=None: (jax.tree.map(lambda x: x * jnp.nan, g), s))
    methods = [hand_sweep("adam", name="adam_copy"),
               *[f"adam@{lr:g}" for lr in LEARNING_RATE_GRID],
               FirstOrderMethod(name="nan", make=lambda hp, n: nan_opt)]
    return run_suite(methods, _converging_suite(), seeds=2, protocol=FAST)


def test_identical_optimizer_ties_everywhere_with_speedup_one(smoke_results):
    s = smoke_results["summary"]["adam_copy"]
    assert (s["wins"], s["ties"], s["losses"]) == (0, 2, 0)
    for t in smoke_results["tasks"]:
        assert t["comparisons"]["adam_copy"]["adam"]["speedup"] == 1.0
        assert t["runs"]["adam_copy"]["hparams"] == t["runs"]["adam"]["hparams"]


def test_fixed_grid_rate_never_wins_against_tuned_adam(smoke_results):
    for lr in LEARNING_RATE_GRID:
        s = smoke_results["summary"][f"adam@{lr:g}"]
        assert s["wins"] == 0, (lr, s)


def test_nan_runs_are_counted_as_diverged_and_scored_two(smoke_results):
    s = smoke_results["summary"]["nan"]
    assert s["diverged"] == s["runs"] == 4
    assert s["losses"] == 2 and s["mean_norm_final_test"] == 2.0
    for t in smoke_results["tasks"]:
        assert all(sd["norm_final_test"] == 2.0 and sd["diverged"] for sd in t["runs"]["nan"]["seeds"])


def _newton(task):
    a_inv = jnp.asarray(np.linalg.inv(task.A), jnp.float32)

    def update(g, s, p=None):
        return {"x": -a_inv @ g["x"]}, s

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


def test_exact_newton_on_quadratics_wins_every_task():
    from tasks.quadratic import QuadraticTask

    suite = custom_suite("quads", [("q1", "tasks.quadratic:QuadraticTask", 60)], seeds=2)
    task = QuadraticTask()  # the suite builds the same default task
    newton = FirstOrderMethod(name="newton", make=lambda hp, n: _newton(task))
    res = run_suite([newton], suite, protocol=FAST)
    s = res["summary"]["newton"]
    assert s["wins"] == 1 and s["losses"] == 0
    for b, sb in s["by_baseline"].items():
        assert sb["wins"] == 1, b
    assert res["tasks"][0]["comparisons"]["newton"]["adam"]["speedup"] > 10


def _run(x, loss):
    return scoring.RunScore(method="m", kind="optax", hparams={}, selected_on="single_setting",
                            selection_scores=[], seeds=[scoring.SeedScore(0, loss[-1], loss[-1], 0, 0, 0, False)],
                            median_x=np.asarray(x, float), median_test=metrics.lower_envelope(loss))


def test_verdict_thresholds_change_counts_as_documented():
    x = np.arange(11.0)
    base = _run(x, np.linspace(1.0, 0.0, 11))
    norm = scoring.NormStats(init=1.0, best=0.0, best_method="b", degenerate=False)
    faster = _run(x, np.r_[np.linspace(1.0, 0.0, 9), 0.0, 0.0])  # reaches 0 at step 8: speed-up 1.25
    p = Protocol()
    c = scoring.compare(faster, base, norm, p)
    assert c.speedup == pytest.approx(1.25) and c.outcome == "win"
    assert scoring.compare(faster, base, norm, p.replace(win_speedup=1.3)).outcome == "tie"
    slower = _run(x, np.linspace(1.0, 0.3, 11))  # ends 0.3 above the baseline: far outside the band
    assert scoring.compare(slower, base, norm, p).outcome == "loss"
    assert scoring.compare(slower, base, norm, p.replace(tie_band=0.5)).outcome == "tie"
    early = _run(x, np.r_[np.linspace(1.0, 0.0, 6), [0.0] * 5])  # a baseline done by step 5
    close = _run(x, np.linspace(1.0, 0.005, 11))  # half as fast, but ends within 1% of the range
    c = scoring.compare(close, early, norm, p)
    assert c.speedup == pytest.approx(0.4975) and c.outcome == "tie"
    assert scoring.compare(close, early, norm, p.replace(tie_band=0.001)).outcome == "loss"
    # fast but ending worse than the band: a tie, never a win
    fast_then_worse = _run(x, np.r_[np.linspace(1.0, 0.0, 6), [0.0] * 5])
    worse_final = scoring.RunScore(**{**fast_then_worse.__dict__,
                                      "seeds": [scoring.SeedScore(0, 0.5, 0.5, 0, 0, 0, False)]})
    assert scoring.compare(worse_final, base, norm, p).outcome == "tie"


def test_speedup_target_is_floored_at_the_band_so_float_noise_cannot_decide():
    """Two runs of the same convergent curve that differ only below the band (1e-7 of the range,
    after both have converged): with the band floor the speed-up is exactly 1 (a tie); B's best
    alone as the target turns the last bits into a win or a loss."""
    x = np.arange(101.0)
    curve = np.exp(-x / 5.0)  # within 1% of the range (0.01) from x = 23
    noise = 1e-7 * np.random.default_rng(0).standard_normal(101) * (x > 40)
    norm = scoring.NormStats(init=1.0, best=0.0, best_method="b", degenerate=False)
    base, twin = _run(x, curve), _run(x, curve + noise)
    band = scoring.compare(twin, base, norm, Protocol())
    assert band.speedup == pytest.approx(1.0, abs=1e-6) and band.outcome == "tie"
    old = scoring.compare(twin, base, norm, Protocol(speedup_target="baseline_best"))
    assert old.speedup > 1.1 or old.speedup < 1 / 1.1  # decided by the 1e-7 noise
    # a real speed difference in reaching the band is still a win: twice as fast to 1%
    fast = _run(x, np.exp(-x / 2.5))
    c = scoring.compare(fast, base, norm, Protocol())
    assert c.speedup == pytest.approx(2.0, rel=1e-2) and c.outcome == "win"  # up to linear interpolation
    with pytest.raises(ValueError, match="speedup_target"):
        Protocol(speedup_target="best")


def test_wilson_interval_textbook_and_scipy():
    lo, hi = metrics.wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the textbook example: 8 of 10
    for k, n in ((0, 32), (5, 32), (32, 32), (1, 8)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert metrics.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(0).normal(0.3, 0.1, 40)
    m, lo, hi = metrics.bootstrap_mean_ci(v, seed=1)
    assert lo < m < hi and (m, lo, hi) == metrics.bootstrap_mean_ci(v, seed=1)
    half_t = stats.t.ppf(0.975, 39) * v.std(ddof=1) / math.sqrt(40)  # close to the t interval
    assert hi - lo == pytest.approx(2 * half_t, rel=0.2)


class _ShiftTask(Task):
    """``loss(w) = mean((w - x)^2)``: training pulls ``w`` from 0 toward 1; ``inner_valid``
    rewards stopping at 0.3, ``test`` at 0.9 -- so the two objectives prefer different rates."""

    name = "shift"

    def __init__(self):
        def split(v, name):
            return Split({"x": np.full((8, 1), v, np.float32)}, 8, name=name)

        self.datasets = Datasets(split(1.0, "train"), split(0.3, "inner_valid"), split(0.5, "outer_valid"),
                                 split(0.9, "test"))

    @property
    def full_batch(self):
        return True

    def init(self, key):
        return {"w": jnp.zeros(1)}

    def loss(self, params, key, batch):
        return jnp.mean((params["w"] - batch["x"]) ** 2)


def test_selection_uses_inner_valid_and_report_uses_test():
    task = _ShiftTask()
    rates = (0.01, 0.03, 0.1)
    run = run_method(task, hand_sweep("adam", rates), 10, seeds=[0])
    finals = {obj: [run.curves[g][0].objective(obj)[-1] for g in range(3)] for obj in ("valid", "test")}
    assert int(np.argmin(finals["valid"])) != int(np.argmin(finals["test"]))  # the construction works
    assert run.selected_on == "inner_valid"
    assert run.hparams["learning_rate"] == rates[int(np.argmin(finals["valid"]))]
    res = run_suite([hand_sweep("adam", rates, name="a2")], custom_suite("s", []) if False else _shift_suite(),
                    protocol=Protocol(baselines=("adam",), learning_rates=rates), seeds=[0])
    rec = res["tasks"][0]["runs"]["adam"]
    assert rec["selected_on"] == "inner_valid" and res["tasks"][0]["splits"]["report_test"] == "test"
    assert rec["final_test"] == pytest.approx(finals["test"][int(np.argmin(finals["valid"]))])
    assert rec["final_test"] > min(finals["test"])  # reported on test, not chosen on it


def _shift_suite():
    from eval.suites import Suite, SuiteTask

    class _S(Suite):
        def resolve(self, size=None):
            return [SuiteTask(name="shift", group="fixed", num_steps=10, build=_ShiftTask,
                              task_id="fixed:shift", config={})]

    return _S("shift", 0, "constructed", (), seeds=1)


def test_data_free_tasks_select_on_separate_seeds():
    from tasks.quadratic import QuadraticTask

    run = run_method(QuadraticTask(dim=5), hand_sweep("adam", (0.01, 0.1)), 20, seeds=[0, 1])
    assert run.selected_on == "separate_seeds"
    assert [c.seed for c in run.selected] == [0, 1]  # the selection seeds are never reported


def test_noisy_quadratic_best_is_the_closed_form_expected_optimum():
    from tasks.quadratic import QuadraticTask

    task = QuadraticTask(dim=8, condition_number=30.0, noise_std=0.5)
    assert not task.full_batch
    _, f_star = task.optimum()
    suite = custom_suite("noisy", [("noisy", "tasks.quadratic:QuadraticTask", 40)])
    runs = {}
    setup = prepare_task(task, 60)
    for name in ("adam", "L-BFGS-B"):
        runs[name] = run_method(task, name, 60, seeds=[0, 1], setup=setup)
    norm = scoring.norm_stats(runs, ["adam", "L-BFGS-B"], "test")
    assert norm.best_method == "L-BFGS-B"
    assert norm.best == pytest.approx(f_star, abs=1e-5 * norm.init)
    # first-order methods are scored on the expected loss too: noise-free records
    c = runs["adam"].selected[0]
    p0 = task.init(jax.random.split(jax.random.PRNGKey(0))[0])
    assert c.test[0] == pytest.approx(float(task.expected_loss(p0)), rel=1e-6)
    del suite


def test_dropout_is_off_at_evaluation():
    from tasks.image_mlp import ImageMLPTask

    task = ImageMLPTask(dataset="digits", hidden_sizes=[32], dropout_rate=0.5, batch_size=32)
    params = task.init(jax.random.PRNGKey(0))
    batch = task.datasets.test.full()
    a = task.loss(params, jax.random.PRNGKey(1), batch)
    b = task.loss(params, jax.random.PRNGKey(2), batch)
    assert float(a) != float(b)  # training loss: dropout on
    e1, e2 = task.eval_loss(params, batch), task.eval_loss(params, batch)
    assert float(e1) == float(e2)
    logits = task.model.apply({"params": params}, task.preprocess(jnp.asarray(batch["image"])), train=False)
    want = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(batch["label"])).mean()
    assert float(e1) == pytest.approx(float(want), rel=1e-5)
    setup = prepare_task(task, 5)
    run = run_method(task, "adam@0.01", 5, seeds=[0], setup=setup)
    p0 = task.init(jax.random.split(jax.random.PRNGKey(0))[0])
    assert run.selected[0].test[0] == pytest.approx(float(task.eval_loss(p0, setup.eval_batches["test"])), rel=1e-5)


def test_protocol_rejects_bad_settings():
    with pytest.raises(ValueError, match="vs"):
        Protocol(vs="nope")
    with pytest.raises(ValueError, match="baselines"):
        Protocol(baselines=("adam", "rmsprop"))
    with pytest.raises(ValueError, match="win_speedup"):
        Protocol(win_speedup=1.0)
    with pytest.raises(ValueError, match="unknown protocol key"):
        Protocol.from_dict({"tie": 0.1})
