"""TaskSet-style loss normalization.

For a task with initial loss ``L_init`` (mean loss at initialization) and best baseline loss
``L_best`` (the lowest loss reached by the baseline sweep: Adam over a grid of learning rates,
plus L-BFGS on full-batch tasks)::

    n(L) = clip((L - L_best) / (L_init - L_best), -2, 2),      n(NaN) = n(±inf) = 2

so the loss at initialization maps to 1, the best baseline loss to 0, and a diverged run to the
worst value, 2.  The statistics of the named tasksets are stored in the repository as JSON under
``tasksets/data/norm_stats/<taskset>.json`` keyed by :func:`tasksets.task_id`; :func:`normalize`
looks a task up there, or takes explicit statistics, and never guesses.
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from tasksets.ids import task_id

CLIP_LOW = -2.0
CLIP_HIGH = 2.0
NORM_STATS_DIR = Path(__file__).resolve().parent / "data" / "norm_stats"
FORMAT_VERSION = 1


def _stats_pair(stats: Mapping[str, Any]) -> tuple[float, float]:
    """(loss_init, loss_best) from a stats mapping, validated."""
    if not isinstance(stats, Mapping):
        raise TypeError(f"stats must be a mapping with 'loss_init' and 'loss_best', got {type(stats).__name__}")
    for key in ("loss_init", "loss_best"):
        if key not in stats:
            raise ValueError(f"stats is missing the key {key!r} (have {sorted(stats)})")
    loss_init, loss_best = float(stats["loss_init"]), float(stats["loss_best"])
    if not (math.isfinite(loss_init) and math.isfinite(loss_best)):
        raise ValueError(f"stats must be finite, got loss_init={loss_init}, loss_best={loss_best}")
    if not loss_init > loss_best:
        raise ValueError(
            f"degenerate stats: loss_init={loss_init} must exceed loss_best={loss_best} "
            "(the baseline sweep never improved on the initial loss)")
    return loss_init, loss_best


def normalize_with(loss: Any, loss_init: float, loss_best: float) -> Any:
    """``clip((loss - loss_best) / (loss_init - loss_best), -2, 2)`` with NaN/inf -> 2.

    Works on Python/NumPy scalars and arrays (returns NumPy) and on JAX arrays, also inside
    ``jit`` (returns JAX).
    """
    xp = jnp if isinstance(loss, jax.Array) else np
    loss = xp.asarray(loss, dtype=xp.result_type(loss, np.float32)) if xp is np else loss
    scale = loss_init - loss_best
    n = (loss - loss_best) / scale
    n = xp.clip(n, CLIP_LOW, CLIP_HIGH)
    n = xp.where(xp.isfinite(loss), n, CLIP_HIGH)
    if xp is np and np.ndim(n) == 0:
        return float(n)
    return n


# ----------------------------------------------------------------------------------------------
# stored statistics

def norm_stats_path(taskset: str, directory: Optional[os.PathLike] = None) -> Path:
    return Path(directory or NORM_STATS_DIR) / f"{taskset}.json"


@functools.lru_cache(maxsize=64)
def _read_json(path: str, mtime_ns: int) -> dict:  # mtime in the key: edits are seen
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_norm_stats(taskset: str, directory: Optional[os.PathLike] = None) -> dict:
    """The stored statistics file of ``taskset`` (a dict with ``"tasks": {task_id: stats}``)."""
    path = norm_stats_path(taskset, directory)
    if not path.exists():
        have = stored_norm_stats(directory)
        raise ValueError(f"no normalization statistics for taskset {taskset!r} at {path}; "
                         f"stored tasksets: {have}. Create them with "
                         f"`python -m tasksets.stats --taskset {taskset}`")
    data = _read_json(str(path), path.stat().st_mtime_ns)
    return json.loads(json.dumps(data))  # a private copy: callers may mutate it


def stored_norm_stats(directory: Optional[os.PathLike] = None) -> list[str]:
    """Names of the tasksets with a stored statistics file."""
    d = Path(directory or NORM_STATS_DIR)
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def lookup_stats(cfg: dict, *, taskset: Optional[str] = None,
                 directory: Optional[os.PathLike] = None) -> dict:
    """Stored statistics of the task ``cfg`` (searched in ``taskset``, or in every stored file).

    Raises ``ValueError`` when no stored file has the task, or when several files hold different
    statistics for it (pass ``taskset=`` to choose).
    """
    tid = task_id(cfg)
    names = [taskset] if taskset is not None else stored_norm_stats(directory)
    found = {}
    for name in names:
        entry = load_norm_stats(name, directory)["tasks"].get(tid)
        if entry is not None:
            found[name] = entry
    if not found:
        where = f"taskset {taskset!r}" if taskset else f"any stored taskset {names}"
        raise ValueError(
            f"no normalization statistics for task {tid} in {where}; compute them with "
            f"tasksets.compute_norm_stats(cfg, num_steps=...) and pass stats=, or store them "
            f"with `python -m tasksets.stats`")
    distinct = {(e["loss_init"], e["loss_best"]) for e in found.values()}
    if len(distinct) > 1:
        raise ValueError(f"task {tid} has different statistics in tasksets {sorted(found)}; "
                         "pass taskset= to choose")
    return next(iter(found.values()))


def _cfg_of(task_or_cfg: Any) -> dict:
    if isinstance(task_or_cfg, Mapping):
        return dict(task_or_cfg)
    cfg = getattr(task_or_cfg, "tasksets_cfg", None)
    if cfg is None:
        raise ValueError(
            f"cannot find normalization statistics for {task_or_cfg!r}: it was not built by "
            "tasksets.build_task; pass its cfg dict or explicit stats={'loss_init':..., 'loss_best':...}")
    return cfg


def normalize(task_or_cfg: Any, loss: Any, *, stats: Optional[Mapping[str, Any]] = None,
              taskset: Optional[str] = None) -> Any:
    """Normalized loss of ``loss`` (scalar or array) for a task.

    ``task_or_cfg`` is a cfg dict, or a Task built by :func:`tasksets.build_task`; its statistics
    are looked up in the stored files (``taskset=`` restricts the search) unless ``stats`` (a
    mapping with ``loss_init`` and ``loss_best``) is given, in which case ``task_or_cfg`` may be
    ``None``.  A task without statistics raises ``ValueError``.
    """
    if stats is None:
        stats = lookup_stats(_cfg_of(task_or_cfg), taskset=taskset)
    loss_init, loss_best = _stats_pair(stats)
    return normalize_with(loss, loss_init, loss_best)


def write_norm_stats(taskset: str, entries: Mapping[str, dict], meta: Mapping[str, Any],
                     directory: Optional[os.PathLike] = None) -> Path:
    """Write ``{"taskset", "format_version", "meta", "tasks"}`` as sorted, indented JSON."""
    path = norm_stats_path(taskset, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"taskset": taskset, "format_version": FORMAT_VERSION, "meta": dict(meta),
           "tasks": {k: entries[k] for k in sorted(entries)}}
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return path

