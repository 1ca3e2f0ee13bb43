"""Run methods on a suite under the protocol and turn the runs into a JSON-ready results dict.

``run_suite(methods, suite)`` returns (deterministic for the same seeds, except ``"timing"``)::

    {"schema", "protocol", "suite", "config", "methods", "baselines",
     "tasks": [{"name", "task_id", "group", "num_steps", "num_params", "data", "splits",
                "saturated", "norm": {"train"|"test": {"init", "best", "best_method", "degenerate"}},
                "runs": {method: {"kind", "hparams", "selected_on", "selection_scores", "grid",
                                  "skipped", "final_test", "final_train", "norm_final_test",
                                  "norm_final_train", "norm_area", "diverged",
                                  "seeds": [{"seed", "final_train", "final_test", "norm_final_train",
                                             "norm_final_test", "norm_area", "diverged",
                                             "curve": {"x", "train", "test", "norm_test"}}]}},
                "comparisons": {method: {baseline: {"speedup", "reached", "final_diff", "outcome"}}}}],
     "summary": {method: {"vs", "wins", "ties", "losses", "saturated", "win_rate", "win_rate_ci95",
                          "median_speedup", "mean_norm_final_test", "mean_norm_final_train",
                          "mean_norm_area", "diverged", ..., "by_baseline": {...}, "by_group": {...}}},
     "timing": {...}}

The rules (selection on ``inner_valid`` or separate seeds, report on ``test``, normalization,
speed-up, win / tie / loss) are those of :mod:`eval.protocol`.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from eval import baseline_cache, metrics, scoring
from eval.baselines import protocol_baselines
from eval.methods import as_methods
from eval.metrics import as_float
from eval.protocol import DEFAULT_PROTOCOL, Protocol
from eval.runner import MethodRun, prepare_task, run_methods
from eval.suites import Suite, get_suite

SCHEMA = "learned_opt.eval/2"
MAX_CURVE_POINTS = 101

__all__ = ["run_suite", "as_float", "SCHEMA"]


def _clean(v: Any) -> Any:
    """JSON-safe value: NaN -> None, ±inf -> "inf"/"-inf", NumPy -> Python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _downsample(n: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))


def _run_record(r: MethodRun, s: scoring.RunScore, norm: dict) -> dict:
    rec: dict = {"kind": r.kind, "hparams": r.hparams, "selected_on": r.selected_on,
                 "skipped": r.skipped}
    if len(r.grid) > 1:
        rec["grid"] = [dict(g) for g in r.grid]
        rec["selection_scores"] = list(r.selection_scores)
    if r.skipped:
        return rec
    seeds = []
    for c, ss in zip(r.selected, s.seeds):
        idx = _downsample(len(c.x))
        nt = metrics.normalize_loss(c.test, norm["test"].init, norm["test"].best)
        seeds.append({"seed": ss.seed, "final_train": ss.final_train, "final_test": ss.final_test,
                      "norm_final_train": ss.norm_final_train, "norm_final_test": ss.norm_final_test,
                      "norm_area": ss.norm_area, "diverged": ss.diverged,
                      **({"info": c.info} if c.info else {}),
                      "curve": {"x": c.x[idx], "train": c.train[idx], "test": c.test[idx],
                                "norm_test": nt[idx]}})
    rec.update(final_test=s.mean("final_test"), final_train=s.mean("final_train"),
               norm_final_test=s.mean("norm_final_test"), norm_final_train=s.mean("norm_final_train"),
               norm_area=s.mean("norm_area"), diverged=s.diverged_runs, seeds=seeds)
    return rec


def _task_record(st: Any, setup: Any, runs: dict, score: scoring.TaskScore) -> dict:
    report = "test" if setup.has_data else "eval_loss (data-free: exact expected loss)"
    return {
        "name": st.name, "task_id": st.task_id, "group": st.group, "num_steps": setup.num_steps,
        "num_params": setup.num_params, "data": setup.data,
        "splits": {"selection": setup.selection, "report_test": report,
                   "report_train": "train" if setup.has_data else report},
        "saturated": score.saturated,
        "norm": {k: {"init": v.init, "best": v.best, "best_method": v.best_method,
                     "degenerate": v.degenerate} for k, v in score.norm.items()},
        "runs": {n: _run_record(r, score.runs[n], score.norm) for n, r in runs.items()},
        "comparisons": {m: {b: {"speedup": c.speedup, "reached": c.reached, "final_diff": c.final_diff,
                                "outcome": c.outcome} for b, c in cs.items()}
                        for m, cs in score.comparisons.items()},
    }


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def _seed_list(seeds: Any, default: int) -> list[int]:
    if seeds is None:
        seeds = default
    out = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not out:
        raise ValueError("seeds must not be empty")
    return out


