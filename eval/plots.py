"""Headless matplotlib figures from a results dict (see :mod:`eval.pipeline`).

* :func:`plot_curves` -- normalized loss vs gradient evaluations (or vs wall-clock seconds), one
  panel per task, one line per method (mean over seeds, band = min..max over seeds);
* :func:`plot_final` -- final normalized loss per task and method (bars with 95% intervals) and a
  box plot of every run's final normalized loss per method;
* :func:`plot_paths` -- optimizer paths over contour maps of 2-D test functions.

Every figure has a fixed pixel size (``width x height`` at ``DPI``; no tight bounding box), so
callers and tests know the PNG's shape.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from eval.metrics import as_float as _f  # noqa: E402

DPI = 100
PANEL_W, PANEL_H = 4.0, 3.2  # inches per task panel




def _arr(xs: Sequence[Any]) -> np.ndarray:
    return np.array([_f(v) for v in xs], dtype=np.float64)


def _colors(names: Sequence[str]) -> dict:
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _method_names(results: dict) -> list[str]:
    return [m["name"] for m in results.get("methods", [])] + [b["name"] for b in results.get("baselines", [])]


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return int(math.ceil(n / cols)), cols


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _step_interp(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Value of the last record at or before each grid point (NaN before the first record)."""
    idx = np.searchsorted(x, grid, side="right") - 1
    out = np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan)
    return out


def curve_figure_size(num_tasks: int) -> tuple[int, int]:
    """Pixel size ``(width, height)`` of :func:`plot_curves`' figure."""
    rows, cols = _grid_shape(num_tasks)
    return int(round(cols * PANEL_W * DPI)), int(round((rows * PANEL_H + 0.9) * DPI))


def plot_curves(results: dict, path: str) -> str:
    """Normalized test loss per task vs gradient evaluations (one panel per task, seed mean and
    min..max band per method)."""
    tasks = results["tasks"]
    if not tasks:
        raise ValueError("results hold no tasks to plot")
    names = _method_names(results)
    colors = _colors(names)
    rows, cols = _grid_shape(len(tasks))
    w, h = curve_figure_size(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(w / DPI, h / DPI), squeeze=False)
    for k, t in enumerate(tasks):
        ax = axes[k // cols][k % cols]
        for name in names:
            r = t["runs"].get(name)
            if r is None or r.get("skipped") or not r.get("seeds"):
                continue
            ys, xs = [], []
            for s in r["seeds"]:
                xs.append(_arr(s["curve"]["x"]))
                ys.append(_arr(s["curve"]["norm_test"]))
            if not ys:
                continue
            hi = max(float(np.nanmax(x)) for x in xs)
            grid = np.linspace(0.0, hi if hi > 0 else 1.0, 200)
            Y = np.stack([_step_interp(x, y, grid) for x, y in zip(xs, ys)])
            with np.errstate(all="ignore"):
                mean = np.nanmean(Y, axis=0) if np.any(np.isfinite(Y)) else np.full(grid.shape, np.nan)
            ax.plot(grid, mean, color=colors[name], label=name, lw=1.5)
            if Y.shape[0] > 1:
                ax.fill_between(grid, np.nanmin(Y, axis=0), np.nanmax(Y, axis=0), color=colors[name],
                                alpha=0.15, lw=0)
        ax.set_title(t["name"] + (" (saturated)" if t.get("saturated") else ""), fontsize=8)
        ax.set_ylim(-0.3, 1.3)
        ax.axhline(0.0, color="0.6", lw=0.6, ls=":")
        ax.set_xlabel("gradient evaluations", fontsize=7)
        ax.set_ylabel("normalized test loss", fontsize=7)
        ax.tick_params(labelsize=6)
    for k in range(len(tasks), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = [], []
    for ax in axes.ravel():
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            if lb not in labels:
                handles.append(hd)
                labels.append(lb)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 8), fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.5 / (h / DPI), top=1 - 0.45 / (h / DPI),
                        hspace=0.45, wspace=0.3)
    return _save(fig, path)


def final_figure_size(num_tasks: int) -> tuple[int, int]:
    """Pixel size of :func:`plot_final`'s figure."""
    return int(round(max(8.0, 0.9 * num_tasks + 5.0) * DPI)), int(round(4.5 * DPI))


