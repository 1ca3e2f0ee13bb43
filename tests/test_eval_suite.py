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
from eval.protocol import Protocol
from eval.report import load_results, write_report

TINY = suites.custom_suite("tiny", [("quad", "tasks.quadratic:QuadraticTask", 30)], seeds=2)
TINY_PROTOCOL = Protocol(baselines=("adam", "L-BFGS-B"))


def _run_tiny():
    return run_suite([optax_method(optax.sgd(0.02), name="sgd0.02")], TINY, protocol=TINY_PROTOCOL)


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
    assert json.load(open(a["timing"]))["tiny"]["total_seconds"] > 0


def test_normalization_bookkeeping(tiny_results):
    (task,) = tiny_results["tasks"]
    norm = task["norm"]["test"]
    runs = task["runs"]
    inits = [s["curve"]["test"][0] for s in runs["adam"]["seeds"]]
    assert norm["init"] == pytest.approx(np.mean(inits))
    # best = the lowest seed-averaged loss of any baseline: no baseline's seed-mean final is below it
    for name in ("adam", "L-BFGS-B"):
        assert runs[name]["final_test"] >= norm["best"] - 1e-9
    # the normalized curve is the affine map of the raw curve
    for s in runs["sgd0.02"]["seeds"]:
        raw = np.array([as_float(v) for v in s["curve"]["test"]])
        nl = np.array([as_float(v) for v in s["curve"]["norm_test"]])
        np.testing.assert_allclose(nl, np.clip((raw - norm["best"]) / (norm["init"] - norm["best"]), -2, 2))
    # data-free task: the rate is selected on separate seeds, reported on the expected loss
    assert runs["adam"]["selected_on"] == "separate_seeds"
    assert task["splits"]["selection"] == "separate_seeds"
    best_lr = int(np.argmin([as_float(v) for v in runs["adam"]["selection_scores"]]))
    assert runs["adam"]["hparams"] == runs["adam"]["grid"][best_lr]
    # the comparison of a baseline against itself is not recorded; against the other it is
    assert "adam" not in task["comparisons"]["adam"] and "L-BFGS-B" in task["comparisons"]["adam"]


def test_table_matches_summary(tiny_results):
    table = table_from_results(tiny_results)
    assert [r[0] for r in table.rows] == ["sgd0.02", "adam", "L-BFGS-B"]
    row = table.row("sgd0.02")
    s = tiny_results["summary"]["sgd0.02"]
    assert row["mean_norm_final_test"] == pytest.approx(as_float(s["mean_norm_final_test"]))
    assert row["wins"] + row["ties"] + row["losses"] == row["tasks"] == 1
    assert "| sgd0.02 |" in table.to_markdown()


def test_plot_files_have_expected_size(tiny_results, tmp_path):
    p1 = plots.plot_curves(tiny_results, str(tmp_path / "c.png"))
    p3 = plots.plot_final(tiny_results, str(tmp_path / "f.png"))
    for p in (p1, p3):
        assert os.path.getsize(p) > 5000
    assert _png_size(p1) == plots.curve_figure_size(1)
    assert _png_size(p3) == plots.final_figure_size(1)


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
    for name in ("smoke", "indist", "ood", "indist-small", "ood-small", "ood_family", "ood_size",
                 "ood_dataset", "ood_horizon", "functions2d", "select"):
        assert name in out
    assert main(["--suite", "nope", "--out", "x", "--untrained", "mlp"]) == 2
    assert main(["--suite", "smoke"]) == 2  # no --out
    smoke = suites.get_suite("smoke").resolve()
    assert [t.name for t in smoke] == ["quadratic10", "logreg16"]
    with pytest.raises(ValueError, match="unknown suite"):
        suites.get_suite("nope")


def test_selection_split_is_disjoint_from_the_reported_suites():
    select = suites.get_suite("select").resolve()
    reported = suites.get_suite("indist").resolve() + suites.get_suite("ood").resolve()
    assert {t.task_id for t in select}.isdisjoint({t.task_id for t in reported})
    long = [t for t in select if t.num_steps == 1000]
    assert len(select) == 16 and len(long) == 4 and {t.group for t in long} == {"heldout@1000"}
    assert {t.config["family"] for t in long} == {t.config["family"] for t in select}
    # a horizon override renames the task, so the two copies of a heldout task never collide
    assert len({t.name for t in select}) == len(select)


def test_second_selection_split_is_disjoint_from_select_reports_and_training():
    import tasksets

    select2 = suites.get_suite("select2").resolve()
    fams = [t.config["family"] for t in select2]
    assert {f: fams.count(f) for f in set(fams)} == {"mlp_family": 10, "quadratic_family": 6,
                                                     "synthetic_family": 4, "mlp_ae_family": 4}
    others = [t for name in ("select", "indist", "ood") for t in suites.get_suite(name).resolve()]
    assert {t.task_id for t in select2}.isdisjoint({t.task_id for t in others})
    trained = {tasksets.task_id(c) for name in ("train", "train_pool") for c in tasksets.load_taskset(name)}
    assert {t.task_id for t in select2}.isdisjoint(trained)


