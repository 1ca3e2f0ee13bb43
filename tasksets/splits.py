"""Named tasksets: frozen lists of cfgs for meta-training and for (OOD) evaluation.

A taskset is defined by a *spec*: a horizon (inner steps the taskset is meant for, used by the
normalization statistics) and a list of members ``{"family", "seed_start", "count", "space"}``
-- ``count`` cfgs of ``family`` from seeds ``seed_start, seed_start+1, ...`` with the sampling
``space`` overrides.  :func:`freeze_taskset` turns a spec into cfgs and writes them to
``tasksets/data/tasksets/<name>.json``; :func:`load_taskset` reads that file, so later edits of
the samplers cannot silently change a named taskset (the tests compare the frozen files with a
fresh :func:`freeze_taskset` and fail if sampling changed).

The named tasksets (see :data:`TASKSET_SPECS`):

* ``train``       -- the meta-training distribution: MLP classifiers (8x8 digits and the
  synthetic Gaussian-mixture / teacher datasets), quadratics, classic synthetic problems and
  MLP autoencoders on 8x8 digits; horizon 200;
* ``heldout``     -- the same families and ranges, unseen seeds;
* ``heldout2``    -- 24 more unseen seeds of the same (the second selection split, suite ``select2``);
* ``ood_family``  -- families never trained on: conv nets, VAEs, character RNN language models;
* ``ood_size``    -- wider and deeper MLPs, bigger quadratics;
* ``ood_dataset`` -- datasets never trained on: MNIST-1D and 16x16 digits;
* ``ood_horizon`` -- the training families at 5x the horizon (1000 steps);
* ``ood_horizon10`` -- the training families at 10x the horizon (2000 steps);
* ``train_pool``  -- 48 more samples of the training distribution (the default recipe's pool);
* ``indist``      -- 32 fresh samples of the training distribution (the evaluation suite ``indist``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

from tasksets.ids import task_id, to_json_value
from tasksets.registry import sample_config

TASKSETS_DIR = Path(__file__).resolve().parent / "data" / "tasksets"
FORMAT_VERSION = 1
TRAIN_HORIZON = 200

_DIGITS8 = {"datasets": ["digits_8x8"]}
_TRAIN_MLP = {"datasets": ["digits_8x8", "digits_8x8", "gaussian_mixture", "teacher_mlp"]}


def _train_members(seed_start: int, counts: Mapping[str, int]) -> list:
    spaces = {"mlp_family": _TRAIN_MLP, "quadratic_family": {}, "synthetic_family": {},
              "mlp_ae_family": _DIGITS8}
    return [{"family": fam, "seed_start": seed_start, "count": counts[fam], "space": spaces[fam]}
            for fam in ("mlp_family", "quadratic_family", "synthetic_family", "mlp_ae_family")
            if counts.get(fam)]


_TRAIN_COUNTS = {"mlp_family": 5, "quadratic_family": 3, "synthetic_family": 2, "mlp_ae_family": 2}

TASKSET_SPECS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "train": {
        "description": "meta-training distribution: MLP classifiers on 8x8 digits and synthetic "
                       "data, quadratics, synthetic problems, MLP autoencoders on 8x8 digits",
        "horizon": TRAIN_HORIZON,
        "members": _train_members(0, _TRAIN_COUNTS),
    },
    "heldout": {
        "description": "unseen seeds of the training families and ranges",
        "horizon": TRAIN_HORIZON,
        "members": _train_members(100_000, _TRAIN_COUNTS),
    },
    "heldout2": {
        "description": "24 more unseen seeds of the training families and ranges (the train "
                       "taskset's proportions): the second, larger selection split (suite select2)",
        "horizon": TRAIN_HORIZON,
        # the synthetic family's space is small: its seeds start at 800_010 because seed 800_001
        # draws a problem (8-d Rosenbrock, no wrappers) that is also in train_pool
        "members": [m if m["family"] != "synthetic_family" else {**m, "seed_start": 800_010}
                    for m in _train_members(800_000, {"mlp_family": 10, "quadratic_family": 6,
                                                      "synthetic_family": 4, "mlp_ae_family": 4})],
    },
    "train_pool": {
        "description": "48 further samples of the meta-training distribution (the train families "
                       "and spaces, unseen seeds): the task pool of the default meta-training recipe",
        "horizon": TRAIN_HORIZON,
        "members": _train_members(700_000, {"mlp_family": 20, "quadratic_family": 12,
                                            "synthetic_family": 8, "mlp_ae_family": 8}),
    },
    "indist": {
        "description": "32 fresh samples of the meta-training distribution (the train families and "
                       "spaces in the train taskset's proportions, unseen seeds): the indist suite",
        "horizon": TRAIN_HORIZON,
        "members": _train_members(600_000, {"mlp_family": 13, "quadratic_family": 8,
                                            "synthetic_family": 6, "mlp_ae_family": 5}),
    },
    "ood_family": {
        "description": "families never trained on: conv nets, VAEs, character RNN language models",
        "horizon": TRAIN_HORIZON,
        "members": [
            {"family": "conv_family", "seed_start": 200_000, "count": 3, "space": _DIGITS8},
            {"family": "mlp_vae_family", "seed_start": 200_000, "count": 3, "space": _DIGITS8},
            {"family": "char_rnn_lm_family", "seed_start": 200_000, "count": 3, "space": {}},
        ],
    },
    "ood_size": {
        "description": "wider and deeper MLPs (widths 129-256, 3-5 layers) and 128-512-d quadratics",
        "horizon": TRAIN_HORIZON,
        "members": [
            {"family": "mlp_family", "seed_start": 300_000, "count": 5,
             "space": {"datasets": ["digits_8x8"], "num_layers": [3, 5], "width": [129, 256],
                       "batch_sizes": [32, 64]}},
            {"family": "quadratic_family", "seed_start": 300_000, "count": 3,
             "space": {"dim": [128, 512]}},
        ],
    },
    "ood_dataset": {
        "description": "datasets never trained on: MNIST-1D and 16x16 digits",
        "horizon": TRAIN_HORIZON,
        "members": [
            {"family": "mlp_family", "seed_start": 400_000, "count": 3,
             "space": {"datasets": ["mnist1d"]}},
            {"family": "mlp_family", "seed_start": 410_000, "count": 3,
             "space": {"datasets": ["digits_16x16"]}},
            {"family": "mlp_ae_family", "seed_start": 400_000, "count": 2,
             "space": {"datasets": ["digits_16x16"]}},
        ],
    },
    "ood_horizon": {
        "description": "the training families at 5x the meta-training horizon",
        "horizon": 5 * TRAIN_HORIZON,
        "members": _train_members(500_000, {"mlp_family": 3, "quadratic_family": 2,
                                            "synthetic_family": 2, "mlp_ae_family": 1}),
    },
    "ood_horizon10": {
        "description": "the training families at 10x the meta-training horizon",
        "horizon": 10 * TRAIN_HORIZON,
        "members": _train_members(510_000, {"mlp_family": 2, "quadratic_family": 2,
                                            "synthetic_family": 2, "mlp_ae_family": 1}),
    },
})


def taskset_names() -> list[str]:
    """Names of the named tasksets (those with a spec here or a frozen file)."""
    frozen = {p.stem for p in TASKSETS_DIR.glob("*.json")} if TASKSETS_DIR.is_dir() else set()
    return sorted(set(TASKSET_SPECS) | frozen)


def _check_spec(spec: Mapping[str, Any]) -> dict:
    if not isinstance(spec, Mapping):
        raise TypeError(f"taskset spec must be a dict, got {type(spec).__name__}")
    for key in ("horizon", "members"):
        if key not in spec:
            raise ValueError(f"taskset spec is missing {key!r}")
    horizon = spec["horizon"]
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"taskset spec 'horizon' must be a positive int, got {horizon!r}")
    for i, m in enumerate(spec["members"]):
        for key in ("family", "seed_start", "count"):
            if key not in m:
                raise ValueError(f"taskset spec members[{i}] is missing {key!r}")
        extra = set(m) - {"family", "seed_start", "count", "space"}
        if extra:
            raise ValueError(f"taskset spec members[{i}] has unknown key {sorted(extra)[0]!r}")
    return to_json_value(dict(spec), path="taskset spec")


def generate_taskset(spec: Mapping[str, Any]) -> list[dict]:
    """The entries ``{"seed", "task_id", "cfg"}`` a spec describes (nothing is written)."""
    spec = _check_spec(spec)
    entries, seen = [], set()
    for m in spec["members"]:
        for seed in range(m["seed_start"], m["seed_start"] + m["count"]):
            cfg = sample_config(m["family"], seed, **m.get("space", {}))
            tid = task_id(cfg)
            if tid in seen:  # identical cfg drawn twice: keep one copy
                continue
            seen.add(tid)
            entries.append({"seed": seed, "task_id": tid, "cfg": cfg})
    return entries


def freeze_taskset(name: str, spec: Optional[Mapping[str, Any]] = None, *, write: bool = True,
                   directory: Optional[os.PathLike] = None) -> dict:
    """Generate the taskset ``name`` from ``spec`` (default: ``TASKSET_SPECS[name]``).

    Returns the document ``{"name", "format_version", "description", "horizon", "spec",
    "tasks": [{"seed", "task_id", "cfg"}, ...]}`` and, if ``write``, stores it as
    ``<directory or tasksets/data/tasksets>/<name>.json``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"taskset name must be a non-empty str, got {name!r}")
    if spec is None:
        if name not in TASKSET_SPECS:
            raise ValueError(f"no spec for taskset {name!r}; pass spec= (known: {sorted(TASKSET_SPECS)})")
        spec = TASKSET_SPECS[name]
    spec = _check_spec(spec)
    doc = {"name": name, "format_version": FORMAT_VERSION,
           "description": spec.get("description", ""), "horizon": spec["horizon"],
           "spec": spec, "tasks": generate_taskset(spec)}
    if write:
        path = Path(directory or TASKSETS_DIR) / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    return doc


def load_taskset_doc(name: str, directory: Optional[os.PathLike] = None) -> dict:
    """The frozen document of taskset ``name`` (see :func:`freeze_taskset`)."""
    path = Path(directory or TASKSETS_DIR) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"unknown taskset {name!r}: no frozen file {path}; "
                         f"named tasksets: {taskset_names()}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_taskset(name: str, directory: Optional[os.PathLike] = None) -> list[dict]:
    """The cfgs of the frozen taskset ``name``, in their frozen order."""
    return [entry["cfg"] for entry in load_taskset_doc(name, directory)["tasks"]]


def taskset_horizon(name: str, directory: Optional[os.PathLike] = None) -> int:
    """The number of inner steps taskset ``name`` is meant to be run (and normalized) for."""
    return int(load_taskset_doc(name, directory)["horizon"])
