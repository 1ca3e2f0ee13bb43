"""Self-describing checkpoints of learned optimizers.

File format (version 1)
-----------------------
A checkpoint is one msgpack file (written with :mod:`flax.serialization`). The outer record is::

    {"magic": "learned_opt.checkpoint", "format_version": 1,
     "sha256": <hex digest of payload>, "payload": <bytes>}

and ``payload`` is itself a msgpack record::

    {"class": "MLPLOpt", "module": "learned_opt.mlp_lopt",
     "config": <JSON of lopt.config()>, "theta": <nested dict of arrays>,
     "metadata": <JSON of the user's metadata dict or null>}

so :func:`load` rebuilds the optimizer (``cls(**config)``) and θ with no other file. Arrays keep
their dtype and bytes (the round trip is bit-exact). A file that is truncated, corrupted (checksum
mismatch), from a newer format, or whose θ does not match the architecture's structure/shapes raises
a ``ValueError`` saying so.

Run directories
---------------
An outer-training run directory holds checkpoints named ``theta_<step:08d>.lopt`` (see
:func:`checkpoint_filename`, :func:`save_step`). ``load(run_dir)`` loads the file with the highest
step (:func:`latest_checkpoint`). Files are written atomically (temporary file + rename), so a
reader never sees a half-written checkpoint.

Using a checkpoint as an optax optimizer::

    tx = learned_opt.as_optax("run/theta_00005000.lopt", num_steps=1000)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params, loss=loss)
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from learned_opt.base import LearnedOptimizer, Theta
from learned_opt.registry import class_names, optimizer_class

MAGIC = "learned_opt.checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIX = ".lopt"
#: File-name stems of the per-step files in a run directory: θ, and the moving average θ̄
#: (``outer_train`` runs with ``theta_average`` > 0).
THETA_STEM = "theta"
AVERAGE_STEM = "theta_average"

PathLike = str | os.PathLike


def checkpoint_filename(step: int, stem: str = THETA_STEM) -> str:
    """File name ``<stem>_<step:08d>.lopt`` of the checkpoint of outer step ``step`` in a run
    directory (``stem`` :data:`THETA_STEM` for θ, :data:`AVERAGE_STEM` for θ̄)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return f"{stem}_{int(step):08d}{CHECKPOINT_SUFFIX}"


