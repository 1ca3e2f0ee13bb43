"""What the machine was doing during a timed window: load average and CPU steal.

``with Window() as w: ...`` records ``/proc/loadavg`` and the CPU counters of ``/proc/stat`` at
entry and exit; ``w.summary()`` gives the 1-minute load average at both ends, the fraction of CPU
time stolen by the hypervisor and the fraction spent busy (user + system, all processes) over the
window, and ``quiet``: whether the figures can stand as speed measurements (load below
``max_load`` and steal below ``max_steal``). The load that decides is the one at entry, or — for a
benchmark that compiles before its timed window, whose own compilation raises the 1-minute
average — ``idle_load``, the load the benchmark saw when it started (:func:`load_now`).
Benchmarks store the summary with their results and
mark results taken on a busy machine.
"""
from __future__ import annotations

import os
from typing import Optional


def _cpu_counters() -> Optional[list[int]]:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None


class Window:
    """A timed window's machine state (see the module docstring)."""

    def __init__(self, max_load: float = 1.0, max_steal: float = 0.05, idle_load: Optional[float] = None):
        self.max_load, self.max_steal, self.idle_load = max_load, max_steal, idle_load
        self.load_start = self.load_end = None
        self._c0 = self._c1 = None

    def __enter__(self) -> Window:
        self.load_start = os.getloadavg()[0]
        self._c0 = _cpu_counters()
        return self

    def __exit__(self, *exc) -> None:
        self.load_end = os.getloadavg()[0]
        self._c1 = _cpu_counters()

    def summary(self) -> dict:
        steal = busy = None
        if self._c0 and self._c1:
            d = [b - a for a, b in zip(self._c0, self._c1)]
            total = sum(d) or 1
            steal = d[7] / total if len(d) > 7 else None  # user nice system idle iowait irq softirq steal
            busy = (d[0] + d[1] + d[2]) / total
        deciding = self.load_start if self.idle_load is None else self.idle_load
        quiet = deciding is not None and deciding < self.max_load and (steal is None or steal < self.max_steal)
        return {"load_1min_start": self.load_start, "load_1min_end": self.load_end,
                "load_1min_before_benchmark": self.idle_load, "cpu_steal": steal,
                "cpu_busy": busy, "cores": os.cpu_count(), "quiet": bool(quiet)}


def load_now() -> float:
    """The 1-minute load average now (call it before the benchmark's own work starts)."""
    return os.getloadavg()[0]


def describe(summary: dict, idle_load: float, span: str = "timed window") -> str:
    """One printed line for a :meth:`Window.summary`: the load before the benchmark and at both ends
    of ``span``, CPU steal and busy fractions, and the verdict."""
    verdict = "quiet" if summary["quiet"] else "BUSY — these are not speed measurements"
    return (f"machine: load {idle_load:.2f} before the benchmark, {summary['load_1min_start']:.2f} / "
            f"{summary['load_1min_end']:.2f} at the start / end of the {span}, "
            f"CPU steal {100 * (summary['cpu_steal'] or 0):.1f}%, busy {100 * (summary['cpu_busy'] or 0):.0f}%: "
            f"{verdict}")
