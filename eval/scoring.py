"""From runs to verdicts: normalization, per-run scores, comparisons and suite summaries.

Implements the rules of :mod:`eval.protocol` on the :class:`eval.runner.MethodRun` records of one
task (:func:`score_task`) and on the scored tasks of a suite (:func:`summarize`). Results are
typed records (:class:`TaskScore`, :class:`RunScore`, :class:`Comparison`) with ``as_dict()`` for
JSON.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from eval import metrics
from eval.protocol import Protocol
from eval.runner import Curve, MethodRun

REPORTED = ("train", "test")


@dataclasses.dataclass(frozen=True)
class NormStats:
    init: float
    best: float
    best_method: Optional[str]
    degenerate: bool  # no baseline improved on the initial loss

    @property
    def span(self) -> float:
        return self.init - self.best


@dataclasses.dataclass(frozen=True)
class SeedScore:
    seed: int
    final_train: float
    final_test: float
    norm_final_train: float
    norm_final_test: float
    norm_area: float  # normalized test loss averaged over the run (trapezoid over cost)
    diverged: bool


@dataclasses.dataclass(frozen=True)
class RunScore:
    """One method on one task (its selected setting)."""

    method: str
    kind: str
    hparams: dict
    selected_on: str
    selection_scores: list
    seeds: list  # [SeedScore]
    median_x: np.ndarray
    median_test: np.ndarray  # running minimum of the seed-median test curve
    skipped: Optional[str] = None

    def mean(self, field: str) -> float:
        return float(np.mean([getattr(s, field) for s in self.seeds])) if self.seeds else math.nan

    @property
    def diverged_runs(self) -> int:
        return int(sum(s.diverged for s in self.seeds))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Method vs one tuned baseline on one task."""

    speedup: float
    reached: bool
    final_diff: float  # mean final test loss: method - baseline, in units of L_init - L_best
    outcome: str  # "win" | "tie" | "loss"


@dataclasses.dataclass
class TaskScore:
    name: str
    group: str
    num_steps: int
    norm: dict  # objective -> NormStats
    runs: dict  # method -> RunScore
    comparisons: dict  # method -> {baseline: Comparison}
    saturated: bool


# ------------------------------------------------------------------------------------------------
def _finite_min(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.min()) if x.size else math.nan


def norm_stats(runs: dict[str, MethodRun], baselines: Sequence[str], objective: str) -> NormStats:
    """``L_init``: mean initial loss over seeds; ``L_best``: the lowest seed-mean loss any baseline
    reached at any record of any grid setting (classical methods: seed mean of per-seed bests)."""
    inits, cands = [], []
    for name in baselines:
        r = runs.get(name)
        if r is None or r.skipped or not r.curves:
            continue
        inits.extend(float(c.objective(objective)[0]) for c in r.selected)
        if r.kind == "scipy":
            v = float(np.mean([_finite_min(c.objective(objective)) for c in r.selected]))
            if math.isfinite(v):
                cands.append((v, name))
            continue
        for g, row in enumerate(r.curves):
            v = _finite_min(np.mean(np.stack([c.objective(objective) for c in row]), axis=0))
            if math.isfinite(v):
                lr = r.grid[g].get("learning_rate")
                cands.append((v, f"{name}(lr={lr:.3g})" if lr is not None else name))
    init = float(np.mean(inits)) if inits else math.nan
    if not cands or not math.isfinite(init):
        return NormStats(init, math.nan, None, True)
    best, who = min(cands)
    if not best < init:
        return NormStats(init, init - 1e-12 * max(1.0, abs(init)), who, True)
    return NormStats(init, best, who, False)


def median_curve(curves: Sequence[Curve], objective: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Running minimum of the seed-median curve on the union of the seeds' cost grids (each seed
    held at its last recorded value between its own records)."""
    grid = np.unique(np.concatenate([c.x for c in curves]))
    vals = []
    for c in curves:
        env = metrics.lower_envelope(c.objective(objective))
        idx = np.searchsorted(c.x, grid, side="right") - 1
        vals.append(np.where(idx >= 0, env[np.clip(idx, 0, None)], np.inf))
    return grid, metrics.lower_envelope(np.median(np.stack(vals), axis=0))


def score_run(r: MethodRun, norm: dict) -> RunScore:
    seeds = []
    for c in r.selected:
        nt = metrics.normalize_loss(c.test, norm["test"].init, norm["test"].best)
        ntr = metrics.normalize_loss(c.train, norm["train"].init, norm["train"].best)
        seeds.append(SeedScore(seed=c.seed, final_train=float(c.train[-1]), final_test=float(c.test[-1]),
                               norm_final_train=float(ntr[-1]), norm_final_test=float(nt[-1]),
                               norm_area=metrics.mean_over_curve(c.x, nt),
                               diverged=c.diverged or float(nt[-1]) >= metrics.NORM_CLIP))
    mx, mt = median_curve(r.selected) if r.selected else (np.zeros(0), np.zeros(0))
    return RunScore(method=r.name, kind=r.kind, hparams=r.hparams, selected_on=r.selected_on,
                    selection_scores=list(r.selection_scores), seeds=seeds, median_x=mx, median_test=mt,
                    skipped=r.skipped)


def compare(m: RunScore, b: RunScore, norm: NormStats, protocol: Protocol) -> Comparison:
    """The verdict of ``m`` against baseline ``b`` (rules in :mod:`eval.protocol`)."""
    span = norm.span
    floor = norm.best + protocol.tie_band * span if protocol.speedup_target == "band" and span > 0 else -math.inf
    sp = metrics.speedup(m.median_x, m.median_test, b.median_x, b.median_test, floor=floor)
    diff = (m.mean("final_test") - b.mean("final_test")) / span if span > 0 else math.nan
    w, band = protocol.win_speedup, protocol.tie_band
    if m.diverged_runs or not math.isfinite(diff):
        outcome = "loss"
    elif sp.value >= w and diff <= band:
        outcome = "win"
    elif sp.value >= w or 1 / w < sp.value < w or abs(diff) <= band:
        outcome = "tie"
    else:
        outcome = "loss"
    return Comparison(speedup=sp.value, reached=sp.reached, final_diff=diff, outcome=outcome)


def is_saturated(scores: Sequence[RunScore], norm: NormStats, num_steps: int, protocol: Protocol) -> bool:
    """Every method's seed-median test curve within the band of ``L_best`` by the saturation point."""
    target = norm.best + protocol.tie_band * norm.span
    limit = protocol.saturation_fraction * num_steps
    live = [s for s in scores if not s.skipped and s.median_x.size]
    return bool(live) and all(metrics.first_passage(s.median_x, s.median_test, target) <= limit for s in live)


