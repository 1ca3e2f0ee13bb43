"""Per-step metrics: one JSON object per line in ``<run_dir>/metrics.jsonl``, and TensorBoard event
files in ``<run_dir>/tb`` when a writer library (tensorboardX, torch.utils.tensorboard or
TensorFlow) is importable — none is a dependency of this project.

On resume the log is truncated to the steps at or before the restored checkpoint, so the file
always describes exactly one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def _tensorboard_writer(log_dir: Path) -> Any:
    """A ``(tag, value, step)`` scalar writer from whichever library is available, else None."""
    try:
        from tensorboardX import SummaryWriter  # type: ignore
        return SummaryWriter(str(log_dir))
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter  # type: ignore
        return SummaryWriter(str(log_dir))
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


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf: keep them visible as strings
    return value


class MetricsLogger:
    """Append-only JSONL metrics log (plus optional TensorBoard scalars)."""

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
            self._tb = _tensorboard_writer(run_dir / "tb")

    def _truncate(self, step: int) -> None:
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
