"""tasksets: TaskSet-style task families, named tasksets and loss normalization.

* ``families()``, ``sample_config(family, seed, **space) -> dict`` (a JSON cfg) and
  ``build_task(cfg) -> tasks.Task``;
* ``task_id(cfg)`` (stable hash id), ``shape_signature(cfg)`` / ``group_by_shape(cfgs)``
  (cfgs whose tasks share shapes, so they can be vmapped together);
* named tasksets: ``taskset_names()``, ``load_taskset(name)``, ``taskset_horizon(name)``,
  ``freeze_taskset(name, spec)``;
* normalization: ``normalize(task_or_cfg, loss)`` (initial loss -> 1, best baseline -> 0,
  clipped to [-2, 2], NaN/inf -> 2) from the statistics stored in
  ``tasksets/data/norm_stats/<taskset>.json``; ``compute_norm_stats(cfg, num_steps=...)`` runs
  the baseline sweep; ``python -m tasksets.stats --taskset NAME`` writes a taskset's file.
"""
from __future__ import annotations

from tasksets.baselines import DEFAULT_LEARNING_RATES, compute_norm_stats
from tasksets.build import build_task, validate_config
from tasksets.ids import canonical_json, task_id
from tasksets.normalization import load_norm_stats, lookup_stats, normalize, normalize_with, stored_norm_stats
from tasksets.registry import families, get_family, group_by_shape, sample_config, shape_signature
from tasksets.splits import (
    TASKSET_SPECS,
    freeze_taskset,
    generate_taskset,
    load_taskset,
    load_taskset_doc,
    taskset_horizon,
    taskset_names,
)

__all__ = [
    "DEFAULT_LEARNING_RATES", "TASKSET_SPECS", "build_task", "canonical_json",
    "compute_norm_stats", "families", "freeze_taskset", "generate_taskset", "get_family",
    "group_by_shape", "load_norm_stats", "load_taskset", "load_taskset_doc", "lookup_stats",
    "normalize", "normalize_with", "sample_config", "shape_signature", "stored_norm_stats",
    "task_id", "taskset_horizon", "taskset_names", "validate_config",
]
