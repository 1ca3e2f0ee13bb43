"""Write an evaluation's outputs: ``results.json``, ``timing.json``, PNG figures and ``report.md``.

One evaluation covers one or more suites. ``results.json`` holds, besides every suite's full
results (``suites[suite]``, see :mod:`eval.pipeline`), the contract view
``summary[suite][method]`` (wins / ties / losses / saturated / win rate with its Wilson interval /
median speed-up / mean normalized losses / divergences, against the baseline named in ``vs``).
It holds no wall-clock figure, so two runs with the same seeds write byte-identical files; every
timing lives in ``timing.json`` (and in the report).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

from eval import plots
from eval.metrics import as_float

RESULTS_FILE = "results.json"
TIMING_FILE = "timing.json"
REPORT_FILE = "report.md"
SCHEMA = "learned_opt.eval.multi/1"


def _fmt(v: Any, digits: int = 3) -> str:
    f = as_float(v)
    if math.isnan(f):
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "-∞"
    out = f"{f:.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0.0 else out  # no "-0.000"


def _pct(v: Any) -> str:
    f = as_float(v)
    return "–" if math.isnan(f) else f"{100 * f:.0f}%"


def _ci(pair: Optional[list], pct: bool = False) -> str:
    if not pair or any(math.isnan(as_float(v)) for v in pair):
        return ""
    f = _pct if pct else _fmt
    return f" [{f(pair[0])}, {f(pair[1])}]"


def _dump(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def combine(results_by_suite: dict[str, dict]) -> dict:
    """One results document for several suites: ``summary[suite][method]`` plus every suite."""
    if not results_by_suite:
        raise ValueError("no suite results to combine")
    first = next(iter(results_by_suite.values()))
    return {"schema": SCHEMA, "protocol": first["protocol"], "vs": first["protocol"]["vs"],
            "summary": {s: r["summary"] for s, r in results_by_suite.items()},
            "suites": {s: {k: v for k, v in r.items() if k != "timing"} for s, r in results_by_suite.items()}}


def load_results(out_dir: str) -> dict:
    """Read ``results.json`` (and ``timing.json`` if present) back into one document."""
    with open(os.path.join(out_dir, RESULTS_FILE), encoding="utf-8") as f:
        results = json.load(f)
    tpath = os.path.join(out_dir, TIMING_FILE)
    if os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as f:
            results["timing"] = json.load(f)
    return results


def method_names(results: dict) -> list[str]:
    return [m["name"] for m in results["methods"]] + [b["name"] for b in results["baselines"]]


def _row(name: str, s: dict) -> str:
    return (f"| {name} | {s['vs']} | {s['num_tasks']} | {s['wins']} / {s['ties']} / {s['losses']} | "
            f"{s['saturated']} | {_pct(s['win_rate'])}{_ci(s['win_rate_ci95'], True)} | "
            f"{_pct(s['win_or_tie_rate'])} | {_fmt(s['median_speedup'], 2)} | "
            f"{_fmt(s['mean_norm_final_test'])}{_ci(s['mean_norm_final_test_ci95'])} | "
            f"{_fmt(s['mean_norm_final_train'])} | {_fmt(s['mean_norm_area'])} | {s['diverged']}/{s['runs']} |")


_HEAD = ("| method | vs | tasks | win / tie / loss | saturated | win rate [95% Wilson] | win or tie | "
         "median speed-up | mean norm. final test [95% bootstrap] | mean norm. final train | "
         "mean norm. area | diverged runs |\n|---|---|---:|---|---:|---|---:|---:|---|---:|---:|---:|")


def summary_table(results: dict, baselines: Optional[list] = None) -> str:
    """One row per method against the headline baseline, then against each other baseline
    listed in ``baselines`` (default: every baseline)."""
    rows = [_HEAD]
    for name in method_names(results):
        s = results["summary"].get(name)
        if s:
            rows.append(_row(name, s))
    evaluated = [m["name"] for m in results["methods"]]
    others = baselines if baselines is not None else [b["name"] for b in results["baselines"]]
    for name in evaluated:
        for b, s in results["summary"].get(name, {}).get("by_baseline", {}).items():
            if b != results["summary"][name]["vs"] and b in others:
                rows.append(_row(name, s))
    return "\n".join(rows)


def group_table(results: dict) -> str:
    rows = [_HEAD.replace("| method |", "| method / group |")]
    any_row = False
    for name in [m["name"] for m in results["methods"]]:
        for g, s in (results["summary"].get(name, {}).get("by_group") or {}).items():
            any_row = True
            rows.append(_row(f"{name} / {g}", s))
    return "\n".join(rows) if any_row else ""


def per_task_table(results: dict) -> str:
    names = method_names(results)
    vs = results["protocol"]["vs"]
    head = ("| task | steps | data | selected on | L_init → L_best (test) | " + " | ".join(names) + " |")
    rows = [head, "|" + "---|" * 5 + "---|" * len(names)]
    for t in results["tasks"]:
        n = t["norm"]["test"]
        cells = []
        for name in names:
            r = t["runs"].get(name, {})
            if r.get("skipped") or "norm_final_test" not in r:
                cells.append("–")
                continue
            c = _fmt(r["norm_final_test"])
            lr = (r.get("hparams") or {}).get("learning_rate")
            if lr is not None and r.get("grid"):
                c += f" (lr {lr:.3g})"
            comp = t["comparisons"].get(name, {}).get(vs)
            if comp is not None:
                c += f" {comp['outcome']} ×{_fmt(comp['speedup'], 2)}"
            if r.get("diverged"):
                c += f" ⚠{r['diverged']}"
            cells.append(c)
        sat = " (saturated)" if t.get("saturated") else ""
        rows.append(f"| {t['name']}{sat} | {t['num_steps']} | {t['data']} | {t['splits']['selection']} | "
                    f"{_fmt(n['init'], 4)} → {_fmt(n['best'], 4)} ({n.get('best_method') or '–'}) | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows)


def timing_lines(timing: dict) -> list[str]:
    if not timing:
        return ["_no timing recorded_"]
    return [f"{_fmt(timing.get('total_seconds'), 1)} s wall-clock, "
            f"{_fmt(timing.get('total_cpu_seconds'), 1)} s CPU time of this process (compile included)."]


RULES = ("Protocol: baselines' learning rates are selected on the `inner_valid` split (data-free tasks: "
         "on separate seeds) from one grid; every number is reported on the `test` split (data-free "
         "tasks: the exact expected loss) with train-time noise off. Normalized loss "
         "`(L − L_best)/(L_init − L_best)` clipped to [−2, 2], NaN/inf → 2 (counted as diverged). "
         "Speed-up: steps the tuned baseline needs to reach its best test loss{floor} ÷ steps the method "
         "needs to reach it (running minimum of seed-median curves; below 1 when the method never gets there). "
         "Win: speed-up ≥ {w} and final test loss not worse than the baseline's by more than {band:.0%} "
         "of `L_init − L_best`; tie: speed-up within (1/{w}, {w}) or final losses within that band; "
         "loss: otherwise, or any divergence. Saturated: every method within the band of `L_best` by "
         "{sat:.0%} of the horizon. Intervals: Wilson (win rate), seeded bootstrap over tasks (means).")


def rules_text(protocol: dict) -> str:
    band_floor = protocol.get("speedup_target", "baseline_best") == "band"
    return RULES.format(w=protocol["win_speedup"], band=protocol["tie_band"],
                        sat=protocol["saturation_fraction"],
                        floor=" (or the band around `L_best`, whichever is higher)" if band_floor else "")


def suite_markdown(results: dict, figures: dict, rel: str = "") -> list[str]:
    suite, cfg = results["suite"], results["config"]
    out = [f"## Suite `{suite['name']}` (v{suite['version']})", "",
           f"{suite['description']}. {len(results['tasks'])} tasks, seeds {cfg['seeds']}"
           + (f", horizon overridden to {cfg['num_steps_override']} steps" if cfg.get("num_steps_override") else "")
           + ".", "", summary_table(results), ""]
    groups = group_table(results)
    if groups:
        out += ["### By task group", "", groups, ""]
    out += ["### Per task (final normalized test loss; verdict and speed-up vs "
            f"`{results['protocol']['vs']}`)", "", per_task_table(results), ""]
    for label, path in figures.items():
        out += [f"![{label}]({rel}{os.path.basename(path)})", ""]
    out += timing_lines(results.get("timing") or {}) + [""]
    return out


def render_markdown(results_by_suite: dict[str, dict], figures: dict[str, dict], rel: str = "") -> str:
    """The report; figure links are ``rel`` + the figure's file name."""
    first = next(iter(results_by_suite.values()))
    out = ["# Evaluation", "", "**Evaluated:**"]
    for m in first["methods"]:
        out.append(f"- `{m['name']}` — {m.get('description', '')}")
    out += ["", "**Baselines:**"]
    for b in first["baselines"]:
        out.append(f"- `{b['name']}` — {b.get('description', '')}")
    out += ["", rules_text(first["protocol"]), ""]
    for s, r in results_by_suite.items():
        out += suite_markdown(r, figures.get(s, {}), rel)
    return "\n".join(out)