def score_task(name: str, group: str, num_steps: int, runs: dict[str, MethodRun],
               baselines: Sequence[str], protocol: Protocol) -> TaskScore:
    norm = {obj: norm_stats(runs, baselines, obj) for obj in REPORTED}
    scores = {n: score_run(r, norm) for n, r in runs.items()}
    comps: dict = {}
    for n, s in scores.items():
        if s.skipped:
            continue
        comps[n] = {b: compare(s, scores[b], norm["test"], protocol) for b in baselines
                    if b != n and b in scores and not scores[b].skipped}
    return TaskScore(name=name, group=group, num_steps=num_steps, norm=norm, runs=scores,
                     comparisons=comps, saturated=is_saturated(list(scores.values()), norm["test"],
                                                               num_steps, protocol))


# ------------------------------------------------------------------------------------------------
def summary_vs(tasks: Sequence[TaskScore], method: str, vs: str, protocol: Protocol) -> dict:
    """The summary of ``method`` against baseline ``vs`` over the tasks where both ran."""
    rows = [t for t in tasks if method in t.comparisons and vs in t.comparisons[method]]
    outcomes = [t.comparisons[method][vs].outcome for t in rows]
    wins, ties, losses = (outcomes.count(o) for o in ("win", "tie", "loss"))
    n = len(rows)
    speeds = [t.comparisons[method][vs].speedup for t in rows]
    speeds = [v for v in speeds if not math.isnan(v)]

    def boot(field: str) -> tuple[float, list]:
        vals = [t.runs[method].mean(field) for t in rows]
        m, lo, hi = metrics.bootstrap_mean_ci(vals, protocol.bootstrap_samples, protocol.bootstrap_seed)
        return m, [lo, hi]

    ft, ft_ci = boot("norm_final_test")
    ftr, ftr_ci = boot("norm_final_train")
    area, area_ci = boot("norm_area")
    lo, hi = metrics.wilson_interval(wins, n)
    return {
        "vs": vs, "num_tasks": n, "wins": wins, "ties": ties, "losses": losses,
        "saturated": int(sum(t.saturated for t in rows)),
        # wins on saturated tasks are speed-ups in reaching the band of a task every method solves
        "wins_saturated": int(sum(t.saturated and t.comparisons[method][vs].outcome == "win" for t in rows)),
        "win_rate": wins / n if n else math.nan, "win_rate_ci95": [lo, hi],
        "win_or_tie_rate": (wins + ties) / n if n else math.nan,
        "median_speedup": float(np.median(speeds)) if speeds else math.nan,
        "mean_norm_final_test": ft, "mean_norm_final_test_ci95": ft_ci,
        "mean_norm_final_train": ftr, "mean_norm_final_train_ci95": ftr_ci,
        "mean_norm_area": area, "mean_norm_area_ci95": area_ci,
        "diverged": int(sum(t.runs[method].diverged_runs for t in rows)),
        "runs": int(sum(len(t.runs[method].seeds) for t in rows)),
    }


def summarize(tasks: Sequence[TaskScore], methods: Sequence[str], baselines: Sequence[str],
              protocol: Protocol) -> dict:
    """``{method: summary vs protocol.vs, plus by_baseline and by_group}``."""
    groups = sorted({t.group for t in tasks})
    out = {}
    for m in methods:
        others = [b for b in baselines if b != m]
        vs = protocol.vs if protocol.vs != m else (others[0] if others else None)
        if vs is None:
            continue
        s = summary_vs(tasks, m, vs, protocol)
        s["by_baseline"] = {b: summary_vs(tasks, m, b, protocol) for b in others}
        if len(groups) > 1:
            s["by_group"] = {g: summary_vs([t for t in tasks if t.group == g], m, vs, protocol)
                             for g in groups}
        out[m] = s
    return out
