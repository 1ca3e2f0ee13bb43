"""One runner for every method: loss curves per step, per gradient evaluation and per second.

For a task and a horizon ``T`` (the gradient-evaluation budget) the runner records, per seed:

* ``loss``: the **evaluation objective** -- the task loss on one fixed batch with one fixed key
  (the whole training split when the task is full-batch or the split is small, else a fixed random
  subset of ``eval_examples`` training examples; the same convention as ``tasksets``' baseline
  sweep, so stored normalization statistics apply). Recorded on a schedule (every step on
  full-batch / data-free tasks, ``eval_points`` times otherwise) and always at step 0 and at the end;
* ``test_loss``: the same on a fixed batch of the held-out ``test`` split (NaN for data-free tasks);
* ``batch_loss``: the minibatch loss of every step (first-order methods);
* ``x``: cumulative gradient evaluations at each record (Hessian-vector products count as one) --
  the common cost axis, so L-BFGS's line-search evaluations are paid for;
* ``wall_time``: seconds since the start at each record (compile time excluded, kept apart).

First-order methods (optax transforms, learned optimizers) run on minibatches drawn inside one
``jit``-compiled ``lax.scan`` (uniform with replacement from the training split, keyed by
``fold_in(key, step)``), ``vmap``-ed over every hyperparameter setting of a sweep and called once per seed, so a whole
learning-rate sweep is one compiled program; their update is exactly the optax transform that
``learned_opt.minimize(method=<transform>)`` would iterate. Classical methods go through
``learned_opt.minimize`` on the exact training objective (the whole training split) with a
``jac=True`` objective that counts evaluations, and a callback that records each iterate.

Initialization follows ``tasksets``: ``k_init, k_run = split(PRNGKey(seed))``, ``params =
task.init(k_init)``, so seed ``s`` starts every method at the same point.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eval.methods import FirstOrderMethod, ScipyMethod, as_method

EVAL_KEY_SEED = 2**31 - 1  # fixed key of every evaluation loss (as in tasksets' baseline sweep)
EVAL_EXAMPLES = 512
EVAL_SUBSET_SEED = 12345
_STATUS_CALLBACK = 99  # learned_opt.minimize: stopped by the callback


# ------------------------------------------------------------------------------------------------
# curves
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Curve:
    """One run of one method (one hyperparameter setting, one seed) on one task."""

    method: str
    task: str
    seed: int
    steps: np.ndarray  # iteration index of each record (0 = initialization)
    x: np.ndarray  # cumulative gradient evaluations at each record
    loss: np.ndarray  # evaluation objective at each record
    test_loss: np.ndarray  # held-out loss at each record (NaN when not available)
    wall_time: np.ndarray  # seconds since start at each record (compile excluded)
    batch_loss: Optional[np.ndarray] = None  # per-step minibatch loss (first-order methods)
    hparams: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def initial_loss(self) -> float:
        return float(self.loss[0])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def final_test_loss(self) -> float:
        return float(self.test_loss[-1])

    @property
    def cost(self) -> float:
        """Gradient evaluations used."""
        return float(self.x[-1])


@dataclasses.dataclass
class MethodRun:
    """All runs of one method on one task: ``curves[g][s]`` for grid entry ``g`` and seed ``s``."""

    method: str
    kind: str
    task: str
    grid: list
    curves: list  # [grid][seed] of Curve
    chosen: int  # index of the tuned grid entry (lowest seed-mean final loss)
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    skipped: Optional[str] = None

    @property
    def selected(self) -> list:
        """The curves (one per seed) of the tuned hyperparameter setting."""
        return self.curves[self.chosen] if self.curves else []

    @property
    def hparams(self) -> dict:
        return dict(self.grid[self.chosen]) if self.grid else {}


def select_best(final_losses: np.ndarray) -> int:
    """Index of the row with the lowest mean final loss (``[grid, seed]``); a NaN/inf in any seed
    disqualifies a row; ties go to the first row. All disqualified -> 0."""
    f = np.asarray(final_losses, dtype=np.float64)
    score = np.where(np.all(np.isfinite(f), axis=1), f.mean(axis=1), np.inf)
    return int(np.argmin(score)) if np.any(np.isfinite(score)) else 0


# ------------------------------------------------------------------------------------------------
# task preparation
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TaskSetup:
    """A task plus the fixed batches and schedule the runner uses for it."""

    task: Any
    name: str
    num_steps: int
    eval_every: int
    minibatch: bool  # first-order methods sample minibatches (else they use the full batch)
    train_arrays: Optional[dict]  # minibatch source (None for data-free tasks)
    batch_size: int
    full_batch: Any  # the exact training objective's batch: whole training split (None: no data)
    eval_batch: Any
    test_batch: Any
    num_params: int
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)  # per-task compiled fns, seed inputs

    @property
    def exact(self) -> bool:
        """True when the training objective is exact for first-order methods too."""
        return not self.minibatch


def _fixed_subset(split, n: int) -> dict:
    if split.num_examples <= n:
        return {k: np.asarray(v) for k, v in split.full().items()}
    idx = np.sort(np.random.default_rng(EVAL_SUBSET_SEED).permutation(split.num_examples)[:n])
    return {k: np.asarray(v)[idx] for k, v in split.arrays.items()}


def prepare_task(task: Any, num_steps: int, *, name: Optional[str] = None, eval_points: int = 20,
                 eval_examples: int = EVAL_EXAMPLES, dense_full_batch: bool = True) -> TaskSetup:
    """Fix the evaluation batches and the evaluation schedule of ``task`` for horizon ``num_steps``.

    ``eval_points``: number of evaluations after step 0 on minibatch tasks (every
    ``ceil(T / eval_points)`` steps); full-batch and data-free tasks are evaluated every step when
    ``dense_full_batch``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not isinstance(eval_points, (int, np.integer)) or eval_points < 1:
        raise ValueError(f"eval_points must be a positive int, got {eval_points!r}")
    ds = getattr(task, "datasets", None)
    full_batch_task = bool(getattr(task, "full_batch", ds is None))
    if ds is None:
        train_arrays, batch_size, full, ev, test = None, 0, None, None, None
        minibatch = False
    else:
        train_arrays = {k: np.asarray(v) for k, v in ds.train.arrays.items()}
        batch_size = int(ds.train.batch_size)
        full = {k: np.asarray(v) for k, v in ds.train.full().items()}
        minibatch = not full_batch_task
        ev = full if full_batch_task else _fixed_subset(ds.train, eval_examples)
        test = _fixed_subset(ds.test, eval_examples)
    if minibatch or not dense_full_batch:
        eval_every = max(1, math.ceil(num_steps / eval_points))
    else:
        eval_every = 1
    params = task.init(jax.random.split(jax.random.PRNGKey(0))[0])
    num_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))
    return TaskSetup(task=task, name=name or getattr(task, "name", type(task).__name__),
                     num_steps=int(num_steps), eval_every=eval_every, minibatch=minibatch,
                     train_arrays=train_arrays, batch_size=batch_size, full_batch=full,
                     eval_batch=ev, test_batch=test, num_params=num_params)


