"""The family registry: ``families()``, ``sample_config(family, seed)`` and shape signatures.

The registry is an immutable mapping built from the ``FamilySpec`` constants of
:mod:`tasksets.samplers`; adding a family means adding its spec to ``_ALL`` below.
"""
from __future__ import annotations

import hashlib
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from tasksets.ids import canonical_json, to_json_value
from tasksets.samplers.image import CONV_FAMILY, MLP_AE_FAMILY, MLP_FAMILY, MLP_VAE_FAMILY
from tasksets.samplers.quadratic import QUADRATIC_FAMILY
from tasksets.samplers.synthetic import SYNTHETIC_FAMILY
from tasksets.samplers.text import CHAR_RNN_LM_FAMILY
from tasksets.spec import FamilySpec

_ALL: tuple[FamilySpec, ...] = (
    MLP_FAMILY,
    CONV_FAMILY,
    MLP_AE_FAMILY,
    MLP_VAE_FAMILY,
    QUADRATIC_FAMILY,
    SYNTHETIC_FAMILY,
    CHAR_RNN_LM_FAMILY,
)
FAMILIES: Mapping[str, FamilySpec] = MappingProxyType({f.name: f for f in _ALL})


def families() -> list[str]:
    """Names of the registered task families (sorted)."""
    return sorted(FAMILIES)


def get_family(name: Any) -> FamilySpec:
    """The :class:`FamilySpec` registered as ``name``; ``ValueError`` lists the options."""
    if not isinstance(name, str):
        raise TypeError(f"family must be a str, got {type(name).__name__} ({name!r})")
    spec = FAMILIES.get(name)
    if spec is None:
        raise ValueError(f"unknown family {name!r}; registered families: {families()}")
    return spec


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def sample_config(family: str, seed: int, **space: Any) -> dict:
    """The cfg of ``family`` drawn from ``np.random.default_rng(seed)``.

    ``space`` overrides the family's sampling ranges (``get_family(f).default_space`` lists
    them), e.g. ``sample_config("mlp_family", 3, datasets=["digits_8x8"])``.  The cfg is a
    JSON-serializable dict whose ``"family"`` entry lets :func:`tasksets.build_task` dispatch.
    """
    spec = get_family(family)
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    body = spec.sample(rng, spec.space(**space))
    cfg = to_json_value({"family": spec.name, **body}, path=f"{family} cfg")
    if set(cfg) - {"family"} != set(spec.keys):  # a sampler bug, not user input
        raise RuntimeError(f"sampler of {family!r} produced keys {sorted(cfg)}, "
                           f"expected {sorted(spec.keys)}")
    return cfg


def shape_signature(cfg: Mapping[str, Any]) -> str:
    """Id shared by cfgs whose tasks have equal parameter and batch shapes.

    ``"<family>-<hash of the cfg's shape_keys entries>"``: cfgs with the same signature differ
    only in values (activation, initializer, seeds, scales), so their parameters and batches
    stack along a new leading axis for ``vmap``.
    """
    if not isinstance(cfg, Mapping) or "family" not in cfg:
        raise ValueError("shape_signature: cfg must be a dict with a 'family' key")
    spec = get_family(cfg["family"])
    missing = [k for k in spec.keys if k not in cfg]
    if missing:
        raise ValueError(f"shape_signature: {spec.name} cfg is missing key(s) {missing}")
    text = canonical_json(spec.shape_part(cfg))
    return f"{spec.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def group_by_shape(cfgs: Iterable[Mapping[str, Any]]) -> dict[str, list[dict]]:
    """``{shape_signature: [cfg, ...]}``, groups in first-seen order, cfgs in input order."""
    groups: dict[str, list[dict]] = {}
    for cfg in cfgs:
        groups.setdefault(shape_signature(cfg), []).append(dict(cfg))
    return groups