def write_report(results_by_suite: dict[str, dict] | dict, out_dir: str, *, figures: bool = True) -> dict:
    """Write ``results.json`` (see :func:`combine`), ``timing.json``, per-suite PNGs and
    ``report.md`` into ``out_dir``. Accepts one suite's results or ``{suite: results}``.

    Returns ``{"report", "results", "timing", "figures": {suite: {label: path}}}``.
    """
    if "schema" in results_by_suite and "tasks" in results_by_suite:  # one suite's results
        results_by_suite = {results_by_suite["suite"]["name"]: results_by_suite}
    os.makedirs(out_dir, exist_ok=True)
    rpath, tpath = os.path.join(out_dir, RESULTS_FILE), os.path.join(out_dir, TIMING_FILE)
    _dump(combine(results_by_suite), rpath)
    _dump({s: r.get("timing", {}) for s, r in results_by_suite.items()}, tpath)
    figs: dict = {}
    for s, r in results_by_suite.items():
        figs[s] = {}
        if not figures or not r["tasks"]:
            continue
        figs[s]["normalized test loss vs gradient evaluations"] = plots.plot_curves(
            r, os.path.join(out_dir, f"{s}_curves.png"))
        figs[s]["final normalized test loss per task"] = plots.plot_final(r, os.path.join(out_dir, f"{s}_final.png"))
        panels = plots.path_panels(r)
        if panels:
            figs[s]["optimizer paths on 2-D test functions"] = plots.plot_paths(
                panels, os.path.join(out_dir, f"{s}_paths.png"))
    mpath = os.path.join(out_dir, REPORT_FILE)
    with open(mpath, "w", encoding="utf-8") as f:
        f.write(render_markdown(results_by_suite, figs))
    return {"report": mpath, "results": rpath, "timing": tpath, "figures": figs}


