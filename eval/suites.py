"""Named, versioned, deterministic evaluation suites.

A suite is a list of tasks with a horizon each, a default number of seeds and the baselines to
run. Tasks come from the frozen named tasksets of :mod:`tasksets` (selected deterministically:
the first ``k`` members of each family, in the frozen order) or are fixed tasks built from a
constructor path and keyword arguments. The suite's ``version`` changes whenever its definition
does; resolved suites record every task's ``task_id`` (or constructor config) in the results.

=================  =============================================================================
``smoke``          two tiny tasks (a quadratic, full-batch logistic regression on synthetic data),
                   40 steps, 2 seeds: for tests
``indist``         32 fresh samples (seeds never trained on) of the meta-training distribution
                   (the ``train`` families and sampling spaces: taskset ``indist``), horizon 200
``ood``            32 tasks, 8 per axis: unseen families (conv nets, VAEs, char-RNN LMs), larger
                   nets, unseen datasets (MNIST-1D, 16x16 digits), and the training families at
                   5x (4 tasks) and 10x (4 tasks) the meta-training horizon
``select``         the selection split for learned optimizers (checkpoints, soups, their
                   hyperparameters): the 12 ``heldout`` tasks at horizon 200 + 4 of them at 1000;
                   disjoint from ``indist`` and ``ood`` — select here, report there
``select2``        the second, larger selection split: the 24 ``heldout2`` tasks at horizon 200
``indist-small``   the first 8 tasks of ``indist`` (family-balanced)
``ood-small``      2 tasks per OOD axis
``ood_family`` …   one OOD axis each (``ood_family``, ``ood_size``, ``ood_dataset``, ``ood_horizon``)
``functions2d``    Rosenbrock, Beale, flower, Ackley, Himmelblau, Booth from their standard starts
=================  =============================================================================

Any suite can be shrunk for a smoke run with ``resolve(size=k)`` (``--suite-size k``): tasks are
taken round-robin over the suite's entries, so the parts stay balanced.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Optional, Sequence

DEFAULT_SEEDS = 3


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    """One resolved suite entry."""

    name: str
    group: str  # taskset name, or "fixed"
    num_steps: int
    build: Callable[[], Any]  # -> tasks.Task
    task_id: str
    config: dict  # the cfg (taskset tasks) or constructor config (fixed tasks)

    def summary(self) -> dict:
        return {"name": self.name, "group": self.group, "num_steps": self.num_steps,
                "task_id": self.task_id, "config": self.config}


@dataclasses.dataclass(frozen=True)
class FromTaskset:
    """The first ``per_family`` members of each family of taskset ``taskset`` (frozen order),
    at most ``limit`` in total, run for ``horizon_mult`` × the taskset's horizon (or ``num_steps``)."""

    taskset: str
    per_family: int = 1
    limit: Optional[int] = None
    num_steps: Optional[int] = None
    families: Optional[tuple[str, ...]] = None
    skip: int = 0  # drop the first ``skip`` (after family interleaving), before ``limit``


@dataclasses.dataclass(frozen=True)
class FixedTask:
    """A task built as ``module:Class(**kwargs)``."""

    ctor: str
    kwargs: tuple[tuple[str, Any], ...]
    num_steps: int
    name: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class CfgTask:
    """A tasksets cfg (given as sorted items, to stay hashable)."""

    name: str
    cfg: tuple
    num_steps: int


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    entries: tuple
    seeds: int = DEFAULT_SEEDS
    paths: bool = False  # draw optimizer paths (2-D tasks only)

    def resolve(self, size: Optional[int] = None) -> list[SuiteTask]:
        """The suite's tasks, deterministic given the frozen tasksets; with ``size``, the first
        ``size`` of them taken round-robin over the entries."""
        parts = [_resolve_entry(e) for e in self.entries]
        if size is None:
            out = [t for p in parts for t in p]
        else:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"suite size must be a positive int, got {size!r}")
            out, k = [], 0
            while len(out) < size and any(k < len(p) for p in parts):
                out.extend(p[k] for p in parts if k < len(p))
                k += 1
            out = out[:size]
        names = [t.name for t in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"suite {self.name!r}: duplicate task names {dup}")
        return out

    def summary(self) -> dict:
        return {"name": self.name, "version": self.version, "description": self.description,
                "default_seeds": self.seeds}


