"""A disk cache of the baselines' runs, so evaluating a learned optimizer costs only its own runs.

The baselines (tuned Adam, Adam + cosine, SGD + momentum, L-BFGS-B) do not depend on the method
being evaluated: for one task, horizon, seed list and protocol their runs are deterministic. The
cache stores each task's :class:`eval.runner.MethodRun` records as JSON (every float round-trips
exactly), keyed by a SHA-256 of everything they depend on -- the task's id and config, the
horizon, the seeds, the protocol fields that shape a baseline run, the versions of jax / jaxlib /
optax / scipy and :data:`CACHE_VERSION` (bumped whenever runner code changes what a run records).
A cached evaluation therefore writes the same ``results.json`` as an uncached one (tested).

Location: ``$LEARNED_OPT_EVAL_CACHE`` or ``~/.cache/learned_opt/eval_baselines``; ``cache=False``
(``learned-opt eval --no-cache``) bypasses it. Tasks without a config (built by a bare callable)
are never cached.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from eval.protocol import Protocol
from eval.runner import Curve, MethodRun

CACHE_VERSION = 1
_PROTOCOL_FIELDS = ("learning_rates", "baselines", "eval_points", "dense_records_max_steps",
                    "eval_examples", "selection_seed_offset")


def cache_dir() -> Path:
    return Path(os.environ.get("LEARNED_OPT_EVAL_CACHE") or Path.home() / ".cache" / "learned_opt" / "eval_baselines")


def _versions() -> dict:
    import jax
    import jaxlib
    import optax
    import scipy

    return {"jax": jax.__version__,
            "jaxlib": jaxlib.__version__,  # pyright: ignore[reportPrivateImportUsage]  (public, not re-exported)
            "optax": optax.__version__, "scipy": scipy.__version__}


def cache_key(task_id: str, config: dict, num_steps: int, seeds: Sequence[int], protocol: Protocol) -> str:
    p = protocol.as_dict()
    payload = {"task_id": task_id, "config": config, "num_steps": int(num_steps),
               "seeds": [int(s) for s in seeds], "protocol": {k: p[k] for k in _PROTOCOL_FIELDS},
               "versions": _versions(), "cache_version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _num(v: Any) -> Any:
    f = float(v)
    return f if math.isfinite(f) else repr(f)


def _arr(xs: list) -> np.ndarray:
    return np.asarray([float(v) for v in xs], np.float64)


def _curve_dict(c: Curve) -> dict:
    return {"seed": c.seed, "steps": c.steps.tolist(), "x": [_num(v) for v in c.x],
            "train": [_num(v) for v in c.train], "valid": [_num(v) for v in c.valid],
            "test": [_num(v) for v in c.test], "info": c.info}


def _curve(d: dict) -> Curve:
    return Curve(seed=int(d["seed"]), steps=np.asarray(d["steps"], np.int64), x=_arr(d["x"]),
                 train=_arr(d["train"]), valid=_arr(d["valid"]), test=_arr(d["test"]), info=d["info"])


def _run_dict(r: MethodRun) -> dict:
    return {"name": r.name, "kind": r.kind, "grid": r.grid, "selection_scores": [_num(v) for v in r.selection_scores],
            "chosen": r.chosen, "selected_on": r.selected_on, "skipped": r.skipped,
            "curves": [[_curve_dict(c) for c in row] for row in r.curves]}


def _run(d: dict) -> MethodRun:
    return MethodRun(name=d["name"], kind=d["kind"], grid=d["grid"],
                     curves=[[_curve(c) for c in row] for row in d["curves"]],
                     selection_scores=[float(v) for v in d["selection_scores"]], chosen=int(d["chosen"]),
                     selected_on=d["selected_on"], skipped=d["skipped"])


def load(key: str, names: Sequence[str]) -> Optional[dict[str, MethodRun]]:
    """The cached runs of ``names`` under ``key``, or None if any is missing or unreadable."""
    path = cache_dir() / f"{key}.json"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        runs = {n: _run(data["runs"][n]) for n in names}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return runs


def store(key: str, runs: dict[str, MethodRun]) -> None:
    """Write ``runs`` under ``key`` atomically (a failure to write only costs the cache)."""
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{key}.json.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"cache_version": CACHE_VERSION, "runs": {n: _run_dict(r) for n, r in runs.items()}}, f)
        os.replace(tmp, directory / f"{key}.json")
    except OSError:
        pass