def verdict_table(doc: dict, method: str, baselines: Optional[list] = None) -> str:
    """``method``'s win / tie / loss record against each baseline in each suite of an evaluation
    document (:func:`combine`) -- the table of data cards and closing notes."""
    rows = ["| suite | vs | win / tie / loss | saturated | win rate [95% Wilson] | win or tie | median speed-up | "
            "mean norm. final test [95% bootstrap] | mean norm. area | diverged runs |",
            "|---|---|---|---:|---|---:|---:|---|---:|---:|"]
    for suite, by_method in doc["summary"].items():
        s = by_method.get(method)
        if not s:
            continue
        for b, v in s.get("by_baseline", {}).items():
            if baselines is not None and b not in baselines:
                continue
            rows.append(f"| {suite} | {b} | {v['wins']} / {v['ties']} / {v['losses']} | {v['saturated']} | "
                        f"{_pct(v['win_rate'])}{_ci(v['win_rate_ci95'], True)} | {_pct(v['win_or_tie_rate'])} | "
                        f"{_fmt(v['median_speedup'], 2)} | {_fmt(v['mean_norm_final_test'])}"
                        f"{_ci(v['mean_norm_final_test_ci95'])} | {_fmt(v['mean_norm_area'])} | "
                        f"{v['diverged']}/{v['runs']} |")
    return "\n".join(rows)


def write_card_evaluation(card_path: str, doc: dict, method: str, command: str, seconds: float) -> None:
    """Replace the ``## Evaluation`` section of a data card with the protocol's verdict table."""
    with open(card_path, encoding="utf-8") as f:
        text = f.read()
    head = text.split("\n## Evaluation", 1)[0].rstrip("\n")
    section = ["", "## Evaluation", "",
               "Under the evaluation protocol (`eval/protocol.py`): baselines' learning rates selected on "
               "`inner_valid` (data-free tasks: separate seeds) from the 10-rate grid, every number reported on "
               "`test` (data-free: the exact expected loss) with train-time noise off, 3 seeds per task; "
               "win = speed-up ≥ 1.1 without a worse final loss, tie = speed-up within (1/1.1, 1.1) or final "
               "test loss within 1% of `L_init − L_best`. Reproduce with", "", f"`{command}`", "",
               f"({seconds / 60:.0f} min on the shared 2-core machine.)", "",
               verdict_table(doc, method), ""]
    with open(card_path, "w", encoding="utf-8") as f:
        f.write(head + "\n" + "\n".join(section))