def _loss_fns(setup: TaskSetup):
    task = setup.task
    key = jax.random.PRNGKey(EVAL_KEY_SEED)

    def eval_loss(params, eval_batch):
        return jnp.asarray(task.loss(params, key, eval_batch), jnp.float32)

    def test_loss(params, test_batch):
        if test_batch is None:
            return jnp.asarray(jnp.nan, jnp.float32)
        return jnp.asarray(task.loss(params, key, test_batch), jnp.float32)

    return eval_loss, test_loss


def init_params(task: Any, seed: int) -> Any:
    """The initial parameters of seed ``seed``: ``task.init(split(PRNGKey(seed))[0])``."""
    k_init, _ = jax.random.split(jax.random.PRNGKey(int(seed)))
    return task.init(k_init)


# ------------------------------------------------------------------------------------------------
# first-order methods: one jit(vmap(scan)) per (task, method)
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _step_randomness_fn(num_steps: int, batch_size: int, num_examples: int):
    """``k_run -> (batch indices [T, B], loss keys [T, 2])``: step ``t`` uses
    ``kb, kl = split(fold_in(k_run, t))``; indices uniform with replacement."""

    def fn(k_run):
        def one(t):
            kb, kl = jax.random.split(jax.random.fold_in(k_run, t))
            if batch_size:
                idx = jax.random.randint(kb, (batch_size,), 0, num_examples)
            else:
                idx = jnp.zeros((0,), jnp.int32)
            return idx, kl
        return jax.vmap(one)(jnp.arange(num_steps))

    return jax.jit(fn)


def seed_inputs(setup: TaskSetup, seed: int) -> tuple:
    """``(params0, batch_indices [T, B], loss_keys [T, 2])`` of one seed -- shared by all methods.

    Randomness is drawn outside the compiled training loops: PRNG code inside a ``vmap``-ed scan
    multiplies XLA compile time, and the same draws serve every method (common random numbers).
    """
    cache = setup._cache
    if ("seed", seed) not in cache:
        k_init, k_run = jax.random.split(jax.random.PRNGKey(int(seed)))
        params0 = setup.task.init(k_init)
        n = 0 if setup.train_arrays is None else next(iter(setup.train_arrays.values())).shape[0]
        bs = setup.batch_size if setup.minibatch else 0
        idx, keys = _step_randomness_fn(setup.num_steps, bs, n)(k_run)
        cache[("seed", seed)] = (params0, idx, keys)
    return cache[("seed", seed)]


