"""Atomic, exact checkpoints of the whole outer-training state.

A resume checkpoint (``<run_dir>/resume.npz``) stores every leaf of the trainer's state pytree —
θ, the outer optimizer state, the estimator state (inner parameters and optimizer states of all
tasks, PES accumulators, step counters, task configs), the RNG key (which also fixes the data
position: batches are drawn from keys inside the jitted step), the outer step and the count of
dropped steps — as raw arrays, bit for bit, plus a JSON header with the tree structure, the shapes
and dtypes and the run's config. It is written to a temporary file in the same directory, flushed
and fsync'ed, then ``os.replace``'d over the old one, so a crash leaves the previous checkpoint
intact.

Restoring needs a *template* state of the same structure (the trainer builds one from the config);
the stored structure, shapes and dtypes must match it exactly, otherwise ``ValueError``.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

RESUME_FILE = "resume.npz"
FORMAT = "outer_train.resume/1"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def save_state(run_dir: str | os.PathLike, state: Any, info: dict | None = None) -> Path:
    """Write ``state`` (any pytree of arrays) and JSON ``info`` atomically to ``run_dir/resume.npz``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    arrays = [np.asarray(jax.device_get(x)) for x in leaves]
    header = {"format": FORMAT, "treedef": str(treedef),
              "shapes": [list(a.shape) for a in arrays], "dtypes": [a.dtype.str for a in arrays],
              "info": info or {}}
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8),
             **{f"leaf_{i:05d}": a for i, a in enumerate(arrays)})
    path = run_dir / RESUME_FILE
    _atomic_write_bytes(path, buf.getvalue())
    return path


def has_state(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / RESUME_FILE).exists()


def read_info(run_dir: str | os.PathLike) -> dict:
    """The JSON header's ``info`` of a run directory's resume checkpoint."""
    with np.load(Path(run_dir) / RESUME_FILE) as data:
        return json.loads(bytes(data["__header__"]).decode())["info"]


def load_state(run_dir: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Restore the state saved in ``run_dir`` into the structure of ``template``."""
    path = Path(run_dir) / RESUME_FILE
    if not path.exists():
        raise ValueError(f"no resume checkpoint {path}")
    t_leaves, t_def = jax.tree_util.tree_flatten(template)
    with np.load(path) as data:
        header = json.loads(bytes(data["__header__"]).decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"{path}: unknown checkpoint format {header.get('format')!r}")
        if header["treedef"] != str(t_def) or len(header["shapes"]) != len(t_leaves):
            raise ValueError(f"{path}: the stored state does not match this config's state structure "
                             "(different estimator, optimizer, task or number of tasks?)")
        leaves = []
        for i, t in enumerate(t_leaves):
            a = data[f"leaf_{i:05d}"]
            # shape/dtype without fetching: the template may be sharded across processes
            t_shape = tuple(t.shape) if hasattr(t, "shape") else np.shape(t)
            t_dtype = np.dtype(t.dtype) if hasattr(t, "dtype") else np.asarray(t).dtype
            if a.shape != t_shape or a.dtype != t_dtype:
                raise ValueError(f"{path}: leaf {i} is {a.dtype}{list(a.shape)}, expected "
                                 f"{t_dtype}{list(t_shape)}")
            leaves.append(jax.numpy.asarray(a))
    return jax.tree_util.tree_unflatten(t_def, leaves), header["info"]
