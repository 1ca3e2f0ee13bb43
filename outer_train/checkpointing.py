"""Atomic, checksummed, two-generation checkpoints of the whole outer-training state.

A resume checkpoint (``<run_dir>/resume.npz``) stores every leaf of the trainer's state pytree —
θ, the outer optimizer state, the estimator state (inner parameters and optimizer states of all
tasks, PES accumulators, step counters, task configs), the RNG key (which also fixes the data
position: batches are drawn from keys inside the jitted step), the outer step and the count of
dropped steps — as raw arrays, bit for bit, plus a JSON header with the tree structure, the shapes,
dtypes and SHA-256 of every leaf, and the run's config.

Writing (:func:`save_state`) never leaves the directory without a complete checkpoint:

1. the new file is written to a temporary name in the same directory, flushed, fsync'ed and read
   back (every checksum verified);
2. the current ``resume.npz`` is hard-linked (copied where links are unsupported) to a temporary
   name, the new file is ``os.replace``'d over ``resume.npz``, then the temporary link is
   ``os.replace``'d over ``resume.prev.npz`` (the previous generation) and the directory is fsync'ed.

A crash or ``kill -9`` at any point leaves ``resume.npz`` as a complete old or new checkpoint and
``resume.prev.npz`` as a complete, strictly older one;
a failed write (e.g. ``ENOSPC``) removes its temporary file and leaves both generations intact.

Reading (:func:`load_state`) verifies the newest generation; if it is damaged (truncated,
corrupted, checksum mismatch) it warns in one line naming the file and uses ``resume.prev.npz``;
if neither is usable it raises :class:`CheckpointError` (a :class:`learned_opt.errors.UserError`,
so the command line reports it in one line). Restoring needs a *template* state of the same
structure (the trainer builds one from the config); the stored structure, shapes and dtypes must
match it exactly, otherwise :class:`CheckpointError` too (a different config is not damage, so
there is no fallback for it).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from learned_opt.errors import UserError

RESUME_FILE = "resume.npz"
PREVIOUS_FILE = "resume.prev.npz"  # the generation before RESUME_FILE
FORMAT = "outer_train.resume/2"
_READABLE_FORMATS = ("outer_train.resume/1", FORMAT)  # /1: no checksums (zip CRCs only)


class CheckpointError(UserError):
    """A resume checkpoint is missing, damaged or does not fit this run's config."""


def warn_stderr(message: str) -> None:
    """Print a one-line warning to stderr (the default ``warn`` of :func:`load_state`)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a fsync'ed temporary file and ``os.replace`` (all or nothing)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _serialize(arrays: list[np.ndarray], treedef: str, info: dict) -> bytes:
    header = {"format": FORMAT, "treedef": treedef,
              "shapes": [list(a.shape) for a in arrays], "dtypes": [a.dtype.str for a in arrays],
              "sha256": [_sha256(a) for a in arrays], "info": info}
    buf = io.BytesIO()
    leaves: dict[str, Any] = {f"leaf_{i:05d}": a for i, a in enumerate(arrays)}
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **leaves)
    return buf.getvalue()


def read_verified(path: str | os.PathLike) -> tuple[dict, list[np.ndarray]]:
    """``(header, leaves)`` of one checkpoint file, every checksum verified.

    Raises :class:`CheckpointError` naming the file for anything that makes it unusable: missing,
    truncated, not a zip, bad CRC, unknown format, missing leaf, or SHA-256 mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: damaged checkpoint (not a zip archive: truncated or overwritten)")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["__header__"]).decode())
            if not isinstance(header, dict) or header.get("format") not in _READABLE_FORMATS:
                raise CheckpointError(f"{path}: unknown checkpoint format "
                                      f"{header.get('format') if isinstance(header, dict) else None!r}")
            shapes, dtypes = header["shapes"], header["dtypes"]
            sums = header.get("sha256")
            leaves = []
            for i in range(len(shapes)):
                a = data[f"leaf_{i:05d}"]
                if list(a.shape) != list(shapes[i]) or a.dtype.str != dtypes[i]:
                    raise CheckpointError(f"{path}: leaf {i} is {a.dtype}{list(a.shape)}, its header says "
                                          f"{dtypes[i]}{list(shapes[i])}")
                if sums is not None and _sha256(a) != sums[i]:
                    raise CheckpointError(f"{path}: leaf {i} fails its SHA-256 checksum (corrupted)")
                leaves.append(a)
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError,
            zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error) as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(err).__name__}: {err})") from err
    return header, leaves


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (a hard link; a copy where links are unsupported)."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary files that killed writers left behind (the run lock guarantees that no
    other live process is writing into ``run_dir``)."""
    mine = f".tmp{os.getpid()}"
    for pattern in (f".{RESUME_FILE}.tmp*", f"{PREVIOUS_FILE}.tmp*"):
        for stale in run_dir.glob(pattern):
            if not stale.name.endswith(mine):
                with contextlib.suppress(OSError):
                    stale.unlink()


def save_state(run_dir: str | os.PathLike, state: Any, info: dict | None = None) -> Path:
    """Write ``state`` (any pytree of arrays) and JSON ``info`` to ``run_dir/resume.npz``, keeping
    the previous checkpoint as ``resume.prev.npz`` (see the module docstring for the protocol).

    On failure (``OSError`` such as ``ENOSPC``) the temporary file is removed and the existing
    checkpoints are left as they were; the error propagates.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    arrays = [np.asarray(jax.device_get(x)) for x in leaves]
    data = _serialize(arrays, str(treedef), info or {})
    path = run_dir / RESUME_FILE
    tmp = run_dir / f".{RESUME_FILE}.tmp{os.getpid()}"
    prev_tmp = run_dir / f"{PREVIOUS_FILE}.tmp{os.getpid()}"
    _remove_stale_temporaries(run_dir)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        read_verified(tmp)  # what reached the disk reads back with every checksum intact
        # keep the current newest: resume.npz (N) -> prev.tmp; resume.npz <- new (N+1);
        # resume.prev.npz <- prev.tmp (N). At every instant resume.npz is complete and
        # resume.prev.npz (if any) is a complete, strictly older generation.
        if path.exists():
            _link_or_copy(path, prev_tmp)
        os.replace(tmp, path)
        if prev_tmp.exists():
            os.replace(prev_tmp, run_dir / PREVIOUS_FILE)
        _fsync_dir(run_dir)
    except BaseException:
        for t in (tmp, prev_tmp):
            if t.exists():
                t.unlink()
        raise
    return path