def _first_order_program(setup: TaskSetup, method: FirstOrderMethod, record_params: bool = False):
    """``jit(vmap(run, grid))``: ``run(hp, params0, idx, keys, train_arrays, full, eval, test)``."""
    task = setup.task
    T, E = setup.num_steps, setup.eval_every
    C = math.ceil(T / E)
    eval_loss, test_loss = _loss_fns(setup)
    minibatch = setup.minibatch

    def run_one(hp, params, idx, keys, arrays, full, eval_batch, test_batch):
        opt = optax.with_extra_args_support(method.make(hp, T))
        state = opt.init(params)
        pad = C * E - T  # the last chunk's padding steps leave the state unchanged
        idx = jnp.concatenate([idx, jnp.zeros((pad,) + idx.shape[1:], idx.dtype)])
        keys = jnp.concatenate([keys, jnp.zeros((pad,) + keys.shape[1:], keys.dtype)])

        def step(carry, inp):
            p, s = carry
            t, bidx, kl = inp
            batch = {k: a[bidx] for k, a in arrays.items()} if minibatch else full
            loss, g = jax.value_and_grad(task.loss)(p, kl, batch)
            upd, s2 = opt.update(g, s, p, loss=loss)
            p2 = optax.apply_updates(p, upd)
            live = t < T
            p = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), p2, p)
            s = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), s2, s)
            out = (jnp.asarray(loss, jnp.float32), p) if record_params else jnp.asarray(loss, jnp.float32)
            return (p, s), out

        def chunk(carry, c):
            sl = c * E
            inp = (sl + jnp.arange(E), jax.lax.dynamic_slice_in_dim(idx, sl, E),
                   jax.lax.dynamic_slice_in_dim(keys, sl, E))
            carry, out = jax.lax.scan(step, carry, inp)
            return carry, (out, eval_loss(carry[0], eval_batch), test_loss(carry[0], test_batch))

        l0, t0 = eval_loss(params, eval_batch), test_loss(params, test_batch)
        _, (out, ls, ts) = jax.lax.scan(chunk, (params, state), jnp.arange(C))
        losses = jnp.concatenate([l0[None], ls])
        tests = jnp.concatenate([t0[None], ts])
        if record_params:
            bl, ps = out
            ps = jax.tree_util.tree_map(lambda a: a.reshape((C * E,) + a.shape[2:])[:T], ps)
            ps = jax.tree_util.tree_map(lambda a0, a: jnp.concatenate([a0[None], a]), params, ps)
            return losses, tests, bl.reshape(-1)[:T], ps
        return losses, tests, out.reshape(-1)[:T]

    return jax.jit(jax.vmap(run_one, in_axes=(0,) + (None,) * 7, axis_size=len(method.grid)))


def record_steps(num_steps: int, eval_every: int) -> np.ndarray:
    C = math.ceil(num_steps / eval_every)
    return np.array([min(num_steps, c * eval_every) for c in range(C + 1)], dtype=np.int64)


def run_first_order(setup: TaskSetup, method: FirstOrderMethod, seeds: Sequence[int]) -> MethodRun:
    """Every grid entry × seed of a first-order method: one compiled program, ``vmap``-ed over the
    grid (the seed's key stays unbatched -- batching PRNG keys multiplies compile time), called once
    per seed."""
    seeds = [int(s) for s in seeds]
    G, S = len(method.grid), len(seeds)
    hp = {k: jnp.asarray([float(g[k]) for g in method.grid], jnp.float32) for k in method.grid[0]}
    fn = _first_order_program(setup, method)
    data = (setup.train_arrays, setup.full_batch, setup.eval_batch, setup.test_batch)
    inputs = {s: seed_inputs(setup, s) for s in seeds}
    t0 = time.perf_counter()
    compiled = fn.lower(hp, *inputs[seeds[0]], *data).compile()
    compile_s = time.perf_counter() - t0
    steps = record_steps(setup.num_steps, setup.eval_every)
    curves = [[None] * S for _ in range(G)]
    run_s = 0.0
    for j, s in enumerate(seeds):
        t1 = time.perf_counter()
        out = jax.block_until_ready(compiled(hp, *inputs[s], *data))
        dt = time.perf_counter() - t1
        run_s += dt
        losses, tests, blosses = (np.asarray(a, np.float64) for a in out)
        wall = steps / setup.num_steps * (dt / G)  # amortized over the vmapped grid
        for g in range(G):
            curves[g][j] = Curve(method=method.name, task=setup.name, seed=s, steps=steps.copy(),
                                 x=steps.astype(np.float64), loss=losses[g], test_loss=tests[g],
                                 wall_time=wall.copy(), batch_loss=blosses[g],
                                 hparams=dict(method.grid[g]),
                                 info={"wall_time_amortized_over": G})
    chosen = select_best(np.array([[c.final_loss for c in row] for row in curves]))
    return MethodRun(method=method.name, kind=method.kind, task=setup.name,
                     grid=[dict(g) for g in method.grid], curves=curves, chosen=chosen,
                     compile_seconds=compile_s, run_seconds=run_s)


