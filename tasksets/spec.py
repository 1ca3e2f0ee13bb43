"""``FamilySpec``: what the registry knows about one task family.

A family is a pair of pure functions over JSON cfgs:

* ``sample(rng, space) -> dict``: draws a cfg (without the ``"family"`` key) from an
  ``np.random.Generator``; ``space`` holds the sampling ranges (JSON values), the family's
  ``default_space`` unless :func:`tasksets.sample_config` was given overrides;
* ``build(cfg) -> tasks.Task``: constructs the task; ``cfg`` has exactly ``keys`` plus
  ``"family"`` (checked before ``build`` is called).

``shape_keys`` are the cfg entries that decide the shapes of the parameters and batches; the
other entries (activation, initializer, seeds, scales, ...) change values only, so cfgs equal on
``shape_keys`` can share one vmapped computation (see :func:`tasksets.shape_signature`).  A
family whose shapes depend on nested entries gives ``shape_fn(cfg) -> JSON value`` instead.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

import numpy as np

from tasks.base import Task


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    name: str
    sample: Callable[[np.random.Generator, Mapping[str, Any]], dict]
    build: Callable[[dict], Task]
    keys: tuple[str, ...]
    shape_keys: tuple[str, ...]
    default_space: Mapping[str, Any]
    description: str = ""
    shape_fn: Optional[Callable[[dict], Any]] = None

    def shape_part(self, cfg: Mapping[str, Any]) -> Any:
        """The part of ``cfg`` that determines parameter and batch shapes."""
        if self.shape_fn is not None:
            return self.shape_fn(dict(cfg))
        return {k: cfg[k] for k in self.shape_keys}

    def __post_init__(self):
        object.__setattr__(self, "default_space", MappingProxyType(dict(self.default_space)))
        missing = set(self.shape_keys) - set(self.keys)
        if missing:
            raise ValueError(f"family {self.name!r}: shape_keys {sorted(missing)} are not cfg keys")

    def space(self, **overrides: Any) -> dict:
        """The default sampling space with ``overrides`` applied (unknown names raise)."""
        unknown = sorted(set(overrides) - set(self.default_space))
        if unknown:
            raise ValueError(f"family {self.name!r} has no sampling option(s) {unknown}; "
                             f"options: {sorted(self.default_space)}")
        space = dict(self.default_space)
        space.update(overrides)
        return space
