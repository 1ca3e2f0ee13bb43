"""Per-step metrics: one JSON object per line in ``<run_dir>/metrics.jsonl``, and TensorBoard event
files in ``<run_dir>/tb`` (``tensorboard --logdir runs/`` shows them).

Event files are written with ``tensorboardX`` (a dependency: it needs only NumPy and protobuf, no
TensorFlow or torch). On resume the JSONL log is truncated to the steps at or before the restored
checkpoint, and the event writer records a *purge* at the next step so TensorBoard drops the
points the interrupted run wrote after the checkpoint: both describe exactly one uninterrupted run.

:func:`write_scalars` writes any curve (e.g. evaluation loss per step) to an event file, and
:func:`read_scalars` reads event files back (tests, notebooks).
"""
from __future__ import annotations

import json
import math
import os
import struct
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

METRICS_FILE = "metrics.jsonl"
TB_SUBDIR = "tb"

__all__ = ["MetricsLogger", "read_metrics", "write_scalars", "read_scalars", "METRICS_FILE", "TB_SUBDIR"]


def _tensorboard_writer(log_dir: Path, purge_step: int | None = None) -> Any:
    """A ``SummaryWriter`` (``add_scalar(tag, value, step)``, ``flush``, ``close``), else None.

    tensorboardX is a dependency; the fallbacks (torch.utils.tensorboard, TensorFlow) only matter
    for an installation that removed it.
    """
    try:
        from tensorboardX import SummaryWriter  # type: ignore
        # tensorboardX names files by the second and host only: a unique suffix keeps two writers
        # opened within one second (a quick resume, two write_scalars calls) from overwriting each other
        return SummaryWriter(str(log_dir), purge_step=purge_step, flush_secs=10,
                             filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex[:8]}")
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter  # type: ignore
        return SummaryWriter(str(log_dir), purge_step=purge_step)
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore

        class _TFWriter:
            def __init__(self, path):
                self._w = tf.summary.create_file_writer(path)

            def add_scalar(self, tag, value, step):
                with self._w.as_default():
                    tf.summary.scalar(tag, value, step=step)

            def flush(self):
                self._w.flush()

            def close(self):
                self._w.close()

        return _TFWriter(str(log_dir))
    except ImportError:
        return None


def write_scalars(logdir: str | os.PathLike, tag: str, values: Iterable[float],
                  steps: Sequence[int] | None = None, walltimes: Sequence[float] | None = None) -> Path:
    """Write one scalar curve to a TensorBoard event file in ``logdir`` (created if needed).

    Args:
      logdir: a directory; ``tensorboard --logdir`` on it or any parent shows the curve (one
        directory per run/method gives one colour per run).
      tag: the curve's name, e.g. ``"eval/loss"`` (``/`` groups curves in TensorBoard).
      values: the y values; non-finite values are written as they are (TensorBoard skips them).
      steps: the x values (default ``0, 1, 2, ...``), non-decreasing integers.
      walltimes: optional seconds since the epoch per point (default: now).

    Returns the directory written to. Raises ``ValueError`` naming the argument for a bad tag,
    mismatched lengths or non-integer steps; ``RuntimeError`` if no event-file writer is installed.
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string; got {tag!r}")
    vals = [float(v) for v in values]
    if steps is None:
        steps = list(range(len(vals)))
    steps = list(steps)
    if len(steps) != len(vals):
        raise ValueError(f"steps has {len(steps)} entries but values has {len(vals)}")
    for s in steps:
        if isinstance(s, bool) or not float(s).is_integer():
            raise ValueError(f"steps must be integers; got {s!r}")
    if walltimes is not None and len(walltimes) != len(vals):
        raise ValueError(f"walltimes has {len(walltimes)} entries but values has {len(vals)}")
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    w = _tensorboard_writer(logdir)
    if w is None:
        raise RuntimeError("no TensorBoard event-file writer is installed (pip install tensorboardX)")
    try:
        for i, (s, v) in enumerate(zip(steps, vals)):
            if walltimes is None:
                w.add_scalar(tag, v, int(s))
            else:
                w.add_scalar(tag, v, int(s), walltime=float(walltimes[i]))
    finally:
        w.flush()
        w.close()
    return logdir


def _records(path: Path):
    """The records of a TFRecord file (length, crc, data, crc), stopping at a truncated tail."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return
            (n,) = struct.unpack("<Q", head[:8])
            data = f.read(n)
            if len(data) < n or len(f.read(4)) < 4:
                return
            yield data


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``logdir`` (recursively): ``{tag: [(step, value), ...]}``
    in file and write order, honouring purge events (points at or after a purge step written
    earlier are dropped, as TensorBoard does)."""
    from tensorboardX.proto import event_pb2  # type: ignore

    out: dict[str, list[tuple[int, float]]] = {}
    def first_walltime(path: Path) -> float:
        for data in _records(path):
            ev = event_pb2.Event()  # pyright: ignore[reportAttributeAccessIssue]  (generated protobuf module)
            ev.ParseFromString(data)
            return ev.wall_time
        return math.inf

    # in the order they were written (file names only resolve whole seconds)
    files = sorted(Path(logdir).rglob("events.out.tfevents.*"), key=lambda p: (first_walltime(p), p.name))
    for path in files:
        for data in _records(path):
            ev = event_pb2.Event()  # pyright: ignore[reportAttributeAccessIssue]  (generated protobuf module)
            ev.ParseFromString(data)
            if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START and ev.step:
                for tag in out:
                    out[tag] = [(s, v) for s, v in out[tag] if s < ev.step]
            if not ev.HasField("summary"):
                continue
            for val in ev.summary.value:
                if val.HasField("simple_value"):
                    out.setdefault(val.tag, []).append((int(ev.step), float(val.simple_value)))
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf: keep them visible as strings
    return value


class MetricsLogger:
    """Append-only JSONL metrics log plus TensorBoard scalars in ``<run_dir>/tb`` (``tensorboard=True``).

    Every numeric field of a record except ``step`` becomes a TensorBoard scalar of that name at
    that step.
    """

    def __init__(self, run_dir: str | os.PathLike | None, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.path = None
        self._file = None
        self._tb = None
        if run_dir is None:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_FILE
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            self._tb = _tensorboard_writer(run_dir / TB_SUBDIR,
                                           purge_step=None if resume_step is None else int(resume_step) + 1)

    def _truncate(self, step: int) -> None:
        assert self.path is not None
        kept = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a crash ends the valid log
                if rec.get("step", 0) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    @property
    def tensorboard_enabled(self) -> bool:
        return self._tb is not None

    def log(self, record: dict) -> None:
        if self._file is None:
            return
        record = {k: _clean(v) for k, v in record.items()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = int(record.get("step", 0))
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All records of a run directory's metrics log."""
    path = Path(run_dir) / METRICS_FILE
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