def plot_final(results: dict, path: str) -> str:
    """Final normalized test loss: per task and method (seed mean, bars from the seed minimum to
    maximum) and a box plot of all runs per method."""
    tasks = results["tasks"]
    names = _method_names(results)
    colors = _colors(names)
    w, h = final_figure_size(len(tasks))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(w / DPI, h / DPI),
                                 gridspec_kw={"width_ratios": [max(2, len(tasks)), 2]})
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        means, los, his, pos = [], [], [], []
        for k, t in enumerate(tasks):
            r = t["runs"].get(name)
            if r is None or r.get("skipped") or "norm_final_test" not in r:
                continue
            vals = [_f(sd["norm_final_test"]) for sd in r["seeds"]]
            m = _f(r["norm_final_test"])
            means.append(m)
            los.append(m - min(vals))
            his.append(max(vals) - m)
            pos.append(k + (i - (len(names) - 1) / 2) * width)
        if pos:
            ax.bar(pos, means, width=width, color=colors[name], label=name,
                   yerr=[np.nan_to_num(los), np.nan_to_num(his)], error_kw={"lw": 0.6, "capsize": 1.5})
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([t["name"].split("/")[-1] for t in tasks], rotation=40, ha="right", fontsize=6)
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_ylabel("final normalized test loss", fontsize=8)
    ax.set_title("per task: mean over seeds, bars min..max (0 = best baseline, 1 = initial loss)", fontsize=8)
    ax.set_ylim(-0.5, 2.05)
    ax.legend(fontsize=6, ncol=2)
    data, labels = [], []
    for name in names:
        vals = [_f(s["norm_final_test"]) for t in tasks for s in (t["runs"].get(name) or {}).get("seeds", [])]
        if vals:
            data.append(vals)
            labels.append(name)
    if data:
        bx.boxplot(data, tick_labels=labels)
    bx.tick_params(axis="x", labelsize=6, rotation=40)
    bx.set_title("all runs", fontsize=8)
    bx.axhline(0.0, color="0.5", lw=0.6)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.22, top=0.92, wspace=0.2)
    return _save(fig, path)


def paths_figure_size(num_functions: int) -> tuple[int, int]:
    rows, cols = _grid_shape(num_functions, max_cols=3)
    return int(round(cols * 5.0 * DPI)), int(round((rows * 4.6 + 0.5) * DPI))


def plot_paths(panels: Sequence[dict], path: str) -> str:
    """Optimizer paths over contour maps.

    ``panels``: ``[{"title", "X", "Y", "Z" (meshgrid arrays), "paths": {label: [[x, y], ...]},
    "minimizers": [[x, y]], "start": [x, y]}]``.
    """
    if not panels:
        raise ValueError("no 2-D panels to plot")
    labels = []
    for p in panels:
        for lb in p["paths"]:
            if lb not in labels:
                labels.append(lb)
    colors = _colors(labels)
    rows, cols = _grid_shape(len(panels), max_cols=3)
    w, h = paths_figure_size(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(w / DPI, h / DPI), squeeze=False)
    for k, p in enumerate(panels):
        ax = axes[k // cols][k % cols]
        X, Y, Z = (np.asarray(p[a], np.float64) for a in ("X", "Y", "Z"))
        fin = np.isfinite(Z)
        zmin = np.min(Z[fin]) if np.any(fin) else 0.0
        # colour by log(1 + f - min f): valleys and ridges stay visible at every scale
        L = np.where(fin, np.log1p(np.maximum(Z - zmin, 0.0)), np.nan)
        hi = np.nanmax(L) if np.any(fin) else 1.0
        levels = np.linspace(0.0, hi if hi > 0 else 1.0, 30)
        ax.contourf(X, Y, L, levels=levels, cmap="viridis", alpha=0.9)
        ax.contour(X, Y, L, levels=levels[::2], colors="white", linewidths=0.3, alpha=0.5)
        for lb, pts in p["paths"].items():
            xy = np.asarray(pts, np.float64).reshape(-1, 2)
            ax.plot(xy[:, 0], xy[:, 1], "-", color=colors[lb], lw=1.2, label=lb)
            ax.plot(xy[-1, 0], xy[-1, 1], "o", color=colors[lb], ms=4, mec="k", mew=0.5)
        if p.get("start") is not None:
            ax.plot(*p["start"], "s", color="white", ms=5, mec="k")
        for m in p.get("minimizers", []) or []:
            ax.plot(m[0], m[1], "*", color="red", ms=9, mec="k", mew=0.5)
        ax.set_xlim(X.min(), X.max())
        ax.set_ylim(Y.min(), Y.max())
        ax.set_title(p.get("title", ""), fontsize=9)
        ax.tick_params(labelsize=6)
    for k in range(len(panels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles = [Line2D([], [], color=colors[lb], lw=2) for lb in labels]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 7), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.05, top=1 - 0.5 / (h / DPI), hspace=0.3, wspace=0.2)
    return _save(fig, path)


def path_panels(results: dict, grid_fn: Optional[Callable[[dict], tuple]] = None, num: int = 160) -> list[dict]:
    """Panels for :func:`plot_paths` from the ``paths`` entries of a results dict; the contour grid
    is recomputed by rebuilding each task from its suite config (``grid_fn(task_summary)``)."""
    by_name = {t["name"]: t for t in results.get("suite", {}).get("tasks", [])}
    panels = []
    for t in results["tasks"]:
        pdata = t.get("paths")
        if not pdata:
            continue
        summ = by_name.get(t["name"])
        if grid_fn is not None:
            X, Y, Z = grid_fn(summ)  # pyright: ignore[reportArgumentType]  (summ: present for a task with paths)
        else:
            X, Y, Z = _rebuild_grid(summ, num)
        panels.append({"title": t["name"], "X": X, "Y": Y, "Z": Z,
                       "paths": {k: v["xy"] for k, v in pdata["paths"].items()},
                       "minimizers": pdata.get("minimizers"), "start": pdata.get("start")})
    return panels


def _rebuild_grid(summary: Optional[dict], num: int):
    from eval.suites import _import

    if summary is None or "ctor" not in summary.get("config", {}):
        raise ValueError("cannot rebuild a 2-D task without its constructor config")
    task = _import(summary["config"]["ctor"])(**summary["config"]["kwargs"])
    return task.grid(num)
