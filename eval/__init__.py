"""eval: evaluate learned and hand-designed optimizers on named suites.

* ``Protocol`` -- the evaluation rules (selection on ``inner_valid`` / separate seeds, report on
  ``test``, normalization, speed-up, win / tie / loss, intervals), see :mod:`eval.protocol`;
* ``compare(methods, suite) -> Table`` -- one summary row per method against tuned Adam;
* ``evaluate(lopt, theta, ("indist", "ood"), out_dir) -> {suite: results}`` and
  ``write_report(results_by_suite, out_dir)`` -- report.md, results.json (deterministic; holds
  ``summary[suite][method]``), timing.json and PNG figures;
* ``run_suite`` (one suite's results dict), ``run_method`` (one method on one task -> curves),
  ``suite_names`` / ``get_suite``, ``metrics`` (normalization, speed-up, intervals).

Names resolve lazily so that ``import eval`` stays light (no JAX until something runs).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "compare": "compare",
    "evaluate": "compare",
    "evaluate_suites": "compare",
    "Table": "compare",
    "table_from_results": "compare",
    "run_suite": "pipeline",
    "Protocol": "protocol",
    "DEFAULT_PROTOCOL": "protocol",
    "write_report": "report",
    "load_results": "report",
    "run_method": "runner",
    "prepare_task": "runner",
    "Curve": "runner",
    "MethodRun": "runner",
    "get_suite": "suites",
    "suite_names": "suites",
    "describe_suites": "suites",
    "custom_suite": "suites",
    "as_method": "methods",
    "learned_method": "methods",
    "adam_sweep": "baselines",
    "adam_cosine_sweep": "baselines",
    "sgdm_sweep": "baselines",
    "scipy_baseline": "baselines",
    "default_baselines": "baselines",
}

__all__ = sorted(_LAZY)  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"eval.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
