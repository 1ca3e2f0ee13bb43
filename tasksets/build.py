"""``build_task(cfg) -> tasks.Task``: validate a cfg and construct its task."""
from __future__ import annotations

from typing import Any, Mapping

from tasks.base import Task
from tasksets.ids import to_json_value
from tasksets.registry import get_family


def validate_config(cfg: Any) -> dict:
    """``cfg`` checked against its family's keys; returns a plain-JSON copy.

    ``TypeError`` if ``cfg`` is not a mapping; ``ValueError`` naming the key when ``"family"``
    is missing or unknown, a key is missing, or an unknown key is present.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f"cfg must be a dict, got {type(cfg).__name__}")
    if "family" not in cfg:
        raise ValueError("cfg has no 'family' key (which family builds it?)")
    spec = get_family(cfg["family"])
    missing = [k for k in spec.keys if k not in cfg]
    if missing:
        raise ValueError(f"{spec.name} cfg is missing key {missing[0]!r} (all required: {list(spec.keys)})")
    unknown = sorted(set(cfg) - set(spec.keys) - {"family"})
    if unknown:
        raise ValueError(f"{spec.name} cfg has unknown key {unknown[0]!r} (allowed: {list(spec.keys)})")
    return to_json_value(dict(cfg), path=f"{spec.name} cfg")


def build_task(cfg: Mapping[str, Any]) -> Task:
    """The :class:`tasks.Task` described by ``cfg`` (from :func:`tasksets.sample_config` or a
    frozen taskset).  Bad values raise ``ValueError``/``TypeError`` naming the family and, via the
    task constructors, the offending argument.  The returned task carries its cfg as
    ``task.tasksets_cfg`` so :func:`tasksets.normalize` can find its statistics.
    """
    cfg = validate_config(cfg)
    spec = get_family(cfg["family"])
    try:
        task = spec.build(cfg)
    except (TypeError, ValueError) as err:
        message = f"{spec.name} cfg: {err}"
        try:  # keep the subclass (e.g. a dataset-unavailable error) so callers can catch it
            wrapped = type(err)(message)
        except Exception:  # noqa: BLE001 -- exotic constructor: fall back to the base class
            wrapped = (TypeError if isinstance(err, TypeError) else ValueError)(message)
        raise wrapped from err
    task.tasksets_cfg = cfg
    return task