def _fixed(ctor: str, num_steps: int, name: Optional[str] = None, **kwargs) -> FixedTask:
    return FixedTask(ctor=ctor, kwargs=tuple(sorted(kwargs.items())), num_steps=num_steps, name=name)


def _import(path: str) -> Any:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def _taskset_doc(name: str) -> dict:
    import tasksets

    try:
        return tasksets.load_taskset_doc(name)
    except ValueError:
        if name not in tasksets.TASKSET_SPECS:
            raise
        # not frozen yet: the spec generates the same cfgs deterministically
        spec = tasksets.TASKSET_SPECS[name]
        return {"name": name, "horizon": spec["horizon"], "tasks": tasksets.generate_taskset(spec),
                "generated": True}


def _resolve_entry(e: Any) -> list[SuiteTask]:
    if isinstance(e, CfgTask):
        import tasksets

        cfg = dict(e.cfg)
        return [SuiteTask(name=e.name, group="custom", num_steps=e.num_steps,
                          build=lambda cfg=cfg: tasksets.build_task(cfg), task_id=tasksets.task_id(cfg),
                          config=cfg)]
    if isinstance(e, FixedTask):
        kwargs = dict(e.kwargs)
        cls = _import(e.ctor)
        name = e.name or kwargs.get("name") or cls.__name__
        cfg = {"ctor": e.ctor, "kwargs": kwargs}
        return [SuiteTask(name=name, group="fixed", num_steps=e.num_steps,
                          build=lambda cls=cls, kwargs=kwargs: cls(**kwargs),
                          task_id=f"fixed:{name}", config=cfg)]
    if isinstance(e, FromTaskset):
        import tasksets

        doc = _taskset_doc(e.taskset)
        steps = int(e.num_steps or doc["horizon"])
        # a horizon other than the taskset's own names the tasks (and their group) apart
        at = f"@{steps}" if steps != int(doc["horizon"]) else ""
        counts: dict[str, int] = {}
        out = []
        for entry in doc["tasks"]:
            cfg = entry["cfg"]
            fam = cfg["family"]
            if e.families is not None and fam not in e.families:
                continue
            if counts.get(fam, 0) >= e.per_family:
                continue
            counts[fam] = counts.get(fam, 0) + 1
            name = f"{e.taskset}{at}/{fam.replace('_family', '')}-{entry['seed']}"
            out.append(SuiteTask(name=name, group=e.taskset + at, num_steps=steps,
                                 build=lambda cfg=cfg: tasksets.build_task(cfg),
                                 task_id=entry.get("task_id") or tasksets.task_id(cfg), config=cfg))
        out = _interleave(out)
        out = out[e.skip:]
        if e.limit is not None:
            out = out[:e.limit]
        if not out:
            raise ValueError(f"taskset {e.taskset!r} yields no tasks for {e}")
        return out
    raise TypeError(f"unknown suite entry {e!r}")


def _interleave(tasks: list[SuiteTask]) -> list[SuiteTask]:
    """Round-robin over families so that ``limit`` keeps the families balanced."""
    by_fam: dict[str, list] = {}
    for t in tasks:
        by_fam.setdefault(t.config["family"], []).append(t)
    out = []
    while any(by_fam.values()):
        for fam in list(by_fam):
            if by_fam[fam]:
                out.append(by_fam[fam].pop(0))
    return out


_F2D = "tasks.functions2d:Function2DTask"

_OOD_AXES = (("ood_family", 8, None), ("ood_size", 8, None), ("ood_dataset", 8, None))


