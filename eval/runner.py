"""Run methods on one task under the protocol: train / selection / test loss curves per run.

For a task and horizon ``T`` the runner records, for every run (method × hyperparameter setting ×
seed), at step 0, on a schedule and at the end:

* ``train``: the training objective -- :meth:`tasks.Task.eval_loss` (train-time noise off) on a
  fixed subset of the ``train`` split (the whole split when it is small or the task is full-batch);
* ``valid``: the same on the ``inner_valid`` split -- the **selection** objective;
* ``test``: the same on the ``test`` split -- the **report** objective.

Data-free tasks have one objective, ``eval_loss(params, None)`` (the exact expected loss of noisy
problems); ``train``, ``valid`` and ``test`` are all that, and hyperparameters are selected on
separate seeds (``seed + protocol.selection_seed_offset``) whose runs are never reported.

First-order methods (optax transforms, learned optimizers) train on minibatches through
:func:`learned_opt.inner_loop.optax_scan`: one ``jit`` program per task and *family* of methods,
``vmap``-ed over every hyperparameter setting and every seed. The hand-designed baselines (Adam,
Adam + cosine decay, SGD + momentum, over the whole learning-rate grid) form one family, so their
entire sweep is one compilation. Minibatch indices and per-step keys are drawn outside the program
(``k_init, k_run = split(PRNGKey(seed))``, step ``t`` uses ``split(fold_in(k_run, t))``), so every
method sees the same batches (common random numbers).

L-BFGS-B runs on tasks with an exact objective (data-free tasks, and full-batch tasks: the whole
training split) through ``learned_opt.minimize`` with ``jac=True`` on ``eval_loss``, its cost
axis counting gradient evaluations, so its line searches are paid for.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from eval.methods import FirstOrderMethod, ScipyMethod
from eval.protocol import DEFAULT_PROTOCOL, Protocol
from learned_opt.inner_loop import optax_scan, record_steps

EVAL_SUBSET_SEED = 12345
OBJECTIVES = ("train", "valid", "test")
_STATUS_CALLBACK = 99  # learned_opt.minimize: stopped by the callback


# ------------------------------------------------------------------------------------------------
# records
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Curve:
    """One run (one hyperparameter setting, one seed) of one method on one task."""

    seed: int
    steps: np.ndarray  # iteration index of each record (0 = initialization)
    x: np.ndarray  # gradient evaluations at each record (the cost axis)
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)

    def objective(self, name: str) -> np.ndarray:
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r}; expected one of {OBJECTIVES}")
        return getattr(self, name)

    @property
    def diverged(self) -> bool:
        return not (np.all(np.isfinite(self.train)) and np.all(np.isfinite(self.test)))


@dataclasses.dataclass
class MethodRun:
    """All runs of one method on one task.

    ``curves[g][s]``: grid setting ``g``, reported seed ``s``; ``selection_scores[g]``: the mean
    final selection loss of setting ``g`` (NaN/inf disqualifies); ``chosen``: the selected setting.
    """

    name: str
    kind: str  # "baseline" | "learned" | "optax" | "scipy"
    grid: list
    curves: list
    selection_scores: list
    chosen: int
    selected_on: str  # "inner_valid" | "separate_seeds" | "single_setting"
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    skipped: Optional[str] = None

    @property
    def selected(self) -> list:
        return self.curves[self.chosen] if self.curves else []

    @property
    def hparams(self) -> dict:
        return dict(self.grid[self.chosen]) if self.grid else {}


def select(scores: Sequence[float]) -> int:
    """Index of the lowest finite score (ties: the first); all non-finite -> 0."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s), s, np.inf)
    return int(np.argmin(s)) if np.any(np.isfinite(s)) else 0


