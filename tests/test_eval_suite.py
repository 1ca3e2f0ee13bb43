"""Suites end to end: determinism of results.json, normalization bookkeeping, plots, the CLI."""
import json
import math
import os

import numpy as np
import optax
import pytest
from matplotlib import image as mpimg

from eval import plots, suites
from eval.compare import table_from_results
from eval.methods import optax_method
from eval.pipeline import as_float, run_suite
from eval.report import load_results, write_report

TINY = suites.custom_suite("tiny", [("quad", "tasks.quadratic:QuadraticTask", 30)], seeds=2,
                           baselines=("adam", "L-BFGS-B"), eval_points=10)


def _run_tiny():
    return run_suite([optax_method(optax.sgd(0.02), name="sgd0.02")], TINY)


@pytest.fixture(scope="module")
def tiny_results():
    return _run_tiny()


def _png_size(path):
    img = mpimg.imread(path)
    return img.shape[1], img.shape[0]


def test_same_seed_gives_identical_results_json(tiny_results, tmp_path):
    a = write_report(tiny_results, str(tmp_path / "a"), figures=False)
    b = write_report(_run_tiny(), str(tmp_path / "b"), figures=False)
    with open(a["results"], "rb") as fa, open(b["results"], "rb") as fb:
        assert fa.read() == fb.read()
    # wall-clock figures live apart
    assert "timing" not in json.load(open(a["results"]))
    assert json.load(open(a["timing"]))["total_seconds"] > 0


def test_normalization_bookkeeping(tiny_results):
    (task,) = tiny_results["tasks"]
    norm = task["norm"]
    runs = task["runs"]
    inits = [s["curve"]["loss"][0] for s in runs["adam"]["seeds"]]
    assert norm["init"] == pytest.approx(np.mean(inits))
    # best = the lowest seed-averaged loss of any baseline: no baseline's seed-mean final is below it
    for name in ("adam", "L-BFGS-B"):
        assert as_float(runs[name]["final_loss"]["mean"]) >= norm["best"] - 1e-9
    # the normalized curve is the affine map of the raw curve
    for s in runs["sgd0.02"]["seeds"]:
        raw = np.array([as_float(v) for v in s["curve"]["loss"]])
        nl = np.array([as_float(v) for v in s["curve"]["norm_loss"]])
        np.testing.assert_allclose(nl, np.clip((raw - norm["best"]) / (norm["init"] - norm["best"]), -2, 2))
    # tuned Adam against the envelope of its own sweep cannot be faster than 1
    assert all(as_float(s["speedup"]) <= 1.0 + 1e-9 for s in runs["adam"]["seeds"])
    assert runs["adam"]["hparams"]["learning_rate"] in [g["learning_rate"] for g in runs["adam"]["grid"]]
    best_lr = int(np.argmin(runs["adam"]["grid_final_loss"]))
    assert runs["adam"]["hparams"] == runs["adam"]["grid"][best_lr]


def test_table_matches_summary(tiny_results):
    table = table_from_results(tiny_results)
    assert [r[0] for r in table.rows] == ["sgd0.02", "adam", "L-BFGS-B"]
    row = table.row("sgd0.02")
    s = tiny_results["summary"]["sgd0.02"]
    assert row["norm_final"] == pytest.approx(as_float(s["norm_final"]["mean"]))
    assert row["runs"] == 2
    assert "| sgd0.02 |" in table.to_markdown()


def test_plot_files_have_expected_size(tiny_results, tmp_path):
    p1 = plots.plot_curves(tiny_results, str(tmp_path / "c.png"))
    p2 = plots.plot_curves(tiny_results, str(tmp_path / "w.png"), xaxis="wall")
    p3 = plots.plot_final(tiny_results, str(tmp_path / "f.png"))
    for p in (p1, p2, p3):
        assert os.path.getsize(p) > 5000
    assert _png_size(p1) == plots.curve_figure_size(1)
    assert _png_size(p2) == plots.curve_figure_size(1)
    assert _png_size(p3) == plots.final_figure_size(1)
    with pytest.raises(ValueError, match="xaxis"):
        plots.plot_curves(tiny_results, str(tmp_path / "x.png"), xaxis="steps")


