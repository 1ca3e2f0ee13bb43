"""bench_tasksets / bench_datasets / bench_eval record the machine's load and CPU steal over their timed
windows, store the summary in their JSON and mark results taken on a busy machine.

The measured functions are replaced by stubs: these tests check the recording, not the timings.
"""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_datasets, bench_eval, bench_tasksets  # noqa: E402

SUMMARY_KEYS = {"load_1min_start", "load_1min_end", "load_1min_before_benchmark", "cpu_steal",
                "cpu_busy", "cores", "quiet"}


def _check_summary(summary, idle_load):
    assert SUMMARY_KEYS <= set(summary)
    assert summary["load_1min_before_benchmark"] == idle_load
    assert isinstance(summary["load_1min_start"], float) and isinstance(summary["load_1min_end"], float)
    assert summary["quiet"] is (idle_load < 1.0 and (summary["cpu_steal"] is None or summary["cpu_steal"] < 0.05))


@pytest.mark.parametrize("idle_load", [0.0, 99.0])
def test_bench_tasksets_records_the_machine(tmp_path, monkeypatch, capsys, idle_load):
    monkeypatch.setattr(bench_tasksets, "time_step",
                        lambda cfg, repeats: {"ms": 1.0, "compile_s": 0.1, "num_params": 10})
    monkeypatch.setattr(bench_tasksets, "load_now", lambda: idle_load)
    out = tmp_path / "tasksets.json"
    assert bench_tasksets.main(["--num-tasks", "2", "--repeats", "1", "--families", "quadratic_family",
                                "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    # the keys the file had before, kept
    for k in ("benchmark", "cap_ms", "repeats", "num_tasks", "reference_ms", "reference_cfg", "rows", "tasks"):
        assert k in d
    assert {"platform", "cpus", "jax", "devices"} <= set(d["machine"])
    # the whole run, the reference and each family have their window's summary
    _check_summary(d["machine"], idle_load)
    _check_summary(d["reference_machine"], idle_load)
    (row,) = d["rows"]
    _check_summary(row["machine"], idle_load)
    assert d["quiet"] is (d["machine"]["quiet"] and d["reference_machine"]["quiet"] and row["machine"]["quiet"])
    printed = capsys.readouterr().out
    assert "machine: load" in printed
    if idle_load > 1:
        assert d["quiet"] is False
        assert "BUSY" in printed and "| quadratic_family* |" in printed
    elif d["quiet"]:
        assert "BUSY" not in printed and "| quadratic_family |" in printed


@pytest.mark.parametrize("idle_load", [0.0, 99.0])
def test_bench_datasets_records_the_machine(tmp_path, monkeypatch, capsys, idle_load):
    row = {"dataset": "digits", "prepare_s": 0.1, "read_ms": 2.0, "cached_ms": 0.1, "raw_ms": 1.0,
           "read_over_raw": 2.0}
    monkeypatch.setattr(bench_datasets, "_raw_baselines", lambda: {"digits": lambda: None})
    monkeypatch.setattr(bench_datasets.loader, "_available", lambda name: True)
    monkeypatch.setattr(bench_datasets, "bench", lambda name, data_dir, repeats, raw_fn: dict(row))
    monkeypatch.setattr(bench_datasets, "fresh_process_ms", lambda data_dir: (3.0, 2.0))
    monkeypatch.setattr(bench_datasets, "IDLE_LOAD", idle_load)
    out = tmp_path / "datasets.json"
    assert bench_datasets.main(["--repeats", "1", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    for k in ("rows", "import_tasks_datasets_s", "fresh_process_digits_ms", "fresh_process_import_jax_ms",
              "repeats", "python", "machine", "load_average"):
        assert k in d
    assert d["rows"] == [row]
    _check_summary(d["machine_summary"], idle_load)
    assert d["quiet"] is d["machine_summary"]["quiet"]
    printed = capsys.readouterr().out
    assert "machine: load" in printed
    if idle_load > 1:
        assert d["quiet"] is False and "BUSY" in printed
    elif d["quiet"]:
        assert "BUSY" not in printed


@pytest.mark.parametrize("idle_load", [0.0, 99.0])
def test_bench_eval_records_the_machine(tmp_path, monkeypatch, capsys, idle_load):
    import eval.compare
    import eval.methods

    timing = {"total_seconds": 2.0, "tasks": {"t": {"total": 2.0, "adam": {"compile": 1.0, "run": 1.0}}}}
    monkeypatch.setattr(eval.compare, "evaluate", lambda *a, **k: {"indist": {"timing": timing}})
    monkeypatch.setattr(eval.methods, "from_pretrained", lambda name: name)
    monkeypatch.setattr(bench_eval, "sweep_ratio", lambda repeats, idle_load=None: {
        "family_seconds": 1.0, "separate_seconds": 3.0, "speedup": 3.0, "repeats": repeats,
        "machine": {"quiet": idle_load < 1}})
    monkeypatch.setattr(bench_eval, "load_now", lambda: idle_load)
    out = tmp_path / "eval.json"
    assert bench_eval.main(["--suites", "indist", "--sweep-ratio", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["full"]["suites"]["indist"]["tasks"] == 1
    _check_summary(d["full"]["machine"], idle_load)
    assert d["quiet"] is (d["full"]["machine"]["quiet"] and d["sweep_ratio"]["machine"]["quiet"])
    printed = capsys.readouterr().out
    assert f"load {idle_load:.2f} before the benchmark" in printed
    if idle_load > 1:
        assert d["quiet"] is False and "BUSY" in printed