def first_order_path(setup: TaskSetup, method: FirstOrderMethod, hparams: dict, seed: int = 0) -> Any:
    """Parameters after every step (pytree with a leading axis of ``T + 1``) -- for path plots."""
    fn = _first_order_program(setup, method, record_params=True)
    hp = {k: jnp.asarray([float(v)], jnp.float32) for k, v in hparams.items()}
    out = fn(hp, *seed_inputs(setup, int(seed)), setup.train_arrays, setup.full_batch,
             setup.eval_batch, setup.test_batch)
    return jax.tree_util.tree_map(lambda a: np.asarray(a[0]), out[3])


# ------------------------------------------------------------------------------------------------
# classical methods through learned_opt.minimize
# ------------------------------------------------------------------------------------------------
def scipy_options(method: ScipyMethod, budget: int) -> dict:
    """The options a classical method gets: its own plus the gradient-evaluation budget."""
    opts = {"maxiter": int(budget)}
    if method.method == "L-BFGS-B":
        opts["maxfun"] = int(budget)
    opts.update(method.options)
    return opts


def _classical_fns(setup: TaskSetup) -> dict:
    """Jitted exact objective ``value_and_grad``, Hessian-vector product and evaluation losses,
    compiled once per task and shared by every classical method and seed."""
    cache = setup._cache.setdefault("classical", {})
    if not cache:
        task = setup.task
        key = jax.random.PRNGKey(EVAL_KEY_SEED)
        batch = setup.full_batch

        def objective(p):
            return task.loss(p, key, batch)

        eval_loss, test_loss = _loss_fns(setup)
        cache["vg"] = jax.jit(jax.value_and_grad(objective))
        cache["hvp"] = jax.jit(lambda p, v: jax.jvp(jax.grad(objective), (p,), (v,))[1])
        ev, te = jax.jit(eval_loss), jax.jit(test_loss)
        cache["eval"] = lambda p: float(ev(p, setup.eval_batch))
        cache["test"] = lambda p: float(te(p, setup.test_batch))
    return cache


class _Objective:
    """``jac=True`` objective over param dicts that counts evaluations (NumPy in, NumPy out)."""

    def __init__(self, setup: TaskSetup, params0: Any):
        fns = _classical_fns(setup)
        self._vg, self._hvp = fns["vg"], fns["hvp"]
        self._like = params0
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
        out = self._hvp(self.cast(x), self.cast(p))
        return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out)

    @property
    def cost(self) -> int:
        return self.nfev + self.nhev