def test_headline_suites_are_large_and_balanced():
    indist = suites.get_suite("indist").resolve()
    assert len(indist) >= 32 and {t.group for t in indist} == {"indist"}
    fams = [t.config["family"] for t in indist]
    assert {f: fams.count(f) for f in set(fams)} == {"mlp_family": 13, "quadratic_family": 8,
                                                     "synthetic_family": 6, "mlp_ae_family": 5}
    ood = suites.get_suite("ood").resolve()
    assert len(ood) >= 32
    groups = [t.group for t in ood]
    assert {g: groups.count(g) for g in set(groups)} == {"ood_family": 8, "ood_size": 8, "ood_dataset": 8,
                                                         "ood_horizon": 4, "ood_horizon10": 4}
    assert {t.num_steps for t in ood if t.group == "ood_horizon"} == {1000}
    assert {t.num_steps for t in ood if t.group == "ood_horizon10"} == {2000}
    # indist never reuses a task the meta-training taskset holds
    import tasksets
    train_ids = {tasksets.task_id(c) for c in tasksets.load_taskset("train")}
    assert not train_ids & {t.task_id for t in indist}
    # --suite-size keeps the parts balanced
    small = suites.get_suite("ood").resolve(size=5)
    assert [t.group for t in small] == ["ood_family", "ood_size", "ood_dataset", "ood_horizon", "ood_horizon10"]


def test_cli_smoke_writes_all_outputs(tmp_path):
    from eval.cli import main

    out = tmp_path / "smoke"
    assert main(["--untrained", "mlp", "--suite", "smoke", "--out", str(out), "-q", "--num-steps", "25",
                 "--baselines", "adam,adam_cosine,L-BFGS-B"]) == 0
    for f in ("report.md", "results.json", "timing.json", "smoke_curves.png", "smoke_final.png"):
        assert (out / f).exists() and (out / f).stat().st_size > 0, f
    res = load_results(str(out))
    # the contract: summary[suite][method] against the baseline named in vs
    s = res["summary"]["smoke"]["mlp-untrained"]
    for key in ("wins", "ties", "losses", "saturated", "win_rate", "win_rate_ci95", "median_speedup",
                "mean_norm_final_test", "mean_norm_final_train", "mean_norm_area", "diverged"):
        assert key in s, key
    assert s["vs"] == res["vs"] == "adam" and len(s["win_rate_ci95"]) == 2
    suite = res["suites"]["smoke"]
    assert [t["name"] for t in suite["tasks"]] == ["quadratic10", "logreg16"]
    assert all(t["num_steps"] == 25 for t in suite["tasks"])
    assert set(res["summary"]["smoke"]) == {"mlp-untrained", "adam", "adam_cosine", "L-BFGS-B"}
    for t in suite["tasks"]:
        assert t["runs"]["adam"]["selected_on"] in ("inner_valid", "separate_seeds")
        assert "learning_rate" in t["runs"]["adam"]["hparams"]
        for name in ("mlp-untrained", "adam", "L-BFGS-B"):
            assert len(t["runs"][name]["seeds"]) == 2
            for sd in t["runs"][name]["seeds"]:
                assert not math.isnan(as_float(sd["norm_final_test"]))
    md = (out / "report.md").read_text()
    for name in ("mlp-untrained", "adam", "L-BFGS-B"):
        assert f"| {name} |" in md
    assert "![" in md and "smoke_curves.png" in md
    assert _png_size(str(out / "smoke_curves.png")) == plots.curve_figure_size(2)


@pytest.mark.slow
def test_cli_smoke_is_deterministic(tmp_path):
    from eval.cli import main

    for d in ("a", "b"):
        assert main(["--untrained", "mlp", "--suite", "smoke", "--out", str(tmp_path / d), "-q",
                     "--no-plots"]) == 0
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()


def test_evaluate_writes_combined_report(tmp_path):
    from eval.compare import evaluate

    out = evaluate(optax.sgd(0.02), suites=[TINY, "smoke"], out_dir=str(tmp_path), verbose=False,
                   protocol=TINY_PROTOCOL, num_steps=10)
    assert list(out) == ["tiny", "smoke", "outputs"]
    res = json.load(open(tmp_path / "results.json"))
    assert set(res["summary"]) == {"tiny", "smoke"} and set(res["suites"]) == {"tiny", "smoke"}
    md = (tmp_path / "report.md").read_text()
    assert "## Suite `tiny`" in md and "## Suite `smoke`" in md and "| optax |" in md


def test_baseline_cache_gives_identical_results_and_skips_the_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNED_OPT_EVAL_CACHE", str(tmp_path / "cache"))
    method = [optax_method(optax.sgd(0.02), name="sgd0.02")]
    cold = run_suite(method, "smoke", seeds=2, num_steps=15, protocol=TINY_PROTOCOL, cache=True)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # one entry per task
    warm = run_suite(method, "smoke", seeds=2, num_steps=15, protocol=TINY_PROTOCOL, cache=True)
    fresh = run_suite(method, "smoke", seeds=2, num_steps=15, protocol=TINY_PROTOCOL, cache=False)
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "timing"}, sort_keys=True)  # noqa: E731
    assert strip(cold) == strip(warm) == strip(fresh)
    for t in warm["timing"]["tasks"].values():
        assert t["adam"]["compile"] == 0.0 and t["adam"]["run"] == 0.0  # not run again
    # a different horizon is a different key: no stale reuse
    other = run_suite(method, "smoke", seeds=2, num_steps=12, protocol=TINY_PROTOCOL, cache=True)
    assert other["tasks"][0]["num_steps"] == 12
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4