def run_suite(methods: Sequence[Any], suite: str | Suite, *, protocol: Optional[Protocol] = None,
              seeds: Optional[int | Sequence[int]] = None, num_steps: Optional[int] = None,
              suite_size: Optional[int] = None, verbose: bool = False, cache: bool = False) -> dict:
    """Evaluate ``methods`` (anything :func:`eval.methods.as_method` takes) on ``suite`` next to
    the protocol's baselines; returns the results dict described in the module docstring.

    ``seeds``: a count (seeds ``0..n-1``) or explicit seeds (default: the suite's count).
    ``num_steps``: override every task's horizon. ``suite_size``: keep only that many tasks
    (balanced over the suite's parts; for smoke runs). ``cache``: reuse / store the baselines'
    runs in the disk cache of :mod:`eval.baseline_cache` (the results are the same either way).
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    protocol = protocol or DEFAULT_PROTOCOL
    suite = get_suite(suite)
    seed_list = _seed_list(seeds, suite.seeds)
    if num_steps is not None and (isinstance(num_steps, bool) or int(num_steps) < 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    evaluated = as_methods(list(methods))
    base = [b for b in protocol_baselines(protocol.baselines, protocol.learning_rates)
            if b.name not in {m.name for m in evaluated}]
    base_names = [b.name for b in base]
    tasks = suite.resolve(size=suite_size)
    records, scores = [], []
    timing: dict[str, Any] = {"tasks": {}}
    for i, st in enumerate(tasks):
        t_task = time.perf_counter()
        setup = prepare_task(st.build(), int(num_steps or st.num_steps), name=st.name, protocol=protocol)
        key = (baseline_cache.cache_key(st.task_id, st.config, setup.num_steps, seed_list, protocol)
               if cache and st.config else None)
        cached = baseline_cache.load(key, base_names) if key else None
        runs = run_methods(setup, evaluated + ([] if cached else base), seed_list, protocol)
        if cached:
            runs.update(cached)
        elif key:
            baseline_cache.store(key, {n: runs[n] for n in base_names})
        score = scoring.score_task(st.name, st.group, setup.num_steps, runs, base_names, protocol)
        scores.append(score)
        rec = _task_record(st, setup, runs, score)
        if suite.paths and setup.num_params == 2 and hasattr(setup.task, "grid"):
            from eval.paths import compute_paths
            rec["paths"] = compute_paths(setup.task, evaluated, setup.num_steps, seed=seed_list[0])
        records.append(rec)
        timing["tasks"][st.name] = {**{n: {"compile": r.compile_seconds, "run": r.run_seconds}
                                       for n, r in runs.items()}, "total": time.perf_counter() - t_task}
        _log(verbose, _progress_line(i, len(tasks), st.name, setup.num_steps, timing["tasks"][st.name]["total"],
                                     score, [m.name for m in evaluated], protocol.vs))
    results = {
        "schema": SCHEMA, "protocol": protocol.as_dict(),
        "suite": {**suite.summary(), "tasks": [t.summary() for t in tasks], "size": len(tasks)},
        "config": {"seeds": seed_list, "num_steps_override": num_steps},
        "methods": [m.summary() for m in evaluated], "baselines": [b.summary() for b in base],
        "tasks": records,
        "summary": scoring.summarize(scores, [m.name for m in evaluated] + base_names, base_names, protocol),
    }
    results = _clean(results)
    timing["total_seconds"] = time.perf_counter() - t_start
    timing["total_cpu_seconds"] = time.process_time() - c_start
    results["timing"] = _clean(timing)
    return results


def _progress_line(i: int, n: int, name: str, steps: int, seconds: float, score: scoring.TaskScore,
                   evaluated: Sequence[str], vs: str) -> str:
    parts = []
    for m in evaluated:
        c = score.comparisons.get(m, {}).get(vs)
        if c is not None:
            parts.append(f"{m}: {c.outcome} vs {vs} (speed-up {c.speedup:.2f}, "
                         f"norm test {score.runs[m].mean('norm_final_test'):.3f})")
    sat = " [saturated]" if score.saturated else ""
    return f"[{i + 1}/{n}] {name}: {steps} steps, {seconds:.1f}s{sat}; " + "; ".join(parts)
