"""The Python front door: ``compare(methods, suite) -> Table`` and ``evaluate(lopt, theta, suites, out_dir)``."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

from eval.metrics import as_float
from eval.pipeline import run_suite
from eval.protocol import Protocol
from eval.report import write_report


@dataclasses.dataclass
class Table:
    """Per-method summary of one suite run (against the protocol's ``vs`` baseline);
    ``results`` holds the full results dict."""

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


COLUMNS = ["method", "vs", "tasks", "wins", "ties", "losses", "saturated", "win_rate", "win_rate_lo",
           "win_rate_hi", "median_speedup", "mean_norm_final_test", "mean_norm_final_train",
           "mean_norm_area", "diverged"]


def table_from_results(results: dict) -> Table:
    rows = []
    for m in [x["name"] for x in results["methods"]] + [x["name"] for x in results["baselines"]]:
        s = results["summary"].get(m)
        if not s or not s["num_tasks"]:
            continue
        lo, hi = (as_float(v) for v in s["win_rate_ci95"])
        rows.append([m, s["vs"], s["num_tasks"], s["wins"], s["ties"], s["losses"], s["saturated"],
                     as_float(s["win_rate"]), lo, hi, as_float(s["median_speedup"]),
                     as_float(s["mean_norm_final_test"]), as_float(s["mean_norm_final_train"]),
                     as_float(s["mean_norm_area"]), s["diverged"]])
    return Table(columns=list(COLUMNS), rows=rows, results=results)


def compare(methods: Sequence[Any], suite: Any = "smoke", *, seeds: Any = None,
            num_steps: Optional[int] = None, protocol: Optional[Protocol] = None,
            suite_size: Optional[int] = None, verbose: bool = False) -> Table:
    """Run ``methods`` and the protocol's baselines on ``suite``; one summary row per method.

    ``methods``: anything :func:`eval.methods.as_method` accepts -- ``"adam"``, ``"adam@0.01"``,
    a scipy method name, an optax transform, a ``(lopt, theta)`` pair, a learned optimizer, a
    checkpoint path, ``"untrained:mlp"``.
    """
    results = run_suite(methods, suite, seeds=seeds, num_steps=num_steps, protocol=protocol,
                        suite_size=suite_size, verbose=verbose)
    return table_from_results(results)


def _as_methods(lopt: Any, theta: Any, name: Optional[str]) -> list:
    import optax

    from eval.methods import as_method, learned_method

    if isinstance(lopt, optax.GradientTransformation):  # a NamedTuple, not a list of methods
        return [as_method(lopt)]
    if isinstance(lopt, (list, tuple)) and not (len(lopt) == 2 and hasattr(lopt[0], "opt_fn")):
        return [as_method(m) for m in lopt]
    if hasattr(lopt, "opt_fn") and theta is not None:
        return [learned_method(lopt, theta, name=name)]
    return [as_method(lopt)]


def evaluate(lopt: Any, theta: Any = None, suites: Any = ("indist", "ood"), out_dir: Optional[str] = None,
             *, seeds: Any = None, num_steps: Optional[int] = None, name: Optional[str] = None,
             protocol: Optional[Protocol] = None, suite_size: Optional[int] = None,
             verbose: bool = True, figures: bool = True, cache: bool = True) -> dict:
    """Evaluate a learned optimizer (at ``theta``; its initial θ when ``None``) on one or more
    suites against the protocol's baselines; with ``out_dir``, write ``report.md``,
    ``results.json``, ``timing.json`` and PNGs there.

    ``lopt`` may also be anything :func:`eval.methods.as_method` accepts, or a list of those.
    Returns ``{suite: results}`` (plus ``"outputs"`` naming the written files when ``out_dir``
    is set). ``cache``: reuse the baselines' runs from the disk cache (:mod:`eval.baseline_cache`).
    """
    methods = _as_methods(lopt, theta, name)
    if isinstance(suites, str) or not isinstance(suites, (list, tuple)):
        suites = [suites]
    out: dict = {}
    for s in suites:
        res = run_suite(methods, s, seeds=seeds, num_steps=num_steps, protocol=protocol,
                        suite_size=suite_size, verbose=verbose, cache=cache)
        out[res["suite"]["name"]] = res
    if out_dir is not None:
        out["outputs"] = write_report({k: v for k, v in out.items()}, out_dir, figures=figures)
    return out


def evaluate_suites(lopt: Any, theta: Any = None, suites: Sequence[str] = ("indist", "ood"),
                    out_dir: Optional[str] = None, **kwargs) -> dict:
    """:func:`evaluate` over several suites (kept for callers of the earlier API)."""
    return evaluate(lopt, theta, tuple(suites), out_dir, **kwargs)
