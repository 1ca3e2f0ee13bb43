"""The Python front door: ``compare(methods, suite) -> Table`` and ``evaluate(lopt, theta, suite, out_dir)``."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

from eval.pipeline import as_float, run_suite
from eval.report import write_report


@dataclasses.dataclass
class Table:
    """Per-method summary of a suite run; ``results`` holds the full results dict."""

    columns: list
    rows: list
    results: dict = dataclasses.field(repr=False, default_factory=dict)

    def to_markdown(self) -> str:
        def cell(v):
            if isinstance(v, float):
                return "–" if math.isnan(v) else f"{v:.3f}"
            return "–" if v is None else str(v)

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def row(self, method: str) -> dict:
        for r in self.as_dicts():
            if r["method"] == method:
                return r
        raise KeyError(f"no row for method {method!r}; rows: {[r[0] for r in self.rows]}")

    def __str__(self) -> str:
        return self.to_markdown()


COLUMNS = ["method", "tasks", "norm_final", "norm_final_lo", "norm_final_hi", "norm_mean", "speedup",
           "speedup_median", "beats_adam", "beats_lbfgs", "divergences", "runs"]


def table_from_results(results: dict) -> Table:
    rows = []
    for m in [x["name"] for x in results["methods"]] + [x["name"] for x in results["baselines"]]:
        s = results["summary"].get(m)
        if not s or not s["num_tasks"]:
            continue
        rows.append([m, s["num_tasks"], as_float(s["norm_final"]["mean"]), as_float(s["norm_final"]["lo"]),
                     as_float(s["norm_final"]["hi"]), as_float(s["norm_mean"]["mean"]),
                     as_float(s["speedup"]["mean"]), as_float(s["speedup_median"]),
                     s["beats_adam"], s["beats_lbfgs"], s["divergences"], s["runs"]])
    return Table(columns=list(COLUMNS), rows=rows, results=results)


def compare(methods: Sequence[Any], suite: Any = "smoke", *, seeds: Any = None,
            num_steps: Optional[int] = None, baselines: Optional[Sequence[Any]] = None,
            verbose: bool = False) -> Table:
    """Run ``methods`` and the suite's baselines on ``suite``; one summary row per method.

    ``methods``: anything :func:`eval.methods.as_method` accepts -- ``"adam"``, ``"sgdm"``, a scipy
    method name, an optax transform, a ``(lopt, theta)`` pair, a learned optimizer, a checkpoint
    path, ``"untrained:mlp"``.
    """
    results = run_suite(methods, suite, seeds=seeds, num_steps=num_steps, baselines=baselines,
                        verbose=verbose)
    return table_from_results(results)


def evaluate(lopt: Any, theta: Any = None, suite: Any = "indist", out_dir: Optional[str] = None, *,
             seeds: Any = None, num_steps: Optional[int] = None, name: Optional[str] = None,
             baselines: Optional[Sequence[Any]] = None, verbose: bool = True) -> dict:
    """Evaluate a learned optimizer (at ``theta``; its initial θ when ``None``) on ``suite`` against
    the baselines; with ``out_dir``, write ``report.md``, ``results.json``, ``timing.json`` and PNGs.

    ``lopt`` may also be anything :func:`eval.methods.as_method` accepts, or a list of those.
    Returns the results dict (with ``"outputs"`` naming the written files when ``out_dir`` is set).
    """
    import optax

    from eval.methods import as_method, learned_method

    if isinstance(lopt, optax.GradientTransformation):  # a NamedTuple, not a list of methods
        methods = [as_method(lopt)]
    elif isinstance(lopt, (list, tuple)) and not (len(lopt) == 2 and hasattr(lopt[0], "opt_fn")):
        methods = [as_method(m) for m in lopt]
    elif hasattr(lopt, "opt_fn") and theta is not None:
        methods = [learned_method(lopt, theta, name=name)]
    else:
        methods = [as_method(lopt)]
    results = run_suite(methods, suite, seeds=seeds, num_steps=num_steps, baselines=baselines,
                        verbose=verbose)
    if out_dir is not None:
        results["outputs"] = write_report(results, out_dir)
    return results


def evaluate_suites(lopt: Any, theta: Any = None, suites: Sequence[str] = ("indist", "ood"),
                    out_dir: Optional[str] = None, *, seeds: Any = None, num_steps: Optional[int] = None,
                    name: Optional[str] = None, verbose: bool = True) -> dict:
    """:func:`evaluate` on several suites; with ``out_dir``, each suite's outputs go to
    ``out_dir/<suite>/`` and ``out_dir/report.md`` collects their summary tables.

    Returns ``{suite_name: results}``.
    """
    import os

    from eval.report import group_table, summary_table
    from eval.suites import get_suite

    out = {}
    for s in suites:
        sname = get_suite(s).name
        sub = None if out_dir is None else os.path.join(out_dir, sname)
        out[sname] = evaluate(lopt, theta, s, sub, seeds=seeds, num_steps=num_steps, name=name,
                              verbose=verbose)
    if out_dir is not None:
        lines = ["# Evaluation summary", ""]
        for s, res in out.items():
            t = res.get("timing", {})
            lines += [f"## Suite `{s}` — [full report]({s}/report.md)", "",
                      f"{res['suite']['description']}; {len(res['tasks'])} tasks, seeds {res['config']['seeds']}; "
                      f"{t.get('total_seconds', float('nan')):.0f} s wall-clock.", "", summary_table(res), ""]
            groups = group_table(res)
            if groups:
                lines += [groups, ""]
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return out
