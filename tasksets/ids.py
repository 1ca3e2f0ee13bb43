"""Canonical JSON and stable task ids.

A cfg's id is a hash of its *canonical* JSON (keys sorted, no whitespace, floats in Python's
shortest round-trip ``repr``), prefixed with the family name for readability::

    task_id(cfg) = f"{cfg['family']}-{sha256(canonical_json(cfg))[:16]}"

so it depends only on the cfg's content, not on key order, dict type, tuples vs lists or NumPy
scalar types, and is the same on every machine and Python version.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np


def to_json_value(value: Any, path: str = "cfg") -> Any:
    """``value`` converted to plain JSON types (dict/list/str/int/float/bool/None).

    Tuples become lists and NumPy scalars/arrays become Python values; anything else (objects,
    non-string dict keys, non-finite floats) raises ``TypeError``/``ValueError`` naming its path.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: dict key {k!r} is not a string")
            out[k] = to_json_value(v, f"{path}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist(), path)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: non-finite float {value!r} is not allowed in a cfg")
        return float(value)
    raise TypeError(f"{path}: value {value!r} of type {type(value).__name__} is not JSON-serializable")


def canonical_json(cfg: dict) -> str:
    """The canonical JSON text of ``cfg`` (sorted keys, compact separators)."""
    return json.dumps(to_json_value(cfg), sort_keys=True, separators=(",", ":"), allow_nan=False)


def task_id(cfg: dict) -> str:
    """Stable id of a task cfg: ``"<family>-<first 16 hex digits of sha256(canonical JSON)>"``."""
    if not isinstance(cfg, dict):
        raise TypeError(f"task_id: cfg must be a dict, got {type(cfg).__name__}")
    family = cfg.get("family")
    if not isinstance(family, str):
        raise ValueError("task_id: cfg has no string 'family' key")
    digest = hashlib.sha256(canonical_json(cfg).encode("utf-8")).hexdigest()
    return f"{family}-{digest[:16]}"