def has_state(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a resume checkpoint (either generation; usable or not)."""
    run_dir = Path(run_dir)
    return (run_dir / RESUME_FILE).exists() or (run_dir / PREVIOUS_FILE).exists()


def _newest_usable(run_dir: Path, warn: Callable[[str], None] | None) -> tuple[Path, dict, list[np.ndarray]]:
    """The newest checkpoint generation that reads back intact (warning when it is not the newest)."""
    problems = []
    for name in (RESUME_FILE, PREVIOUS_FILE):
        path = run_dir / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        try:
            header, leaves = read_verified(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems and warn is not None:
            step = header.get("info", {}).get("step")
            warn(f"{problems[0]}; resuming from the previous checkpoint {path}"
                 + (f" (step {step})" if step is not None else ""))
        return path, header, leaves
    raise CheckpointError(f"no usable resume checkpoint in {run_dir} ({'; '.join(problems)})")


def read_info(run_dir: str | os.PathLike, warn: Callable[[str], None] | None = None) -> dict:
    """The JSON header's ``info`` of a run directory's newest usable resume checkpoint."""
    _, header, _ = _newest_usable(Path(run_dir), warn)
    return header["info"]


def load_state(run_dir: str | os.PathLike, template: Any,
               warn: Callable[[str], None] | None = warn_stderr) -> tuple[Any, dict]:
    """Restore the newest usable checkpoint of ``run_dir`` into the structure of ``template``.

    Falls back to ``resume.prev.npz`` (calling ``warn`` with one line naming the damaged file) when
    ``resume.npz`` is damaged or missing; :class:`CheckpointError` when neither is usable or the
    stored structure does not match ``template``.
    """
    path, header, arrays = _newest_usable(Path(run_dir), warn)
    t_leaves, t_def = jax.tree_util.tree_flatten(template)
    if header["treedef"] != str(t_def) or len(header["shapes"]) != len(t_leaves):
        raise CheckpointError(f"{path}: the stored state does not match this config's state structure "
                              "(different estimator, optimizer, task or number of tasks?)")
    leaves = []
    for i, (t, a) in enumerate(zip(t_leaves, arrays)):
        # shape/dtype without fetching: the template may be sharded across processes
        t_shape = tuple(t.shape) if hasattr(t, "shape") else np.shape(t)
        t_dtype = np.dtype(t.dtype) if hasattr(t, "dtype") else np.asarray(t).dtype
        if a.shape != t_shape or a.dtype != t_dtype:
            raise CheckpointError(f"{path}: leaf {i} is {a.dtype}{list(a.shape)}, expected "
                                  f"{t_dtype}{list(t_shape)}")
        leaves.append(jax.numpy.asarray(a))
    return jax.tree_util.tree_unflatten(t_def, leaves), header["info"]