# ------------------------------------------------------------------------------------------------
# task preparation
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TaskSetup:
    """A task plus the fixed evaluation batches and schedule the runner uses for it."""

    task: Any
    name: str
    num_steps: int
    record_every: int
    has_data: bool
    minibatch: bool  # first-order methods sample minibatches (else the whole training split)
    train_arrays: Optional[dict]
    batch_size: int
    full_batch: Any  # the whole training split (None: data-free)
    eval_batches: dict  # objective name -> fixed batch (None: data-free)
    num_params: int
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def exact(self) -> bool:
        """The training objective is exact (data-free, or served whole): L-BFGS-B applies."""
        return not self.has_data or not self.minibatch

    @property
    def data(self) -> str:
        return "none" if not self.has_data else ("minibatch" if self.minibatch else "full_batch")

    @property
    def selection(self) -> str:
        return "inner_valid" if self.has_data else "separate_seeds"


def _fixed_subset(split, n: int) -> dict:
    if split.num_examples <= n:
        return {k: np.asarray(v) for k, v in split.full().items()}
    idx = np.sort(np.random.default_rng(EVAL_SUBSET_SEED).permutation(split.num_examples)[:n])
    return {k: np.asarray(v)[idx] for k, v in split.arrays.items()}


def prepare_task(task: Any, num_steps: int, *, name: Optional[str] = None,
                 protocol: Protocol = DEFAULT_PROTOCOL) -> TaskSetup:
    """Fix the evaluation batches and the record schedule of ``task`` for horizon ``num_steps``:
    every step on exact tasks up to ``protocol.dense_records_max_steps``, else
    ``protocol.eval_points`` records after step 0."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    ds = getattr(task, "datasets", None)
    if ds is None:
        has_data, minibatch, arrays, bs, full = False, False, None, 0, None
        batches = {k: None for k in OBJECTIVES}
    else:
        has_data = True
        minibatch = not bool(getattr(task, "full_batch", False))
        arrays = {k: np.asarray(v) for k, v in ds.train.arrays.items()}
        bs = int(ds.train.batch_size)
        full = {k: np.asarray(v) for k, v in ds.train.full().items()}
        n = protocol.eval_examples
        batches = {"train": full if not minibatch else _fixed_subset(ds.train, n),
                   "valid": _fixed_subset(ds.inner_valid, n), "test": _fixed_subset(ds.test, n)}
    exact = not has_data or not minibatch
    if exact and num_steps <= protocol.dense_records_max_steps:
        every = 1
    else:
        every = max(1, math.ceil(num_steps / protocol.eval_points))
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))  # no eager (op-by-op) init
    num_params = int(sum(np.prod(p.shape, dtype=np.int64) for p in jax.tree_util.tree_leaves(shapes)))
    return TaskSetup(task=task, name=name or getattr(task, "name", type(task).__name__),
                     num_steps=int(num_steps), record_every=every, has_data=has_data,
                     minibatch=minibatch, train_arrays=arrays, batch_size=bs, full_batch=full,
                     eval_batches=batches, num_params=num_params)


def _inputs_program(setup: TaskSetup):
    """``seeds [S] -> (params0, batch indices [S, T, B], loss keys [S, T, 2])`` as one compiled
    program: ``k_init, k_run = split(PRNGKey(seed))``, ``params0 = task.init(k_init)``, step ``t``
    draws ``kb, kl = split(fold_in(k_run, t))`` and indices uniform with replacement from ``kb``.

    ``task.init`` runs one seed at a time (``lax.map``), never ``vmap``-ed: a batched QR (the
    orthogonal initializer) is a LAPACK custom call that splits its batch over XLA's intra-op
    thread pool and blocks until the pieces finish; two such calls running concurrently (the
    layers' inits are independent) occupy both threads of a 2-core machine while their pieces sit
    in the queue -- a deadlock (seen on ``ood_size/mlp-300004``: the process sleeping forever in
    ``jax::ParallelBatchMap``). Unbatched, the call runs inline. The values are the same.
    """
    task, T = setup.task, setup.num_steps
    n = 0 if setup.train_arrays is None else next(iter(setup.train_arrays.values())).shape[0]
    bs = setup.batch_size if setup.minibatch else 0

    def one(seed):
        k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))

        def step(t):
            kb, kl = jax.random.split(jax.random.fold_in(k_run, t))
            idx = jax.random.randint(kb, (bs,), 0, n) if bs else jnp.zeros((0,), jnp.int32)
            return idx, kl

        idx, keys = jax.vmap(step)(jnp.arange(T))
        return k_init, idx, keys

    def program(seeds):
        k_init, idx, keys = jax.vmap(one)(seeds)
        return jax.lax.map(task.init, k_init), idx, keys

    return jax.jit(program)


def seed_inputs(setup: TaskSetup, seeds: Sequence[int]) -> tuple:
    """``(params0, batch indices, loss keys)`` stacked over ``seeds``, shared by all methods
    (common random numbers); cached per task and seed list."""
    key = ("seeds", tuple(int(s) for s in seeds))
    if key not in setup._cache:
        if "inputs" not in setup._cache:
            setup._cache["inputs"] = _inputs_program(setup)
        setup._cache[key] = setup._cache["inputs"](jnp.asarray(key[1], jnp.uint32))
    return setup._cache[key]


def init_params(task: Any, seed: int) -> Any:
    """The initial parameters of seed ``seed``: ``task.init(split(PRNGKey(seed))[0])``."""
    return jax.jit(task.init)(jax.random.split(jax.random.PRNGKey(int(seed)))[0])


# ------------------------------------------------------------------------------------------------
# first-order methods: one jit(vmap(vmap(scan))) per (task, family)
# ------------------------------------------------------------------------------------------------
def _record_fn(setup: TaskSetup):
    task = setup.task

    def record(params, batches):
        if not setup.has_data:
            v = jnp.asarray(task.eval_loss(params, None), jnp.float32)
            return {k: v for k in OBJECTIVES}
        return {k: jnp.asarray(task.eval_loss(params, batches[k]), jnp.float32) for k in OBJECTIVES}

    return record


def _first_order_program(setup: TaskSetup, make, grid_size: int):
    """``jit(vmap_grid(vmap_seeds(run)))``; ``run(hp, params0, idx, keys, arrays, full, batches)``
    returns the records ``{objective: [R]}``."""
    task, T = setup.task, setup.num_steps
    minibatch = setup.minibatch
    record = _record_fn(setup)

    def run(hp, params0, idx, keys, arrays, full, batches):
        def loss_fn(p, inp):
            bidx, key = inp
            batch = {k: a[bidx] for k, a in arrays.items()} if minibatch else full
            return task.loss(p, key, batch)

        out = optax_scan(make(hp, T), loss_fn, params0, (idx, keys), num_steps=T,
                         record_every=setup.record_every, record=lambda p: record(p, batches))
        return out.records

    over_seeds = jax.vmap(run, in_axes=(None, 0, 0, 0, None, None, None))
    return jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None, None, None, None, None),
                            axis_size=grid_size))


def run_first_order(setup: TaskSetup, methods: Sequence[FirstOrderMethod], seeds: Sequence[int],
                    protocol: Protocol = DEFAULT_PROTOCOL) -> dict[str, MethodRun]:
    """Methods of one family (same ``make``, same grid keys) in one compiled program."""
    methods = list(methods)
    make, keys = methods[0].make, sorted(methods[0].grid[0])
    for m in methods[1:]:
        if m.make is not make or sorted(m.grid[0]) != keys:
            raise ValueError(f"methods {methods[0].name!r} and {m.name!r} are not one family")
    grid = [g for m in methods for g in m.grid]
    sweep = any(m.is_sweep for m in methods)
    sel_seeds = ([s + protocol.selection_seed_offset for s in seeds]
                 if sweep and not setup.has_data else [])
    all_seeds = list(seeds) + sel_seeds
    hp = {k: jnp.asarray([float(g[k]) for g in grid], jnp.float32) for k in keys}
    fn = _first_order_program(setup, make, len(grid))
    params0, idx, skeys = seed_inputs(setup, all_seeds)
    args = (hp, params0, idx, skeys, setup.train_arrays, setup.full_batch, setup.eval_batches)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    recs = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64),
                                  jax.block_until_ready(compiled(*args)))
    run_s = time.perf_counter() - t1
    steps = record_steps(setup.num_steps, setup.record_every)
    S = len(seeds)
    out, start = {}, 0
    for m in methods:
        G = len(m.grid)
        curves = [[Curve(seed=int(s), steps=steps.copy(), x=steps.astype(np.float64),
                         train=recs["train"][start + g, j], valid=recs["valid"][start + g, j],
                         test=recs["test"][start + g, j])
                   for j, s in enumerate(seeds)] for g in range(G)]
        if not m.is_sweep:
            scores, on = [math.nan], "single_setting"
        elif setup.has_data:
            scores, on = [float(np.mean(recs["valid"][start + g, :S, -1])) for g in range(G)], "inner_valid"
        else:
            scores, on = [float(np.mean(recs["valid"][start + g, S:, -1])) for g in range(G)], "separate_seeds"
        out[m.name] = MethodRun(name=m.name, kind=m.kind, grid=[dict(g) for g in m.grid],
                                curves=curves, selection_scores=scores,
                                chosen=select(scores) if m.is_sweep else 0, selected_on=on,
                                compile_seconds=compile_s * G / len(grid),
                                run_seconds=run_s * G / len(grid))
        start += G
    return out


# ------------------------------------------------------------------------------------------------
# L-BFGS-B (and other classical methods) through learned_opt.minimize on the exact objective
# ------------------------------------------------------------------------------------------------
def _classical_fns(setup: TaskSetup) -> dict:
    cache = setup._cache.setdefault("classical", {})
    if not cache:
        task, full = setup.task, setup.full_batch
        record = _record_fn(setup)
        cache["vg"] = jax.jit(jax.value_and_grad(lambda p: task.eval_loss(p, full)))
        cache["hvp"] = jax.jit(lambda p, v: jax.jvp(jax.grad(lambda q: task.eval_loss(q, full)), (p,), (v,))[1])
        rec = jax.jit(record)
        cache["record"] = lambda p: {k: float(v) for k, v in rec(p, setup.eval_batches).items()}
    return cache


class _Objective:
    """``jac=True`` objective over parameter dicts that counts evaluations."""

    def __init__(self, setup: TaskSetup, params0: Any):
        fns = _classical_fns(setup)
        self._vg, self._hvp, self._like = fns["vg"], fns["hvp"], params0
        self.nfev = 0
        self.nhev = 0

    def cast(self, x):
        return jax.tree_util.tree_map(lambda a, r: jnp.asarray(a, r.dtype), x, self._like)

    def __call__(self, x):
        v, g = self._vg(self.cast(x))
        self.nfev += 1
        return float(v), jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), g)

    def hessp(self, x, p):
        self.nhev += 1
        return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), self._hvp(self.cast(x), self.cast(p)))

    @property
    def cost(self) -> int:
        return self.nfev + self.nhev


def single_threaded_blas():
    """Limit BLAS to one thread during a classical run (scipy's L-BFGS-B does small vector work
    per iteration; a multi-threaded BLAS pays a synchronization per call)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _scipy_seed(setup: TaskSetup, method: ScipyMethod, seed: int) -> Curve:
    from learned_opt import minimize

    record = _classical_fns(setup)["record"]
    budget = setup.num_steps
    params0 = jax.tree_util.tree_map(lambda a: a[0], seed_inputs(setup, [seed])[0])
    obj = _Objective(setup, params0)
    r0 = record(params0)
    rec = {"steps": [0], "x": [0.0], **{k: [r0[k]] for k in OBJECTIVES}}
    stop_on_budget = method.method != "L-BFGS-B"  # L-BFGS-B enforces maxfun itself

    def add(xp, cost, step_inc=1):
        r = record(xp)
        rec["steps"].append(rec["steps"][-1] + step_inc)
        rec["x"].append(float(cost))
        for k in OBJECTIVES:
            rec[k].append(r[k])

    opts = {"maxiter": budget, **({"maxfun": budget} if method.method == "L-BFGS-B" else {}),
            **method.options}
    info: dict = {}
    stop_cost = [0]

    def callback(x):
        add(obj.cast(x), obj.cost)
        stop_cost[0] = obj.cost
        return bool(stop_on_budget and obj.cost >= budget)

    try:
        with single_threaded_blas():
            res = minimize(obj, params0, method=method.method, jac=True, callback=callback,
                           options=opts, hessp=obj.hessp if method.uses_hessp else None)
        stopped = int(getattr(res, "status", 0)) == _STATUS_CALLBACK
        # what the method itself used (minimize may evaluate once more after scipy returns, for
        # a fresh res.jac); an early stop happened at the last callback
        nhev = int(getattr(res, "nhev", 0) or 0)
        cost = stop_cost[0] if stopped else int(res.nfev) + nhev
        info.update(nit=int(getattr(res, "nit", 0) or 0), nfev=int(res.nfev), nhev=nhev, cost=cost,
                    success=bool(res.success), message=str(res.message))
        if cost > rec["x"][-1]:  # evaluations after the last completed iteration
            add(obj.cast(res.x), cost, step_inc=0)
    except Exception as e:  # a crashed run is recorded as a divergence, never dropped
        info.update(error=f"{type(e).__name__}: {e}", success=False)
        rec["steps"].append(rec["steps"][-1] + 1)
        rec["x"].append(float(max(obj.cost, 1)))
        for k in OBJECTIVES:
            rec[k].append(math.nan)
    keep = [i for i, c in enumerate(rec["x"]) if c <= budget or i == 0 or "error" in info]
    rec = {k: [v[i] for i in keep] for k, v in rec.items()}
    return Curve(seed=int(seed), steps=np.asarray(rec["steps"], np.int64), x=np.asarray(rec["x"]),
                 train=np.asarray(rec["train"]), valid=np.asarray(rec["valid"]),
                 test=np.asarray(rec["test"]), info=info)


def run_scipy(setup: TaskSetup, method: ScipyMethod, seeds: Sequence[int]) -> MethodRun:
    """A classical method from every reported seed's initialization (exact-objective tasks only)."""
    if not setup.exact or not method.applies_to(True, setup.num_params):
        why = ("minibatch task (exact objective needed)" if not setup.exact
               else f"{setup.num_params} parameters > max_params={method.max_params}")
        return MethodRun(name=method.name, kind="scipy", grid=[{}], curves=[], selection_scores=[math.nan],
                         chosen=0, selected_on="single_setting", skipped=why)
    t0 = time.perf_counter()
    row = [_scipy_seed(setup, method, int(s)) for s in seeds]
    return MethodRun(name=method.name, kind="scipy", grid=[{}], curves=[row], selection_scores=[math.nan],
                     chosen=0, selected_on="single_setting", run_seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------
def run_methods(setup: TaskSetup, methods: Sequence[Any], seeds: Sequence[int],
                protocol: Protocol = DEFAULT_PROTOCOL) -> dict[str, MethodRun]:
    """Every method on one prepared task: first-order methods grouped by family (one compile per
    family), classical ones one by one. Returns ``{name: MethodRun}`` in the order given."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    families: dict[Any, list] = {}
    for m in methods:
        if isinstance(m, FirstOrderMethod):
            families.setdefault(m.family or ("own", m.name), []).append(m)
    runs: dict[str, MethodRun] = {}
    for group in families.values():
        runs.update(run_first_order(setup, group, seeds, protocol))
    for m in methods:
        if isinstance(m, ScipyMethod):
            runs[m.name] = run_scipy(setup, m, seeds)
    return {m.name: runs[m.name] for m in methods}


def run_method(task: Any, method: Any, num_steps: int, seeds: Sequence[int] = (0, 1, 2), *,
               setup: Optional[TaskSetup] = None, protocol: Protocol = DEFAULT_PROTOCOL) -> MethodRun:
    """One method (anything :func:`eval.methods.as_method` accepts) on one task."""
    from eval.methods import as_method

    m = as_method(method)
    if setup is None:
        setup = prepare_task(task, num_steps, protocol=protocol)
    elif setup.num_steps != num_steps:
        raise ValueError(f"setup was prepared for {setup.num_steps} steps, not {num_steps}")
    return run_methods(setup, [m], seeds, protocol)[m.name]