def latest_checkpoint(run_dir: PathLike, stem: str = THETA_STEM) -> Path:
    """The ``<stem>_<step>.lopt`` file with the highest step in ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such run directory: {run_dir}")
    pattern = re.compile(rf"^{re.escape(stem)}_(\d+){re.escape(CHECKPOINT_SUFFIX)}$")
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := pattern.match(p.name))]
    if not found:
        raise FileNotFoundError(f"run directory {run_dir} holds no {stem}_<step>{CHECKPOINT_SUFFIX} checkpoint")
    return max(found)[1]


def _to_numpy_tree(theta: Theta) -> Any:
    def conv(x):
        return np.asarray(jax.device_get(x))
    if not isinstance(theta, dict):
        raise TypeError(f"theta must be a dict of arrays, got {type(theta).__name__}")
    return jax.tree_util.tree_map(conv, theta)


def _check_theta_matches(lopt: LearnedOptimizer, theta: Theta, where: str) -> None:
    expected = jax.eval_shape(lopt.init, jax.random.PRNGKey(0))
    exp_flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got_flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(theta)}
    missing = sorted(set(exp_flat) - set(got_flat))
    extra = sorted(set(got_flat) - set(exp_flat))
    if missing or extra:
        raise ValueError(f"{where}: theta does not match {type(lopt).__name__} "
                         f"(missing {missing}, unexpected {extra})")
    for k, spec in exp_flat.items():
        shape = tuple(np.shape(got_flat[k]))
        if shape != tuple(spec.shape):
            raise ValueError(f"{where}: theta{k} has shape {shape}, {type(lopt).__name__} expects "
                             f"{tuple(spec.shape)}")


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serializable: {e}") from e


def save(path: PathLike, lopt: LearnedOptimizer, theta: Theta, metadata: dict | None = None) -> Path:
    """Write ``lopt``'s class + config, ``theta`` and ``metadata`` to one checkpoint file at ``path``.

    ``metadata`` must be a JSON-serializable dict (or None). Returns the path written.
    """
    if not isinstance(lopt, LearnedOptimizer):
        raise TypeError(f"lopt must be a LearnedOptimizer, got {type(lopt).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    theta_np = _to_numpy_tree(theta)
    _check_theta_matches(lopt, theta_np, "save")
    cls = type(lopt)
    payload = serialization.msgpack_serialize({
        "class": cls.__name__,
        "module": cls.__module__,
        "config": _json(lopt.config(), "lopt.config()"),
        "theta": theta_np,
        "metadata": _json(metadata, "metadata"),
    })
    record = serialization.msgpack_serialize({
        "magic": MAGIC, "format_version": FORMAT_VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload,
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(record)
            f.flush()
            os.fsync(f.fileno())  # the data are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_step(run_dir: PathLike, step: int, lopt: LearnedOptimizer, theta: Theta,
              metadata: dict | None = None) -> Path:
    """``save(run_dir / theta_<step:08d>.lopt, ...)`` — the run-directory convention."""
    return save(Path(run_dir) / checkpoint_filename(step), lopt, theta, metadata)


def _resolve_class(name: Any, module: Any) -> type:
    if not isinstance(name, str):
        raise ValueError("checkpoint has no valid class name")
    if name in class_names():
        return optimizer_class(name)
    if not isinstance(module, str):
        raise ValueError(f"checkpoint class {name!r} is not registered and names no module")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"checkpoint class {module}.{name} cannot be imported: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, LearnedOptimizer)):
        raise ValueError(f"checkpoint class {module}.{name} is not a LearnedOptimizer")
    return cls


def load_record(path: PathLike) -> tuple[LearnedOptimizer, Theta, dict | None]:
    """Like :func:`load` but also returns the stored metadata: ``(lopt, theta, metadata)``."""
    path = Path(path)
    if path.is_dir():
        path = latest_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    data = path.read_bytes()
    try:
        record = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several exception types on bad input
        raise ValueError(f"{path} is not a learned_opt checkpoint (truncated or corrupted: {e})") from e
    if not isinstance(record, dict) or record.get("magic") != MAGIC:
        raise ValueError(f"{path} is not a learned_opt checkpoint (bad magic)")
    version = record.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version} is newer than supported "
                         f"({FORMAT_VERSION}); upgrade learned_opt")
    payload = record.get("payload")
    if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != record.get("sha256"):
        raise ValueError(f"{path}: checkpoint is corrupted (checksum mismatch)")
    try:
        content: Any = serialization.msgpack_restore(payload)
        config = json.loads(content["config"])
        metadata = json.loads(content["metadata"])
        theta_np = content["theta"]
        cls = _resolve_class(content["class"], content.get("module"))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: malformed checkpoint payload ({e!r})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path}: stored config is not a dict")
    try:
        lopt = cls(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: stored config {config} does not construct {cls.__name__}: {e}") from e
    _check_theta_matches(lopt, theta_np, str(path))
    theta = jax.tree_util.tree_map(jnp.asarray, theta_np)
    return lopt, theta, metadata


def load(path: PathLike) -> tuple[LearnedOptimizer, Theta]:
    """Rebuild ``(lopt, theta)`` from a checkpoint file, or from the newest ``theta_<step>.lopt``
    of a run directory."""
    lopt, theta, _ = load_record(path)
    return lopt, theta


def as_optax(path_or_theta: PathLike | Theta, num_steps: int | None = None,
             lopt: LearnedOptimizer | None = None) -> optax.GradientTransformationExtraArgs:
    """An optax optimizer from a checkpoint path (file or run directory) or from ``theta`` + ``lopt``.

    ``update(grads, state, params, loss=...)`` accepts the training loss as an extra argument.
    """
    if isinstance(path_or_theta, (str, os.PathLike)):
        loaded, theta = load(path_or_theta)
        if lopt is not None and (type(lopt) is not type(loaded) or lopt.config() != loaded.config()):
            raise ValueError(f"checkpoint holds {loaded!r}, which differs from the lopt given ({lopt!r})")
        lopt = loaded
    else:
        if lopt is None:
            raise ValueError("as_optax(theta) needs lopt= (the architecture θ belongs to)")
        theta = path_or_theta
    return lopt.opt_fn(theta, num_steps=num_steps)
