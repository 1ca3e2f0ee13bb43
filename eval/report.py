"""Write an evaluation's outputs: ``results.json``, ``timing.json``, PNG figures and ``report.md``.

``results.json`` holds everything except wall-clock figures, so two runs with the same seeds
produce byte-identical files; every timing lives in ``timing.json`` (and in the report).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

from eval import plots
from eval.pipeline import as_float

RESULTS_FILE = "results.json"
TIMING_FILE = "timing.json"
REPORT_FILE = "report.md"


def _fmt(v: Any, digits: int = 3) -> str:
    f = as_float(v) if not isinstance(v, (int, float)) or v is None else float(v)
    if math.isnan(f):
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "-∞"
    out = f"{f:.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0.0 else out  # no "-0.000"


def _iv(d: Optional[dict], digits: int = 3) -> str:
    if not d:
        return "–"
    m, lo, hi, n = as_float(d["mean"]), as_float(d["lo"]), as_float(d["hi"]), d.get("n", 0)
    if math.isnan(m):
        return "–"
    if n is None or n <= 1 or math.isnan(lo):
        return _fmt(m, digits)
    return f"{_fmt(m, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * float(v):.0f}%"


def _dump(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def load_results(out_dir: str) -> dict:
    """Read ``results.json`` (and ``timing.json`` if present) back into one results dict."""
    with open(os.path.join(out_dir, RESULTS_FILE), encoding="utf-8") as f:
        results = json.load(f)
    tpath = os.path.join(out_dir, TIMING_FILE)
    if os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as f:
            results["timing"] = json.load(f)
    return results


def method_names(results: dict) -> list[str]:
    return [m["name"] for m in results["methods"]] + [b["name"] for b in results["baselines"]]


def summary_table(results: dict) -> str:
    rows = ["| method | tasks | final normalized loss | normalized loss over the run | speed-up vs tuned Adam "
            "(geo-mean [CI]; median) | beats tuned Adam | beats L-BFGS | diverged runs |",
            "|---|---:|---|---|---|---:|---:|---:|"]
    for name in method_names(results):
        s = results["summary"].get(name)
        if not s or not s["num_tasks"]:
            continue
        sp = _iv(s["speedup"], 2)
        if s.get("speedup_censored_runs"):
            sp += f" ({s['speedup_censored_runs']} ≥)"
        lb = _pct(s["beats_lbfgs"])
        if s["beats_lbfgs"] is not None:
            lb += f" of {s['num_vs_lbfgs']}"
        rows.append(f"| {name} | {s['num_tasks']} | {_iv(s['norm_final'])} | {_iv(s['norm_mean'])} | "
                    f"{sp}; {_fmt(s['speedup_median'], 2)} | {_pct(s['beats_adam'])} | {lb} | "
                    f"{s['divergences']}/{s['runs']} |")
    return "\n".join(rows)


def group_table(results: dict) -> str:
    """Per method and task group (the parts of a mixed suite such as ``ood``)."""
    rows = ["| method | group | tasks | final normalized loss | speed-up (geo-mean) | beats tuned Adam | "
            "beats L-BFGS | diverged runs |", "|---|---|---:|---|---|---:|---:|---:|"]
    any_row = False
    for name in method_names(results):
        for g, s in (results["summary"].get(name, {}).get("by_group") or {}).items():
            if not s["num_tasks"]:
                continue
            any_row = True
            rows.append(f"| {name} | {g} | {s['num_tasks']} | {_iv(s['norm_final'])} | {_iv(s['speedup'], 2)} | "
                        f"{_pct(s['beats_adam'])} | {_pct(s['beats_lbfgs'])} | {s['divergences']}/{s['runs']} |")
    return "\n".join(rows) if any_row else ""


def per_task_table(results: dict) -> str:
    names = method_names(results)
    head = "| task | steps | params | exact | L_init | L_best (by) | " + " | ".join(names) + " |"
    rows = [head, "|" + "---|" * 6 + "---:|" * len(names)]
    for t in results["tasks"]:
        n = t["norm"]
        cells = []
        for name in names:
            r = t["runs"].get(name, {})
            if r.get("skipped") or "norm_final" not in r:
                cells.append("–")
                continue
            c = _fmt(r["norm_final"]["mean"])
            if r.get("hparams"):
                c += " (" + ", ".join(f"lr={v:.3g}" if k == "learning_rate" else f"{k}={v:.3g}"
                                      for k, v in r["hparams"].items()) + ")"
            if r.get("divergences"):
                c += f" ⚠{r['divergences']}"
            cells.append(c)
        rows.append(f"| {t['name']} | {t['num_steps']} | {t['num_params']} | {'yes' if t['exact'] else 'no'} | "
                    f"{_fmt(n['init'], 4)} | {_fmt(n['best'], 4)} ({n.get('best_method') or '–'}) | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows)


def lbfgs_table(results: dict) -> str:
    evaluated = [m["name"] for m in results["methods"]]
    rows = ["| task | exact | L-BFGS-B final | L-BFGS-B grad. evals | " +
            " | ".join(evaluated + ["tuned Adam"]) + " | best |",
            "|---|---|---:|---:|" + "---:|" * (len(evaluated) + 1) + "---|"]
    any_row = False
    for t in results["tasks"]:
        lb = t["runs"].get("L-BFGS-B")
        if not lb or lb.get("skipped") or "norm_final" not in lb:
            continue
        any_row = True
        cost = sum(as_float(s["cost"]) for s in lb["seeds"]) / max(1, len(lb["seeds"]))
        cands = {"L-BFGS-B": as_float(lb["norm_final"]["mean"])}
        cells = []
        for name in evaluated + ["adam"]:
            r = t["runs"].get(name, {})
            v = as_float(r["norm_final"]["mean"]) if "norm_final" in r else math.nan
            cells.append(_fmt(v))
            if not math.isnan(v):
                cands[name if name != "adam" else "tuned Adam"] = v
        best = min(cands, key=lambda k: cands[k])
        rows.append(f"| {t['name']} | {'yes' if t['exact'] else 'no'} | {_fmt(cands['L-BFGS-B'])} | {cost:.0f} | "
                    + " | ".join(cells) + f" | {best} |")
    return "\n".join(rows) if any_row else "_L-BFGS-B did not run on any task of this suite._"


def timing_section(results: dict) -> str:
    timing = results.get("timing") or {}
    if not timing:
        return "_no timing recorded_"
    lines = [f"Whole suite: **{_fmt(timing.get('total_seconds'), 1)} s** wall-clock, "
             f"{_fmt(timing.get('total_cpu_seconds'), 1)} s CPU time of this process (compile included; "
             f"on a shared machine wall-clock exceeds CPU time). Per task (compile + run wall-clock seconds "
             f"per method):", "",
             "| task | total s | " + " | ".join(method_names(results)) + " |",
             "|---|---:|" + "---:|" * len(method_names(results))]
    for name, tt in timing.get("tasks", {}).items():
        cells = []
        for m in method_names(results):
            x = tt.get(m)
            cells.append("–" if not x else f"{_fmt(x['compile'], 1)} + {_fmt(x['run'], 2)}")
        lines.append(f"| {name} | {_fmt(tt.get('total'), 1)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(results: dict, figures: dict) -> str:
    suite = results["suite"]
    cfg = results["config"]
    out = [f"# Evaluation: suite `{suite['name']}` (v{suite['version']})", "",
           f"{suite['description']}. {len(results['tasks'])} tasks, seeds {cfg['seeds']}"
           + (f", horizon overridden to {cfg['num_steps_override']} steps" if cfg.get("num_steps_override") else "")
           + ".", "", "**Evaluated:**"]
    for m in results["methods"]:
        out.append(f"- `{m['name']}` — {m.get('description', '')}")
    out += ["", "**Baselines:**"]
    for b in results["baselines"]:
        extra = ""
        if b.get("grid") and len(b["grid"]) > 1:
            rates = [g.get("learning_rate") for g in b["grid"]]
            extra = f" (rates {', '.join(f'{r:.3g}' for r in rates if r is not None)})"
        out.append(f"- `{b['name']}` — {b.get('description', '')}{extra}")
    out += ["", "## Summary", "", summary_table(results), "",
            "Normalized loss `(L − L_best)/(L_init − L_best)` clipped to [−2, 2] (NaN/inf → 2): 1 = the "
            "initial loss, 0 = the best seed-averaged loss any baseline reached on that task within the same "
            "budget (on minibatch tasks only the first-order baselines count; negative = better). Intervals are 95% Student-t intervals over tasks "
            "(of per-task seed means). Speed-up = gradient evaluations tuned Adam (lower envelope of "
            "its whole learning-rate sweep, same seed) needs to reach the method's final loss ÷ those the "
            "method needed; `≥` marks runs where Adam never got there (lower bounds). “Beats” compares "
            "per-task mean final normalized loss. A run diverged if its loss became non-finite or ended "
            "above its initial value. Classical methods count every function/gradient evaluation (and "
            "Hessian-vector product) against the same budget as first-order steps; on minibatch tasks "
            "they minimize the whole training split (exact gradients) while first-order methods see "
            "minibatches.", ""]
    groups = group_table(results)
    if groups:
        out += ["### By task group", "", groups, ""]
    out += ["## Final normalized loss per task (mean over seeds)", "", per_task_table(results), "",
            "## L-BFGS-B comparison", "", lbfgs_table(results), "", "## Figures", ""]
    for label, path in figures.items():
        out.append(f"![{label}]({os.path.basename(path)})")
        out.append("")
    out += ["## Wall time", "", timing_section(results), ""]
    return "\n".join(out)


def write_report(results: dict, out_dir: str, *, figures: bool = True) -> dict:
    """Write ``results.json``, ``timing.json``, the PNGs and ``report.md`` into ``out_dir``.

    Returns ``{"report", "results", "timing", "figures": {label: path}}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    stable = {k: v for k, v in results.items() if k != "timing"}
    rpath = os.path.join(out_dir, RESULTS_FILE)
    tpath = os.path.join(out_dir, TIMING_FILE)
    _dump(stable, rpath)
    _dump(results.get("timing", {}), tpath)
    figs: dict = {}
    if figures and results["tasks"]:
        figs["normalized loss vs gradient evaluations"] = plots.plot_curves(
            results, os.path.join(out_dir, "curves.png"), xaxis="x")
        if results.get("timing"):
            figs["normalized loss vs wall-clock seconds"] = plots.plot_curves(
                results, os.path.join(out_dir, "curves_wall.png"), xaxis="wall")
        figs["final normalized loss per task"] = plots.plot_final(results, os.path.join(out_dir, "final.png"))
        panels = plots.path_panels(results)
        if panels:
            figs["optimizer paths on 2-D test functions"] = plots.plot_paths(
                panels, os.path.join(out_dir, "paths.png"))
    md = render_markdown(results, figs)
    mpath = os.path.join(out_dir, REPORT_FILE)
    with open(mpath, "w", encoding="utf-8") as f:
        f.write(md)
    return {"report": mpath, "results": rpath, "timing": tpath, "figures": figs}