def test_paths_on_rosenbrock(tmp_path):
    from eval.paths import compute_paths
    from tasks.functions2d import Function2DTask

    task = Function2DTask("rosenbrock")
    sgd = optax_method(optax.sgd(1e-3), name="sgd1e-3")
    data = compute_paths(task, [sgd], 40, adam_rates=(0.05,))
    assert set(data["paths"]) == {"adam lr=0.05", "L-BFGS-B", "sgd1e-3"}
    assert data["start"] == pytest.approx(list(task.start))
    for p in data["paths"].values():
        assert p["xy"][0] == pytest.approx(list(task.start))
        assert p["final_loss"] < float(task.loss({"xy": np.asarray(task.start, np.float32)}))
    # one point per iteration: the optax path has maxiter + 1 points
    assert len(data["paths"]["sgd1e-3"]["xy"]) == 41
    # L-BFGS-B gets much closer to the minimizer (1, 1) than the others in 40 evaluations
    assert data["paths"]["L-BFGS-B"]["final_loss"] < 1e-3
    X, Y, Z = task.grid(50)
    panel = {"title": "rosenbrock", "X": X, "Y": Y, "Z": Z, "start": data["start"],
             "minimizers": data["minimizers"], "paths": {k: v["xy"] for k, v in data["paths"].items()}}
    out = plots.plot_paths([panel, dict(panel, title="again")], str(tmp_path / "paths.png"))
    assert os.path.getsize(out) > 10000
    assert _png_size(out) == plots.paths_figure_size(2)


def test_suites_listed_and_resolvable(capsys):
    from eval.cli import main

    assert main(["--list-suites"]) == 0
    out = capsys.readouterr().out
    for name in ("smoke", "indist", "ood", "ood_family", "ood_size", "ood_dataset", "ood_horizon",
                 "functions2d"):
        assert name in out
    assert main(["--suite", "nope", "--out", "x", "--untrained", "mlp"]) == 2
    assert main(["--suite", "smoke"]) == 2  # no --out
    smoke = suites.get_suite("smoke").resolve()
    assert [t.name for t in smoke] == ["quadratic10", "logreg16"]
    assert [t.name for t in smoke] == [t.name for t in suites.get_suite("smoke").resolve()]
    with pytest.raises(ValueError, match="unknown suite"):
        suites.get_suite("nope")


def test_cli_smoke_writes_all_outputs(tmp_path):
    from eval.cli import main

    out = tmp_path / "smoke"
    assert main(["--untrained", "mlp", "--suite", "smoke", "--out", str(out), "-q", "--num-steps", "25"]) == 0
    for f in ("report.md", "results.json", "timing.json", "curves.png", "curves_wall.png", "final.png"):
        assert (out / f).exists() and (out / f).stat().st_size > 0, f
    res = load_results(str(out))
    assert [t["name"] for t in res["tasks"]] == ["quadratic10", "logreg16"]
    assert all(t["num_steps"] == 25 for t in res["tasks"])
    assert set(res["summary"]) == {"mlp-untrained", "adam", "L-BFGS-B"}
    for t in res["tasks"]:
        for name in ("mlp-untrained", "adam", "L-BFGS-B"):
            assert len(t["runs"][name]["seeds"]) == 2
            for s in t["runs"][name]["seeds"]:
                assert not math.isnan(as_float(s["norm_final"]))
    md = (out / "report.md").read_text()
    for name in ("mlp-untrained", "adam", "L-BFGS-B"):
        assert f"| {name} |" in md
    assert "![" in md and "curves.png" in md
    assert _png_size(str(out / "curves.png")) == plots.curve_figure_size(2)


@pytest.mark.slow
def test_cli_smoke_is_deterministic(tmp_path):
    from eval.cli import main

    for d in ("a", "b"):
        assert main(["--untrained", "mlp", "--suite", "smoke", "--out", str(tmp_path / d), "-q",
                     "--no-plots"]) == 0
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()


def test_evaluate_suites_writes_combined_report(tmp_path):
    from eval.compare import evaluate_suites

    out = evaluate_suites(optax.sgd(0.02), suites=[TINY], out_dir=str(tmp_path), verbose=False)
    assert list(out) == ["tiny"]
    assert (tmp_path / "tiny" / "results.json").exists()
    md = (tmp_path / "report.md").read_text()
    assert "tiny/report.md" in md and "| optax |" in md
