"""Run methods on a suite and turn the curves into results: normalized losses, speed-ups, wins.

``run_suite(methods, suite)`` returns a JSON-ready results dict (deterministic: the same seeds
give the same dict, except the ``"timing"`` section, which holds every wall-clock figure):

    {"schema", "suite", "config", "methods", "baselines",
     "tasks": [{"name", "task_id", "group", "num_steps", "exact", "num_params", "norm",
                "runs": {method: {"kind", "hparams", "grid_final_loss", "skipped",
                                  "seeds": [{"seed", "final_loss", "final_test_loss", "norm_final",
                                             "norm_mean", "speedup", "speedup_censored",
                                             "diverged", "cost", "info",
                                             "curve": {"x", "loss", "norm_loss", "test_loss"}}],
                                  "norm_final": Interval, "norm_mean": Interval,
                                  "speedup": Interval (geometric), "divergences"}},
                "paths": {...} (2-D suites)}],
     "summary": {method: {...}}, "timing": {...}}

Normalization statistics come from the baselines run on the same task, seeds and horizon:
``L_init`` = the mean initial evaluation loss over seeds; ``L_best`` = the lowest seed-averaged
loss any baseline reached (first-order baselines: minimum over their recorded points of the
seed-mean curve, over the whole sweep; classical baselines: mean over seeds of their best loss,
counted on full-batch / data-free tasks only -- as in ``tasksets``' statistics).
The evaluated (non-baseline) methods never enter the statistics.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from eval import metrics
from eval.metrics import as_float
from eval.methods import FirstOrderMethod, ScipyMethod, as_method, as_methods
from eval.runner import Curve, MethodRun, prepare_task, run_method
from eval.suites import Suite, SuiteTask, get_suite

SCHEMA = "learned_opt.eval/1"
MAX_CURVE_POINTS = 101
ADAM = "adam"
LBFGS = "L-BFGS-B"


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
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v




def _downsample(n: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))


def norm_stats(runs: dict[str, MethodRun], baseline_names: Sequence[str], exact: bool = True) -> dict:
    """``{"init", "best", "best_method", "degenerate"}`` from the baselines' curves.

    On minibatch tasks (``exact=False``) only first-order baselines define ``best``: a classical
    method there minimizes the whole training split with exact gradients, a different game
    (it is still reported, and may score below 0).
    """
    inits, cands = [], []
    for name in baseline_names:
        r = runs.get(name)
        if r is None or r.skipped or not r.curves:
            continue
        if r.kind == "scipy" and not exact:
            continue
        for row in r.curves:
            inits.extend(c.initial_loss for c in row)
        if r.kind == "scipy":
            bests = [np.nanmin(np.where(np.isfinite(c.loss), c.loss, np.nan)) if np.any(np.isfinite(c.loss))
                     else math.nan for c in r.selected]
            v = float(np.mean(bests))
            if math.isfinite(v):
                cands.append((v, name))
        else:
            for g, row in enumerate(r.curves):
                mean_curve = np.mean(np.stack([c.loss for c in row]), axis=0)
                fin = mean_curve[np.isfinite(mean_curve)]
                if fin.size:
                    hp = ",".join(f"{k}={v:.3g}" for k, v in r.grid[g].items())
                    cands.append((float(fin.min()), f"{name}({hp})" if hp else name))
    init = float(np.mean(inits)) if inits else math.nan
    if not cands or not math.isfinite(init):
        return {"init": init, "best": math.nan, "best_method": None, "degenerate": True}
    best, who = min(cands)
    degenerate = not best < init
    if degenerate:  # no baseline improved on the initial loss: keep a tiny positive scale
        best = init - 1e-12 * max(1.0, abs(init))
    return {"init": init, "best": best, "best_method": who, "degenerate": degenerate}


def _curve_record(c: Curve, init: float, best: float, adam_env: Optional[list]) -> dict:
    ok = math.isfinite(init) and math.isfinite(best) and init > best
    nl = metrics.normalize_loss(c.loss, init, best) if ok else np.full_like(c.loss, np.nan)
    sp = metrics.speedup(c.x, c.loss, adam_env) if adam_env else None
    idx = _downsample(len(c.x))
    return {
        "seed": c.seed,
        "final_loss": c.final_loss,
        "final_test_loss": c.final_test_loss,
        "norm_final": float(nl[-1]),
        "norm_mean": metrics.mean_over_curve(c.x, nl),
        "speedup": sp.value if sp else math.nan,
        "speedup_censored": bool(sp.censored) if sp else False,
        "diverged": metrics.is_diverged(c.loss),
        "cost": c.cost,
        "info": {k: v for k, v in c.info.items() if k != "wall_time_amortized_over"},
        "curve": {"x": c.x[idx], "steps": c.steps[idx], "loss": c.loss[idx], "norm_loss": nl[idx],
                  "test_loss": c.test_loss[idx]},
    }


def _method_record(r: MethodRun, stats: dict, adam_runs: Optional[MethodRun]) -> dict:
    rec: dict = {"kind": r.kind, "hparams": r.hparams, "skipped": r.skipped}
    if r.skipped:
        return rec
    if len(r.grid) > 1:
        rec["grid"] = [dict(g) for g in r.grid]
        rec["grid_final_loss"] = [float(np.mean([c.final_loss for c in row])) for row in r.curves]
    seeds = []
    for c in r.selected:
        env = None
        if adam_runs is not None and not adam_runs.skipped:
            j = [a.seed for a in adam_runs.curves[0]].index(c.seed)
            env = [(row[j].x, row[j].loss) for row in adam_runs.curves]
        seeds.append(_curve_record(c, stats["init"], stats["best"], env))
    rec["seeds"] = seeds
    rec["norm_final"] = metrics.mean_ci([s["norm_final"] for s in seeds]).as_dict()
    rec["norm_mean"] = metrics.mean_ci([s["norm_mean"] for s in seeds]).as_dict()
    rec["final_loss"] = metrics.mean_ci([s["final_loss"] for s in seeds]).as_dict()
    rec["speedup"] = metrics.geometric_mean_ci([s["speedup"] for s in seeds]).as_dict()
    rec["divergences"] = int(sum(s["diverged"] for s in seeds))
    return rec


def _method_summary(task_records: list[dict], m: str) -> dict:
    finals, means, speeds, div, runs, cens = [], [], [], 0, 0, 0
    beats_adam, beats_lbfgs = [], []
    for t in task_records:
        r = t["runs"].get(m)
        if r is None or r.get("skipped"):
            continue
        finals.append(as_float(r["norm_final"]["mean"]))
        means.append(as_float(r["norm_mean"]["mean"]))
        speeds.extend(as_float(s["speedup"]) for s in r["seeds"])
        cens += sum(bool(s["speedup_censored"]) for s in r["seeds"])
        div += r["divergences"]
        runs += len(r["seeds"])
        for ref, acc in ((ADAM, beats_adam), (LBFGS, beats_lbfgs)):
            rr = t["runs"].get(ref)
            if ref != m and rr is not None and not rr.get("skipped"):
                acc.append((finals[-1], as_float(rr["norm_final"]["mean"])))
    fin_speeds = [v for v in speeds if math.isfinite(v)]
    return {
        "num_tasks": len(finals),
        "norm_final": metrics.mean_ci(finals).as_dict(),
        "norm_mean": metrics.mean_ci(means).as_dict(),
        "speedup": metrics.geometric_mean_ci(speeds).as_dict(),
        "speedup_median": float(np.median(fin_speeds)) if fin_speeds else math.nan,
        "speedup_censored_runs": cens,
        "beats_adam": metrics.fraction_better(*zip(*beats_adam)) if beats_adam else None,
        "beats_lbfgs": metrics.fraction_better(*zip(*beats_lbfgs)) if beats_lbfgs else None,
        "num_vs_lbfgs": len(beats_lbfgs),
        "divergences": div,
        "runs": runs,
    }


def _summary(task_records: list[dict], method_names: Sequence[str]) -> dict:
    """Per method over all tasks, plus ``by_group`` (e.g. the four OOD parts of ``ood``)."""
    groups = sorted({t["group"] for t in task_records})
    out = {}
    for m in method_names:
        out[m] = _method_summary(task_records, m)
        if len(groups) > 1:
            out[m]["by_group"] = {g: _method_summary([t for t in task_records if t["group"] == g], m)
                                  for g in groups}
    return out


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def run_suite(methods: Sequence[Any], suite: str | Suite, *, seeds: Optional[int | Sequence[int]] = None,
              num_steps: Optional[int] = None, baselines: Optional[Sequence[Any]] = None,
              verbose: bool = False, paths: Optional[bool] = None) -> dict:
    """Evaluate ``methods`` (anything :func:`eval.methods.as_method` takes) on ``suite`` next to
    the suite's baselines; returns the results dict described in the module docstring.

    ``seeds``: a count (seeds ``0..n-1``) or explicit seeds (default: the suite's count).
    ``num_steps``: override every task's horizon. ``baselines``: override the suite's baselines.
    """
    t_start = time.perf_counter()
    c_start = time.process_time()
    suite = get_suite(suite)
    if seeds is None:
        seeds = suite.seeds
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds must not be empty")
    if num_steps is not None and (isinstance(num_steps, bool) or int(num_steps) < 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    evaluated = as_methods(list(methods))
    base = as_methods(list(suite.baselines if baselines is None else baselines))
    names = {m.name for m in evaluated}
    base = [b for b in base if b.name not in names]
    all_methods = evaluated + base
    base_names = [b.name for b in base]
    if not base_names:
        raise ValueError("a suite run needs at least one baseline (normalization statistics)")
    tasks = suite.resolve()
    do_paths = suite.paths if paths is None else bool(paths)

    task_records, timing = [], {"tasks": {}}
    for i, st in enumerate(tasks):
        t_task = time.perf_counter()
        steps = int(num_steps or st.num_steps)
        task = st.build()
        setup = prepare_task(task, steps, name=st.name, eval_points=suite.eval_points)
        runs: dict[str, MethodRun] = {}
        tt = {}
        for m in all_methods:
            r = run_method(task, m, steps, seed_list, setup=setup)
            runs[m.name] = r
            tt[m.name] = {"compile": r.compile_seconds, "run": r.run_seconds,
                          "wall_time_per_seed": [_clean(c.wall_time[_downsample(len(c.wall_time))])
                                                 for c in r.selected],
                          "x_per_seed": [_clean(c.x[_downsample(len(c.x))]) for c in r.selected]}
        stats = norm_stats(runs, base_names, exact=setup.exact)
        adam = runs.get(ADAM)
        rec = {"name": st.name, "task_id": st.task_id, "group": st.group, "num_steps": steps,
               "exact": setup.exact, "num_params": setup.num_params,
               "has_test": setup.test_batch is not None, "norm": stats,
               "runs": {name: _method_record(r, stats, adam if adam is not None and adam.kind != "scipy" else None)
                        for name, r in runs.items()}}
        if do_paths and setup.num_params == 2 and hasattr(task, "grid"):
            from eval.paths import compute_paths
            rec["paths"] = compute_paths(task, evaluated, steps, seed=seed_list[0])
        task_records.append(rec)
        tt["total"] = time.perf_counter() - t_task
        timing["tasks"][st.name] = tt
        _log(verbose, f"[{i + 1}/{len(tasks)}] {st.name}: {steps} steps, "
                      f"{tt['total']:.1f}s; norm final " + ", ".join(
                          f"{n}={as_float(_clean(r['norm_final']['mean'])):.3f}"
                          for n, r in rec["runs"].items() if not r.get("skipped")))
    results = {
        "schema": SCHEMA,
        "suite": {**suite.summary(), "tasks": [t.summary() for t in tasks]},
        "config": {"seeds": seed_list, "num_steps_override": num_steps,
                   "eval_points": suite.eval_points},
        "methods": [m.summary() for m in evaluated],
        "baselines": [b.summary() for b in base],
        "tasks": task_records,
        "summary": _summary(task_records, [m.name for m in all_methods]),
    }
    results = _clean(results)
    timing["total_seconds"] = time.perf_counter() - t_start
    timing["total_cpu_seconds"] = time.process_time() - c_start  # this process, all threads
    results["timing"] = _clean(timing)
    return results