def single_threaded_blas():
    """Limit NumPy/SciPy's BLAS to one thread for the duration of a classical run.

    scipy's L-BFGS-B does O(m·n) vector work per iteration; a multi-threaded OpenBLAS pays a
    thread synchronization per call, which on a busy 2-core machine was measured 40x slower
    (n = 16k: 9.0 s vs 0.21 s CPU for 180 iterations). Needs ``threadpoolctl`` (optional).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional dependency: run with whatever BLAS threading is configured
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_scipy(setup: TaskSetup, method: ScipyMethod, seeds: Sequence[int]) -> MethodRun:
    """A classical method from every seed's initialization, through ``learned_opt.minimize``."""
    if not method.applies_to(setup.exact, setup.num_params):
        why = ("minibatch task (full-batch only method)" if method.full_batch_only and not setup.exact
               else f"{setup.num_params} parameters > max_params={method.max_params}")
        return MethodRun(method=method.name, kind="scipy", task=setup.name, grid=[{}], curves=[],
                         chosen=0, skipped=why)
    from learned_opt import minimize

    fns = _classical_fns(setup)
    ev, te = fns["eval"], fns["test"]
    budget = setup.num_steps
    row = []
    t_run = 0.0
    for seed in seeds:
        params0 = seed_inputs(setup, int(seed))[0]
        obj = _Objective(setup, params0)
        rec = {"steps": [0], "x": [0.0], "loss": [ev(params0)],
               "test": [te(params0)], "time": [0.0]}
        stop_on_budget = method.method != "L-BFGS-B"  # L-BFGS-B enforces maxfun itself
        start = time.perf_counter()
        stop_cost = [0]

        def callback(x):
            rec["steps"].append(rec["steps"][-1] + 1)
            rec["x"].append(float(obj.cost))
            xp = obj.cast(x)
            rec["loss"].append(ev(xp))
            rec["test"].append(te(xp))
            rec["time"].append(time.perf_counter() - start)
            stop_cost[0] = obj.cost
            return bool(stop_on_budget and obj.cost >= budget)

        kwargs = {"hessp": obj.hessp} if method.uses_hessp else {}
        info: dict = {}
        try:
            with single_threaded_blas():
                res = minimize(obj, params0, method=method.method, jac=True, callback=callback,
                               options=scipy_options(method, budget), **kwargs)
            stopped = int(getattr(res, "status", 0)) == _STATUS_CALLBACK
            # what the method itself used: minimize may evaluate once more after scipy returns
            # (a fresh gradient for res.jac); an early stop happened at the last callback
            nfev = stop_cost[0] if stopped else int(res.nfev) + int(getattr(res, "nhev", 0) or 0)
            info.update(nit=int(getattr(res, "nit", 0) or 0), nfev=int(res.nfev) if not stopped else obj.nfev,
                        nhev=int(getattr(res, "nhev", 0) or 0) if not stopped else obj.nhev,
                        cost=nfev, success=bool(res.success), message=str(res.message))
            xf = obj.cast(res.x)
            final = ev(xf)
            if nfev > rec["x"][-1]:
                # evaluations after the last completed iteration (e.g. a failed line search)
                rec["steps"].append(rec["steps"][-1] + (0 if final == rec["loss"][-1] else 1))
                rec["x"].append(float(nfev))
                rec["loss"].append(final)
                rec["test"].append(te(xf))
                rec["time"].append(time.perf_counter() - start)
            elif final != rec["loss"][-1]:  # res.x is the truth about where the method ended
                rec["loss"][-1] = final
                rec["test"][-1] = te(xf)
            info["fun"] = float(res.fun)
        except Exception as e:  # a crashed run is recorded as a failure, never silently dropped
            info.update(error=f"{type(e).__name__}: {e}", nfev=obj.nfev, nhev=obj.nhev, success=False)
            rec["steps"].append(rec["steps"][-1] + 1)
            rec["x"].append(float(max(obj.cost, 1)))
            rec["loss"].append(math.nan)
            rec["test"].append(math.nan)
            rec["time"].append(time.perf_counter() - start)
        t_run += time.perf_counter() - start
        # the curve ends at the budget: records after it (line-search overshoot) are dropped
        keep = [i for i, c in enumerate(rec["x"]) if c <= budget or i == 0 or "error" in info]
        if len(keep) < len(rec["x"]):
            info["truncated_at_budget"] = {"records_dropped": len(rec["x"]) - len(keep),
                                           "cost_used": rec["x"][-1]}
            rec = {k: [v[i] for i in keep] for k, v in rec.items()}
        row.append(Curve(method=method.name, task=setup.name, seed=int(seed),
                         steps=np.asarray(rec["steps"], np.int64), x=np.asarray(rec["x"]),
                         loss=np.asarray(rec["loss"]), test_loss=np.asarray(rec["test"]),
                         wall_time=np.asarray(rec["time"]), hparams={}, info=info))
    return MethodRun(method=method.name, kind="scipy", task=setup.name, grid=[{}], curves=[row],
                     chosen=0, run_seconds=t_run)


# ------------------------------------------------------------------------------------------------
# the entry point
# ------------------------------------------------------------------------------------------------
def run_method(task: Any, method: Any, num_steps: int, seeds: Sequence[int] = (0, 1, 2), *,
               setup: Optional[TaskSetup] = None, eval_points: int = 20) -> MethodRun:
    """Run ``method`` (anything :func:`eval.methods.as_method` accepts) on ``task`` for a budget of
    ``num_steps`` gradient evaluations from each seed's initialization."""
    m = as_method(method)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if setup is None:
        setup = prepare_task(task, num_steps, eval_points=eval_points)
    elif setup.num_steps != num_steps:
        raise ValueError(f"setup was prepared for {setup.num_steps} steps, not {num_steps}")
    if isinstance(m, FirstOrderMethod):
        return run_first_order(setup, m, seeds)
    return run_scipy(setup, m, seeds)
