"""Scale-out of meta-training over devices and hosts with JAX's own runtime (``jax.sharding``).

**Data parallelism over tasks.** An outer step is one jitted function of the
:class:`~outer_train.trainer.TrainState`. Every per-task array (inner parameters and optimizer
states of the N tasks and their ± branches, PES accumulators, perturbations ε) carries the task
axis first; a 1-D :class:`jax.sharding.Mesh` over D devices (axis name :data:`AXIS`) splits that
axis into D contiguous blocks of N/D tasks, while θ, the outer optimizer state, counters and keys
are replicated. Each device unrolls its block of tasks on its own (``jax.shard_map`` around
:meth:`~outer_train.unroll.InnerProblem.unroll_keys`, with per-task keys drawn globally first), so
the inner loop communicates nothing. The estimator's task mean ``g = Σ_i g_i / n_ok`` then becomes a per-device partial
sum followed by one all-reduce of the D_θ-vector (inserted by the XLA partitioner, not written by
hand); the outer Adam update runs replicated. Per step the network carries
``bytes(θ) (+ a few scalars)`` per device — see :func:`allreduce_bytes`.

**Same numbers for any device count.** Sharding never changes *what* is computed: the random
draws (task configurations, initial parameters, data, ε) are functions of the step key, and the
PRNG is ``jax_threefry_partitionable`` (each device computes exactly its slice of the global
draw). Only the summation order of cross-task reductions differs, so θ and the meta-gradients
agree to float rounding across 1, 2, 4, ... devices and processes.

**Multi-host.** :func:`initialize` wraps :func:`jax.distributed.initialize` (explicit
coordinator/num_processes/process_id, JAX's ``JAX_COORDINATOR_ADDRESS`` plus ``JAX_NUM_PROCESSES``
/ ``JAX_PROCESS_ID``, or cluster auto-detection for SLURM, Open MPI and TPU pods). The mesh then
spans every process's devices (process-major), so process p owns the contiguous global task block
:func:`process_task_slice`. The step-0 state is produced by a jitted ``init`` with sharded outputs
(each process computes only its tasks); on resume every process reads the global checkpoint and
places only its own slices on its devices (:meth:`TaskLayout.put`, via
``jax.make_array_from_callback``). Checkpoints are gathered (``process_allgather``) and written by
process 0 only (:attr:`TaskLayout.is_writer`), followed by a barrier. On CPU the cross-process
collectives use gloo (``jax_cpu_collectives_implementation``, the default in jax >= 0.5).

**CPU cores as devices.** :func:`set_host_devices` splits the host CPU into N XLA devices
(``jax_num_cpu_devices``, the config form of ``--xla_force_host_platform_device_count``); it must
run before JAX initializes its backend.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "tasks"


# ------------------------------------------------------------------------------ process setup
def backend_initialized() -> bool:
    """Whether JAX has already created its backends (device-count options are then fixed)."""
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())


def set_host_devices(count: int) -> None:
    """Split the host CPU into ``count`` XLA devices (call before any JAX computation).

    Equivalent to ``XLA_FLAGS=--xla_force_host_platform_device_count=count``. Raises
    ``RuntimeError`` if JAX's backend is already initialized with a different count.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"host device count must be an int >= 1, got {count!r}")
    if backend_initialized():
        current = jax.local_device_count("cpu") if jax.default_backend() == "cpu" else None
        if current == count:
            return
        raise RuntimeError(f"cannot split the CPU into {count} devices: JAX's backend is already "
                           f"initialized (set the host device count before any JAX computation)")
    jax.config.update("jax_num_cpu_devices", count)


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {text!r}") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto_detect: bool = False,
               timeout: int = 300) -> bool:
    """Start JAX's multi-process runtime (``jax.distributed.initialize``) if asked to.

    Arguments fall back to the environment: ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of
    process 0's coordinator service), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. With
    ``auto_detect`` and missing values, JAX detects them itself (SLURM, Open MPI, TPU pods).
    Returns whether the runtime was initialized (False: nothing requested -> single process).
    Must run before any JAX computation.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = _env_int("JAX_NUM_PROCESSES") if num_processes is None else num_processes
    process_id = _env_int("JAX_PROCESS_ID") if process_id is None else process_id
    if not auto_detect and coordinator is None and num_processes is None and process_id is None:
        return False
    if not auto_detect:
        missing = [n for n, v in (("coordinator", coordinator), ("num_processes", num_processes),
                                  ("process_id", process_id)) if v is None]
        if missing:
            raise ValueError(f"multi-process training needs coordinator, num_processes and process_id; "
                             f"missing {missing} (or use auto-detection on SLURM / Open MPI / TPU)")
    if coordinator is not None and (":" not in coordinator or not coordinator.rsplit(":", 1)[1].isdigit()):
        raise ValueError(f"coordinator must look like HOST:PORT, got {coordinator!r}")
    if num_processes is not None and (isinstance(num_processes, bool) or not isinstance(num_processes, int)
                                      or num_processes < 1):
        raise ValueError(f"num_processes must be an int >= 1, got {num_processes!r}")
    if process_id is not None and (isinstance(process_id, bool) or not isinstance(process_id, int)
                                   or process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise ValueError(f"process_id must be an int in [0, num_processes), got {process_id!r}")
    if backend_initialized():
        raise RuntimeError("jax.distributed.initialize must run before any JAX computation "
                           "(the backend is already initialized)")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout)
    return True


# ------------------------------------------------------------------------------ device choice
def _task_counts(estimator: Any) -> list[int]:
    members = getattr(estimator, "members", None)
    if members is not None:
        return [c for m in members for c in _task_counts(m)]
    n = getattr(estimator, "num_tasks", None)
    return [] if n is None else [int(n)]


def check_divisible(num_tasks: int, num_devices: int) -> None:
    """``ValueError`` unless the task batch splits evenly over the devices."""
    if num_tasks % num_devices:
        raise ValueError(f"num_tasks ({num_tasks}) must be divisible by the number of devices "
                         f"({num_devices}) to shard the task axis; use num_tasks = k * {num_devices} "
                         f"or set devices to a divisor of {num_tasks}")


def resolve_device_count(devices: str | int, num_tasks: int | list[int]) -> int:
    """How many devices to shard ``num_tasks`` tasks over.

    ``devices="auto"``: single process -> the largest count <= the local devices that divides
    every task count (a warning when that is fewer than all devices); multi-process -> all
    global devices (must divide). An int: exactly that many (``ValueError`` if more than
    available or not a divisor; in multi-process runs it must equal the global device count).
    """
    counts = [num_tasks] if isinstance(num_tasks, int) else list(num_tasks)
    available = jax.device_count()
    multi = jax.process_count() > 1
    if devices == "auto":
        if multi:
            for n in counts:
                check_divisible(n, available)
            return available
        g = 0
        for n in counts:
            g = math.gcd(g, n)
        g = g or 1
        best = max(d for d in range(1, available + 1) if g % d == 0)
        if best < available:
            warnings.warn(f"num_tasks {counts} is not divisible by the {available} available devices; "
                          f"sharding over {best}", stacklevel=2)
        return best
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices must be 'auto' or an int >= 1, got {devices!r}")
    if devices > available:
        raise ValueError(f"devices={devices} requested but only {available} device(s) are available "
                         f"(on CPU use --host-devices to split the cores)")
    if multi and devices != available:
        raise ValueError(f"in a multi-process run devices must be 'auto' or the global device count "
                         f"({available}), got {devices}")
    for n in counts:
        check_divisible(n, devices)
    return devices


def process_task_slice(num_tasks: int, process_index: int | None = None,
                       process_count: int | None = None) -> slice:
    """The contiguous block of global task indices held by one process (process-major mesh)."""
    p = jax.process_index() if process_index is None else process_index
    c = jax.process_count() if process_count is None else process_count
    check_divisible(num_tasks, c)
    per = num_tasks // c
    return slice(p * per, (p + 1) * per)


# ---------------------------------------------------------------------------------- the layout
def _is_estimator_state(x: Any) -> bool:
    return type(x).__name__ == "EstimatorState" and hasattr(x, "tasks") and hasattr(x, "accum")


def _is_mixture_state(x: Any) -> bool:
    return type(x).__name__ == "MixtureState" and hasattr(x, "members")


@dataclasses.dataclass(frozen=True, eq=False)
class TaskLayout:
    """A 1-D mesh over the task axis: which arrays are split over devices, which replicated."""

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def multiprocess(self) -> bool:
        return jax.process_count() > 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes checkpoints and logs (process 0)."""
        return jax.process_index() == 0

    @property
    def task_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    # -------------------------------------------------------------------------- shardings
    def _task_leaf(self, x: Any) -> NamedSharding:
        return self.task_sharding if np.ndim(x) >= 1 else self.replicated

    def constrain(self, tree: Any) -> Any:
        """``with_sharding_constraint``: the leading (task) axis of every leaf split over devices."""
        return jax.tree_util.tree_map(
            lambda x: jax.lax.with_sharding_constraint(x, self._task_leaf(x)), tree)

    def map_tasks(self, fn: Callable) -> Callable:
        """``fn(theta_nb, ts, keys, outer_step)`` run per device on its block of tasks (shard_map).

        All arguments but ``outer_step`` (replicated) and all outputs have the task axis first.
        The tasks' unrolls are independent, so nothing is communicated inside; in particular the
        per-inner-step "does any task reset" test becomes local to each device's block.
        """
        return jax.shard_map(fn, mesh=self.mesh, in_specs=(P(AXIS), P(AXIS), P(AXIS), P()),
                             out_specs=P(AXIS), check_vma=False)  # no collectives inside

    def _est_shardings(self, est_state: Any) -> Any:
        if _is_mixture_state(est_state):
            return type(est_state)(tuple(self._est_shardings(m) for m in est_state.members))
        if _is_estimator_state(est_state):
            tasks = jax.tree_util.tree_map(self._task_leaf, est_state.tasks)
            accum = jax.tree_util.tree_map(self._task_leaf, est_state.accum)
            rest = {f: jax.tree_util.tree_map(lambda _: self.replicated, getattr(est_state, f))
                    for f in est_state._fields if f not in ("tasks", "accum")}
            return est_state._replace(tasks=tasks, accum=accum, **rest)
        return jax.tree_util.tree_map(lambda _: self.replicated, est_state)

    def state_shardings(self, state: Any) -> Any:
        """Shardings for a TrainState (or its shape): estimator task arrays split, the rest replicated."""
        rep = lambda tree: jax.tree_util.tree_map(lambda _: self.replicated, tree)  # noqa: E731
        return state._replace(theta=rep(state.theta), opt_state=rep(state.opt_state),
                              est_state=self._est_shardings(state.est_state), step=self.replicated,
                              key=self.replicated, num_dropped=self.replicated)

    # --------------------------------------------------------------------------- objects
    def shard_estimator(self, estimator: Any) -> Any:
        """A copy of ``estimator`` whose per-task arrays carry this layout's sharding constraint."""
        members = getattr(estimator, "members", None)
        if members is not None:
            return dataclasses.replace(estimator, members=tuple(self.shard_estimator(m) for m in members))
        if dataclasses.is_dataclass(estimator) and any(f.name == "task_layout"
                                                       for f in dataclasses.fields(estimator)):
            for n in _task_counts(estimator):
                check_divisible(n, self.num_devices)
            return dataclasses.replace(estimator, task_layout=self)  # pyright: ignore[reportArgumentType]  (an instance: checked above)
        return estimator  # unknown estimator type: rely on sharding propagation from the state

    def estimator_init(self, estimator: Any) -> Callable[[jax.Array, Any], Any]:
        """``jax.jit(estimator.init)`` with task-sharded outputs: each device builds only its tasks."""

        def init(key: jax.Array, theta: Any) -> Any:
            shapes = jax.eval_shape(estimator.init, key, theta)
            return jax.jit(estimator.init, out_shardings=self._est_shardings(shapes))(key, theta)

        return init

    def jit_step(self, outer_step: Callable, state: Any) -> Callable:
        """``jax.jit(outer_step)`` with the state's shardings in and out, metrics replicated."""
        sh = self.state_shardings(state)
        return jax.jit(outer_step, in_shardings=(sh,), out_shardings=(sh, self.replicated))

    def put(self, state: Any) -> Any:
        """Place a global state (e.g. read from a checkpoint) into this layout.

        Leaves already laid out are kept; for the others each process supplies only the slices
        its own devices hold (``make_array_from_callback`` on the global host array).
        """
        shardings = self.state_shardings(state)

        def place(x, sh):
            if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sh, x.ndim):
                return x
            host = np.asarray(jax.device_get(x))
            return jax.make_array_from_callback(host.shape, sh, lambda idx: host[idx])

        return jax.tree_util.tree_map(place, state, shardings)

    def gather(self, state: Any) -> Any:
        """The global state as host numpy arrays (a collective in multi-process runs: all must call)."""
        if self.multiprocess:
            from jax.experimental import multihost_utils
            return multihost_utils.process_allgather(state, tiled=True)
        return jax.device_get(state)

    def agree(self, flag: bool) -> bool:
        """Process 0's ``flag`` on every process (so control flow stays in lock step)."""
        if not self.multiprocess:
            return bool(flag)
        from jax.experimental import multihost_utils
        return bool(multihost_utils.broadcast_one_to_all(np.asarray(bool(flag))))

    def flags(self, flag: bool) -> list[bool]:
        """Every process's ``flag`` (in process order), on every process."""
        if not self.multiprocess:
            return [bool(flag)]
        from jax.experimental import multihost_utils
        return [bool(x) for x in np.ravel(multihost_utils.process_allgather(np.asarray(bool(flag))))]

    def barrier(self, name: str) -> None:
        """Wait until every process reaches this point (no-op in a single process)."""
        if self.multiprocess:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(name)


def make_layout(devices: str | int, estimator: Any) -> TaskLayout | None:
    """The task layout for ``devices`` ("auto" or an int), or None for a single device."""
    count = resolve_device_count(devices, _task_counts(estimator) or [1])
    if count == 1 and jax.process_count() == 1:
        return None
    devs = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))[:count]
    return TaskLayout(Mesh(np.asarray(devs), (AXIS,)))


def allreduce_bytes(theta: Any) -> int:
    """Bytes of one meta-gradient (= θ) — what the task-mean all-reduce moves per outer step."""
    return int(sum(np.dtype(x.dtype).itemsize * int(np.prod(np.shape(x)))
                   for x in jax.tree_util.tree_leaves(theta)))


__all__ = ["AXIS", "TaskLayout", "allreduce_bytes", "backend_initialized", "check_divisible",
           "initialize", "make_layout", "process_task_slice", "resolve_device_count",
           "set_host_devices"]