def _ood_entries(per_axis: int) -> tuple:
    entries = [FromTaskset(ts, per_family=8, limit=min(per_axis, k)) for ts, k, _ in _OOD_AXES]
    half = max(1, per_axis // 2)
    entries.append(FromTaskset("ood_horizon", per_family=8, limit=half))  # 5x: 1000 steps
    entries.append(FromTaskset("ood_horizon10", per_family=8, limit=half))  # 10x: 2000 steps
    return tuple(entries)


SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("smoke", 2, "two tiny tasks for tests: a 10-d quadratic and full-batch logistic regression "
          "(512 synthetic examples, 16 features, 3 classes), 40 steps",
          entries=(_fixed("tasks.quadratic:QuadraticTask", 40, name="quadratic10", dim=10,
                          condition_number=20.0),
                   _fixed("tasks.regression:LogisticRegressionTask", 40, name="logreg16")),
          seeds=2),
    Suite("indist", 2, "32 fresh samples of the meta-training distribution (train families and "
          "spaces, unseen seeds), meta-training horizon",
          entries=(FromTaskset("indist", per_family=32, limit=32),), seeds=3),
    Suite("ood", 2, "out of distribution, 8 tasks per axis: unseen families, larger nets, unseen "
          "datasets, and the training families at 5x (4) and 10x (4) the meta-training horizon",
          entries=_ood_entries(8), seeds=3),
    Suite("select", 1, "the selection split for learned optimizers (checkpoints, soups, "
          "hyperparameters): the 12 tasks of the heldout taskset (unseen seeds of the training "
          "families, disjoint from indist and ood) at the meta-training horizon, and its first "
          "task of each family at 5x that horizon; never report on it",
          entries=(FromTaskset("heldout", per_family=12, limit=12),
                   FromTaskset("heldout", per_family=1, limit=4, num_steps=1000)),
          seeds=3),
    Suite("select2", 1, "the second, larger selection split (session 18): the 24 tasks of the "
          "heldout2 taskset (unseen seeds of the training families in the train taskset's "
          "proportions, disjoint from select, indist and ood) at the meta-training horizon; "
          "never report on it",
          entries=(FromTaskset("heldout2", per_family=24, limit=24),), seeds=3),
    Suite("indist-small", 2, "the first 8 tasks of indist (family-balanced)",
          entries=(FromTaskset("indist", per_family=32, limit=8),), seeds=3),
    Suite("ood-small", 2, "2 tasks per OOD axis", entries=_ood_entries(2), seeds=3),
    Suite("ood_family", 2, "families never trained on", entries=(FromTaskset("ood_family", 8, 8),)),
    Suite("ood_size", 2, "wider/deeper MLPs and bigger quadratics", entries=(FromTaskset("ood_size", 8, 8),)),
    Suite("ood_dataset", 2, "datasets never trained on", entries=(FromTaskset("ood_dataset", 8, 8),)),
    Suite("ood_horizon", 2, "training families at 5x and 10x the horizon",
          entries=(FromTaskset("ood_horizon", 8, 4), FromTaskset("ood_horizon10", 8, 4))),
    Suite("functions2d", 2, "classic 2-D test functions from their standard start points",
          entries=tuple(_fixed(_F2D, 200, name=f, function=f) for f in
                        ("rosenbrock", "beale", "flower", "ackley", "himmelblau", "booth")),
          seeds=1, paths=True),
]}


def suite_names() -> list[str]:
    return list(SUITES)


def get_suite(name: str | Suite) -> Suite:
    """A suite by name (or the suite itself)."""
    if isinstance(name, Suite):
        return name
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; available: {suite_names()}")
    return SUITES[name]


def describe_suites() -> str:
    """One line per suite (``learned-opt eval --list-suites``)."""
    lines = []
    for s in SUITES.values():
        lines.append(f"{s.name:<12} v{s.version}  seeds={s.seeds}  {s.description}")
    return "\n".join(lines)


def custom_suite(name: str, tasks: Sequence[tuple[str, Any, int]], *, seeds: int = DEFAULT_SEEDS) -> Suite:
    """A suite over explicit ``(name, task_factory_path_or_cfg, num_steps)`` triples: the middle
    item is a tasksets cfg dict or a ``"module:Class"`` string (built with no arguments)."""
    entries = []
    for tname, ref, steps in tasks:
        if isinstance(ref, dict):
            entries.append(CfgTask(tname, tuple(sorted(ref.items())), int(steps)))
        elif isinstance(ref, str):
            entries.append(FixedTask(ctor=ref, kwargs=(), num_steps=int(steps), name=tname))
        else:
            raise TypeError(f"task {tname!r}: expected a cfg dict or 'module:Class', got {type(ref).__name__}")
    return Suite(name, 0, "custom suite", tuple(entries), seeds=seeds)
