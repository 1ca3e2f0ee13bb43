"""Meta-gradient estimators with one interface: ``(theta, state, key) -> (meta_grad, state, metrics)``.

Notation: θ ∈ R^D (the flattened meta-parameters), N tasks, K inner steps per truncation,
``V_i(θ) = Σ_t w_t ℓ_{i,t}(θ)`` the meta-loss of task i over one unroll with per-step weights
``w_t = valid_t ω_t / K`` (truncated) or ``w_t = valid_t ω_t / Σ_s valid_s ω_s`` (full horizon: the
weighted mean normalized loss of the whole trajectory), ``ω_t`` the inner problem's
``meta_weighting`` (1 for ``"uniform"``). Every estimator forms per-task estimates ``g_i`` and returns their
mean over the tasks whose estimate is finite (non-finite ones are dropped and counted).

* ``es`` — truncated antithetic ES: ``ε_i ~ N(0, σ²I)``; both branches start from the same
  inner state and share task, data and keys; ``g_i = ε_i (V_i(θ+ε_i) - V_i(θ-ε_i)) / (2σ²)``.
  The + branch's state is carried to the next truncation.
* ``pes`` — persistent ES: ± inner states are both carried, with per-task accumulated
  perturbations ``a_i`` (the sum of the ε that the current trajectory's parameters depend on).
  ``g_i = Σ_t w_t (ℓ⁺_{i,t} - ℓ⁻_{i,t}) (ε_i + a_i [no reset before t]) / (2σ²)``;
  afterwards ``a_i <- a_i + ε_i``, or — when the task was reset during the unroll — *replaced* by
  ``ε_i`` (or 0 when the reset was the last step). Unbiased for the full-horizon smoothed loss.
* ``tbptt`` — truncated backprop through the unroll (reparameterization): ``g_i = ∇V_i(θ)``.
* ``smoothed_rp`` — Gaussian-smoothed reparameterization ``g_i = ∇V_i(θ + σ n_i)``,
  ``n_i ~ N(0, I)`` (``1/S Σ_s ∇θ L(θ + σ n_s)`` with S = N); truncated or full horizon.
* ``full_es`` / ``full_grad`` — full-horizon antithetic ES / exact backprop over whole fresh
  trajectories of ``schedule.max_length`` updates.

Backprop through an unroll (tbptt, smoothed_rp, full_grad, hybrid) rematerializes each inner step
under the estimator's ``remat`` policy (:attr:`GradientEstimator.remat_policy`; default ``"full"``:
memory O(steps · |inner state|) instead of every intermediate, and faster — see there).
* ``hybrid`` — the inverse-variance-weighted merge of ES and reparameterization gradients (Metz
  et al. 2019): from one antithetic population, ``g_es`` as in ES and ``g_rp`` the mean of the ±
  branch gradients; the variance of each mean, ``v = Σ_d Var_i(g_{i,d}) / N``, is measured from
  the population and ``g = (g_es/v_es + g_rp/v_rp) / (1/v_es + 1/v_rp)``.

Each kind is a :class:`Strategy` (what to perturb, whether to backprop, what state persists, and
``combine``: how the unroll's meta-losses, perturbations and gradients become per-task estimates)
in the registry :data:`STRATEGIES`; :class:`GradientEstimator` owns everything they share (θ
branches, the vectorized unroll, carried state, finite-masking, metrics). A new estimator is one
``Strategy`` subclass, passed as ``GradientEstimator(kind=MyStrategy("name", perturb=...), ...)``
or added to the registry.

Metrics (scalars): ``meta_loss`` (mean normalized loss over valid steps), ``grad_var`` (variance of
the returned mean estimate, summed over coordinates), ``frac_reset`` (fraction of tasks reset in
this unroll), ``num_nonfinite`` (tasks whose estimate was dropped), with ``task_grad_clip`` r ≥ 1
``task_grad_spread`` (the largest per-task estimate norm over the median, before each ``g_i`` is
clipped to r times the median norm: :func:`clip_to_median_norm`); hybrid adds ``var_es``,
``var_rp``, ``weight_es``. ``num_nonfinite_loss`` counts the inner update steps (over tasks) whose
training loss was NaN/inf — each such task is reset and its meta-loss clipped, so θ stays finite.
``inner_steps`` (a Python int attribute) is the number of inner steps — every branch of every task counted — per call.
"""
from __future__ import annotations

import abc
import dataclasses
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from outer_train.unroll import REMAT_POLICIES, InnerProblem, TaskState

#: Values of ``GradientEstimator.remat`` / ``TrainConfig.remat``: ``"auto"`` or a remat policy.
REMAT_CHOICES = ("auto",) + REMAT_POLICIES


class EstimatorState(NamedTuple):
    """Everything an estimator carries between outer steps (task axis first)."""

    tasks: Any  # TaskState with [N, B, ...] inner states, or None for full-horizon estimators
    accum: Any  # [N, D] PES accumulated perturbations, or None
    outer_step: jax.Array  # int32 number of estimator calls so far (drives curricula)


def _tree_all_finite(x: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim)))


def _masked_mean_var(g: jax.Array, ok: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean of ``g[i]`` over rows with ``ok[i]`` and the summed variance of that mean.

    ``var = Σ_d s²_d / n`` with ``s²`` the unbiased sample variance; NaN when no row is ok.
    """
    n = jnp.sum(ok)
    g0 = jnp.where(ok[:, None], g, 0.0)
    mean = jnp.sum(g0, 0) / jnp.maximum(n, 1)
    mean = jnp.where(n > 0, mean, jnp.nan)
    dev = jnp.where(ok[:, None], g - mean, 0.0)
    var = jnp.sum(dev ** 2) / jnp.maximum(n - 1, 1) / jnp.maximum(n, 1)
    var = jnp.where(n > 1, var, jnp.where(n == 1, jnp.inf, jnp.nan))
    return mean, var


def clip_to_median_norm(g: jax.Array, ok: jax.Array, ratio: float,
                        equalize: bool = False) -> tuple[jax.Array, jax.Array]:
    """Rows of ``g`` [M, D] rescaled so that none is longer than ``ratio`` times the median row norm.

    ``g_j <- g_j · min(1, ratio · median_k ‖g_k‖ / ‖g_j‖)``, the median over the rows with ``ok``;
    rows without ``ok`` are returned unchanged (the caller drops them). Scale-free: one task whose
    meta-gradient is orders of magnitude larger than the others' counts no more than a typical
    task instead of setting the direction of the mean. With ``equalize`` every row is rescaled to
    exactly that length, ``g_j <- g_j · ratio · median / ‖g_j‖`` (short rows are lengthened too): each
    task then has an equal vote on the direction of the mean, whatever its loss scale (an all-zero
    row stays zero). Returns the rows and ``max_j ‖g_j‖ / median`` before rescaling (NaN when no
    row is ok).
    """
    norms = jnp.sqrt(jnp.sum(jnp.where(ok[:, None], g, 0.0) ** 2, axis=1))
    median = jnp.nanmedian(jnp.where(ok, norms, jnp.nan))
    tiny = jnp.asarray(1e-30, g.dtype)
    scale = ratio * median / jnp.maximum(norms, tiny)
    scale = scale if equalize else jnp.minimum(1.0, scale)
    clipped = jnp.where((ok & jnp.isfinite(scale))[:, None], g * scale[:, None], g)
    spread = jnp.max(jnp.where(ok, norms, -jnp.inf)) / jnp.maximum(median, tiny)
    return clipped, jnp.where(jnp.any(ok), spread, jnp.nan)


def _check_task_grad_clip(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value == 0 or value >= 1):
        raise ValueError(f"task_grad_clip must be 0 (off) or a ratio >= 1 to the median task norm, got {value!r}")


def _check_task_grad_equalize(value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"task_grad_equalize must be True or False, got {value!r}")


def _rescale_tasks(g: jax.Array, ok: jax.Array, clip: float, equalize: bool) -> tuple[jax.Array, jax.Array]:
    """:func:`clip_to_median_norm` as configured by ``task_grad_clip`` / ``task_grad_equalize``
    (equalizing without a clip ratio uses the median norm itself)."""
    return clip_to_median_norm(g, ok, clip or 1.0, equalize=equalize)


def _nonfinite_loss_steps(out) -> jax.Array:
    """``[N, K]`` bool: update steps whose training loss was NaN/inf in some branch (the task is
    then reset; the reset step, which re-measures the diverged parameters, is not counted)."""
    bad = ~jnp.all(jnp.isfinite(out.loss), axis=-1) if out.loss.ndim == 3 else ~jnp.isfinite(out.loss)
    return bad & ~out.reset


def _first_branch(ts: TaskState) -> TaskState:
    """The task states restricted to branch 0 (keeping the branch axis, of size 1)."""
    first = lambda x: x[:, :1]  # noqa: E731
    return ts._replace(params=jax.tree_util.tree_map(first, ts.params),
                       opt_state=jax.tree_util.tree_map(first, ts.opt_state),
                       model_state=jax.tree_util.tree_map(first, ts.model_state),
                       init_loss=first(ts.init_loss))


class Combine(NamedTuple):
    """What a strategy's :meth:`Strategy.combine` sees after the unroll (task axis first)."""

    eps: Any  # [N, D] perturbations (None for the gradient-only strategies)
    values: jax.Array  # [N, B] per-branch meta-losses V
    out: Any  # StepOutput with [N, K, ...] fields
    w: jax.Array  # [N, K] per-step weights
    grads_b: Any  # [N, B, D] per-branch gradients of V (None unless the strategy differentiates)
    accum: Any  # [N, D] PES accumulated perturbations (None unless persistent)
    sigma: jax.Array  # the perturbation standard deviation


@dataclasses.dataclass(frozen=True)
class Strategy(abc.ABC):
    """One estimator kind: what it perturbs and how it combines the unroll into per-task gradients.

    ``perturb``: ``"antithetic"`` (branches θ ± ε), ``"smoothing"`` (one branch θ + σ n) or
    ``"none"``; ``differentiates``: backprop through the unroll; ``persistent``: both ± inner
    states and the accumulated perturbations are carried (PES); ``full_horizon``: always whole
    fresh trajectories; ``allows_full``: may be run with ``horizon="full"``. A new estimator is
    one subclass overriding :meth:`combine` and one entry of :data:`STRATEGIES` (or pass the
    instance as ``GradientEstimator(kind=...)``).
    """

    name: str
    perturb: str = "none"
    differentiates: bool = False
    persistent: bool = False
    full_horizon: bool = False
    allows_full: bool = False

    @abc.abstractmethod
    def combine(self, c: Combine) -> tuple[jax.Array, Any, dict]:
        """``(per_task [N, D], new accum, extra metrics)``."""


def _antithetic_es(c: Combine) -> jax.Array:
    return c.eps * ((c.values[:, 0] - c.values[:, 1]) / (2 * c.sigma ** 2))[:, None]


class _ES(Strategy):
    def combine(self, c):
        return _antithetic_es(c), c.accum, {}


class _PES(Strategy):
    def combine(self, c):
        diff = c.w * (c.out.meta[..., 0] - c.out.meta[..., 1])  # [N, K]
        resets_before = (jnp.cumsum(c.out.reset, axis=1) - c.out.reset) > 0
        c_all = jnp.sum(diff, axis=1)
        c_old = jnp.sum(jnp.where(resets_before, 0.0, diff), axis=1)
        per_task = (c_all[:, None] * c.eps + c_old[:, None] * c.accum) / (2 * c.sigma ** 2)
        any_reset = jnp.any(c.out.reset, axis=1)
        replaced = jnp.where(c.out.reset[:, -1][:, None], 0.0, c.eps)
        accum = jnp.where(any_reset[:, None], replaced, c.accum + c.eps)
        return per_task, accum, {}


class _Backprop(Strategy):
    def combine(self, c):
        return c.grads_b[:, 0], c.accum, {}


class _Hybrid(Strategy):
    def combine(self, c):
        g_es = _antithetic_es(c)
        g_rp = jnp.mean(c.grads_b, axis=1)
        ok = _tree_all_finite(g_es) & _tree_all_finite(g_rp)
        _, var_es = _masked_mean_var(g_es, ok)
        _, var_rp = _masked_mean_var(g_rp, ok)
        tiny = jnp.asarray(1e-30, g_es.dtype)
        p_es, p_rp = 1.0 / jnp.maximum(var_es, tiny), 1.0 / jnp.maximum(var_rp, tiny)
        weight_es = p_es / (p_es + p_rp)
        weight_es = jnp.where(jnp.isfinite(weight_es), weight_es, 0.5)
        per_task = weight_es * g_es + (1.0 - weight_es) * g_rp
        return per_task, c.accum, dict(var_es=var_es, var_rp=var_rp, weight_es=weight_es)


#: The built-in estimator strategies by name (see the module docstring for their math).
STRATEGIES: Mapping[str, Strategy] = MappingProxyType({s.name: s for s in (
    _ES("es", perturb="antithetic"),
    _PES("pes", perturb="antithetic", persistent=True),
    _Backprop("tbptt", differentiates=True),
    _Backprop("smoothed_rp", perturb="smoothing", differentiates=True, allows_full=True),
    _ES("full_es", perturb="antithetic", full_horizon=True, allows_full=True),
    _Backprop("full_grad", differentiates=True, full_horizon=True, allows_full=True),
    _Hybrid("hybrid", perturb="antithetic", differentiates=True, allows_full=True),
)})
ESTIMATORS = tuple(STRATEGIES)


@dataclasses.dataclass(frozen=True, eq=False)
class GradientEstimator:
    """A meta-gradient estimator (see the module docstring for the math of each ``kind``).

    Call ``init(key, theta) -> state`` once, then ``estimator(theta, state, key)`` — a pure
    function suitable for ``jax.jit``. ``num_tasks`` is N; ``unroll_length`` is K (ignored by the
    full-horizon kinds); ``sigma`` the ES / smoothing standard deviation; ``random_offsets``
    desynchronizes the tasks' first trajectories. ``task_layout`` (optional, set by
    :meth:`outer_train.distributed.TaskLayout.shard_estimator`) places the task axis on devices:
    ``task_layout.constrain(tree)`` returns a pytree of per-task arrays with a sharding constraint
    and ``task_layout.map_tasks(fn)`` runs ``fn(theta_nb, ts, keys, outer_step)`` per block of tasks
    (values are unchanged). ``remat`` (``"auto"`` or one of
    :data:`outer_train.unroll.REMAT_POLICIES`) is the ``jax.checkpoint`` policy of each inner step
    when the estimator differentiates (:attr:`remat_policy`); it never changes the estimate.
    """

    kind: str | Strategy
    problem: InnerProblem
    num_tasks: int = 8
    unroll_length: int = 20
    sigma: float = 0.01
    random_offsets: bool = True
    horizon: str = "truncated"
    task_layout: Any = None
    remat: str = "auto"
    task_grad_clip: float = 0.0
    task_grad_equalize: bool = False
    strategy: Strategy = dataclasses.field(init=False, repr=False)  # resolved from ``kind``

    def __post_init__(self):
        if isinstance(self.kind, Strategy):
            object.__setattr__(self, "strategy", self.kind)
        elif isinstance(self.kind, str) and self.kind in STRATEGIES:
            object.__setattr__(self, "strategy", STRATEGIES[self.kind])
        else:
            raise ValueError(f"unknown estimator {self.kind!r}; expected one of {ESTIMATORS} or a Strategy")
        for name in ("num_tasks", "unroll_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.strategy.perturb != "none" and not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 for estimator {self.kind!r}, got {self.sigma!r}")
        if self.horizon not in ("truncated", "full"):
            raise ValueError(f"horizon must be 'truncated' or 'full', got {self.horizon!r}")
        if self.horizon == "full" and not self.strategy.allows_full:
            raise ValueError(f"horizon='full' applies to smoothed_rp and hybrid (use full_es / full_grad "
                             f"for ES / backprop), not {self.kind!r}")
        if not isinstance(self.remat, str) or self.remat not in REMAT_CHOICES:
            raise ValueError(f"remat must be one of {list(REMAT_CHOICES)}, got {self.remat!r}")
        _check_task_grad_clip(self.task_grad_clip)
        _check_task_grad_equalize(self.task_grad_equalize)
        if not isinstance(self.problem, InnerProblem):
            raise TypeError(f"problem must be an InnerProblem, got {type(self.problem).__name__}")
        if self.task_layout is not None and not (hasattr(self.task_layout, "constrain")
                                                 and hasattr(self.task_layout, "map_tasks")):
            raise TypeError(f"task_layout must have constrain() and map_tasks(), got {self.task_layout!r}")

    def _per_task(self, tree: Any) -> Any:
        """``tree`` (per-task arrays) with the layout's sharding constraint (identity when unset)."""
        return tree if self.task_layout is None else self.task_layout.constrain(tree)

    # --------------------------------------------------------------------------- properties
    @property
    def full_horizon(self) -> bool:
        return self.strategy.full_horizon or self.horizon == "full"

    @property
    def remat_policy(self) -> str:
        """The remat policy of each inner step under backprop: ``remat`` with ``"auto"`` resolved to
        ``"full"`` (keep only the inner state per step, recompute the step in the backward pass);
        ``"none"`` when the estimator does not differentiate.

        ``"full"`` is the fastest measured choice as well as the smallest: on configuration (e) of
        ``benchmarks/bench_outer.py`` (tbptt, image MLP, MLP optimizer) storing every residual
        (``"none"``: 267 MB of temporaries per call) ran at 0.4–0.5× the speed of ``"full"``
        (30 MB) and storing the matmul outputs (``"dots"``, 131 MB) at ~0.8×: writing and reading
        back the per-parameter network's ``[N, P, hidden]`` activations costs more than recomputing
        them (``benchmarks/profile_backprop.py``).
        """
        if not self.differentiates:
            return "none"
        return "full" if self.remat == "auto" else self.remat

    @property
    def antithetic(self) -> bool:
        return self.strategy.perturb == "antithetic"

    @property
    def differentiates(self) -> bool:
        return self.strategy.differentiates

    @property
    def num_branches(self) -> int:
        return 2 if self.antithetic else 1

    @property
    def state_branches(self) -> int:
        """Branches kept in the carried state (PES keeps both ±; the others keep one)."""
        return 2 if self.strategy.persistent else 1

    @property
    def steps_per_call(self) -> int:
        """Inner steps per task per call (a full trajectory is max_length updates + 1 reset step)."""
        return self.problem.schedule.max_length + 1 if self.full_horizon else self.unroll_length

    @property
    def inner_steps(self) -> int:
        return self.num_tasks * self.num_branches * self.steps_per_call

    # ---------------------------------------------------------------------------------- init
    def _broadcast_theta(self, theta: Any, branches: int) -> Any:
        return jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (self.num_tasks, branches) + jnp.shape(x)), theta)

    def init(self, key: jax.Array, theta: Any) -> EstimatorState:
        """Initial estimator state: N sampled tasks (with random offsets) unless full-horizon."""
        flat, _ = ravel_pytree(theta)
        if self.full_horizon:
            return EstimatorState(tasks=None, accum=None, outer_step=jnp.zeros((), jnp.int32))
        tasks = self._per_task(self.problem.init_tasks(self._broadcast_theta(theta, self.state_branches), key,
                                                       jnp.zeros((), jnp.int32), self.random_offsets))
        accum = (self._per_task(jnp.zeros((self.num_tasks, flat.size), flat.dtype)) if self.strategy.persistent
                 else None)
        return EstimatorState(tasks=tasks, accum=accum, outer_step=jnp.zeros((), jnp.int32))

    # ------------------------------------------------------------------------------ helpers
    def _weights(self, out) -> jax.Array:
        """Per-step weights ``w`` ([N, K]) from the step outputs."""
        valid = out.valid
        if self.full_horizon:
            # only the first trajectory counts; everything after its reset step is ignored
            resets_before = jnp.cumsum(out.reset, axis=1) - out.reset
            valid = valid & (resets_before == 0)
            counted = valid.astype(jnp.float32) * out.weight
            return counted / jnp.maximum(jnp.sum(counted, axis=1, keepdims=True), 1e-12)
        return valid.astype(jnp.float32) * out.weight / self.unroll_length

    def _objective(self, flat_nb: jax.Array, ts: TaskState, key: jax.Array, outer_step: jax.Array, unravel):
        """All tasks: ``Σ_{i,b} V_{i,b}`` and auxiliaries; ``flat_nb`` is ``[N, B, D]``.

        Differentiating w.r.t. ``flat_nb`` (a per-task, per-branch copy of θ) yields the per-task
        gradients ``[N, B, D]`` in one backward pass.
        """
        theta_nb = jax.vmap(jax.vmap(unravel))(flat_nb)
        keys = self._per_task(self.problem.task_keys(key, self.num_tasks, self.steps_per_call))
        checkpoint = self.remat_policy

        def run(th, s, k, o):
            return self.problem.unroll_keys(th, s, k, o, checkpoint)

        if self.task_layout is not None:
            run = self.task_layout.map_tasks(run)
        new_ts, out = run(theta_nb, ts, keys, outer_step)
        w = self._weights(out)  # [N, K]
        values = jnp.sum(w[..., None] * out.meta, axis=1)  # [N, B]
        return jnp.sum(values), (values, new_ts, out, w)

    def _start_state(self, theta: Any, state: EstimatorState, key: jax.Array) -> TaskState:
        """The inner states this call unrolls from, with ``num_branches`` branches."""
        if self.full_horizon:
            return self.problem.init_tasks(self._broadcast_theta(theta, self.num_branches), key,
                                           state.outer_step, random_offset=False)
        ts = state.tasks
        if self.state_branches == self.num_branches:
            return ts
        dup = lambda x: jnp.repeat(x, self.num_branches, axis=1)  # noqa: E731
        return ts._replace(params=jax.tree_util.tree_map(dup, ts.params),
                           opt_state=jax.tree_util.tree_map(dup, ts.opt_state),
                           model_state=jax.tree_util.tree_map(dup, ts.model_state),
                           init_loss=dup(ts.init_loss))

    def _carry_state(self, ts: TaskState) -> TaskState:
        """Keep the branches that persist (all for PES, the first otherwise)."""
        if self.state_branches == self.num_branches:
            return ts
        return _first_branch(ts)

    # ------------------------------------------------------------------------------ the call
    def perturbations(self, eps_key: jax.Array, theta: Any) -> jax.Array | None:
        """The ``[N, D]`` perturbations ε (σ·N(0, I)) a call with this ``eps_key`` uses (None if none)."""
        flat, _ = ravel_pytree(theta)
        if self.strategy.perturb == "none":
            return None
        sigma = jnp.asarray(self.sigma, flat.dtype)
        return sigma * jax.random.normal(eps_key, (self.num_tasks, flat.size), flat.dtype)

    def values(self, theta: Any, state: EstimatorState, task_key: jax.Array) -> jax.Array:
        """Per-task unperturbed meta-losses ``V_i(θ)`` ([N]) on the tasks/data of ``task_key``.

        The same tasks, data and keys as :meth:`estimate` with this ``task_key`` (so finite
        differences of ``mean(values)`` check :meth:`estimate`'s gradients).
        """
        flat, unravel = ravel_pytree(theta)
        k_init, k_unroll = jax.random.split(task_key)
        if self.full_horizon:
            ts = self.problem.init_tasks(self._broadcast_theta(theta, 1), k_init, state.outer_step,
                                         random_offset=False)
        else:
            ts = _first_branch(state.tasks)
        flat_nb, ts = self._per_task((jnp.broadcast_to(flat, (self.num_tasks, 1, flat.size)), ts))
        _, (vals, _, _, _) = self._objective(flat_nb, ts, k_unroll, state.outer_step, unravel)
        return vals[:, 0]

    def __call__(self, theta: Any, state: EstimatorState, key: jax.Array):
        """``(meta_grad, new_state, metrics)``; ``key`` is split into ``(eps_key, task_key)``."""
        eps_key, task_key = jax.random.split(key)
        return self.estimate(theta, state, eps_key, task_key)

    def estimate(self, theta: Any, state: EstimatorState, eps_key: jax.Array, task_key: jax.Array):
        """:meth:`__call__` with the perturbation randomness and the task/data randomness separate."""
        flat, unravel = ravel_pytree(theta)
        n, d = self.num_tasks, flat.size
        k_init, k_unroll = jax.random.split(task_key)
        sigma = jnp.asarray(self.sigma, flat.dtype)
        eps: Any = self.perturbations(eps_key, theta)  # None for the gradient-only estimators
        eps = None if eps is None else self._per_task(eps)
        if self.antithetic:
            flat_nb = jnp.stack([flat + eps, flat - eps], axis=1)
        elif self.strategy.perturb == "smoothing":
            flat_nb = (flat + eps)[:, None]
        else:
            flat_nb = jnp.broadcast_to(flat, (n, 1, d))
        ts = self._start_state(unravel(flat), state, k_init)
        flat_nb, ts = self._per_task((flat_nb, ts))
        objective = lambda fb: self._objective(fb, ts, k_unroll, state.outer_step, unravel)  # noqa: E731
        if self.differentiates:
            (_, (values, new_ts, out, w)), grads_b = jax.value_and_grad(objective, has_aux=True)(
                flat_nb)  # grads_b: [N, B, D]
        else:
            _, (values, new_ts, out, w) = objective(flat_nb)
            grads_b: Any = None

        per_task, accum, metrics = self.strategy.combine(
            Combine(eps=eps, values=values, out=out, w=w, grads_b=grads_b, accum=state.accum, sigma=sigma))
        ok = _tree_all_finite(per_task) & jnp.all(jnp.isfinite(values), axis=1)
        if self.task_grad_clip or self.task_grad_equalize:
            per_task, metrics["task_grad_spread"] = _rescale_tasks(per_task, ok, self.task_grad_clip,
                                                                   self.task_grad_equalize)
        grad, var = _masked_mean_var(per_task, ok)
        valid = (w > 0)[..., None] & jnp.ones_like(out.meta, bool)
        meta_loss = jnp.sum(jnp.where(valid, out.meta, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
        metrics.update(meta_loss=meta_loss, grad_var=var,
                       frac_reset=jnp.mean(jnp.any(out.reset, axis=1).astype(jnp.float32)),
                       num_nonfinite=jnp.sum(~ok).astype(jnp.int32),
                       num_nonfinite_loss=jnp.sum(_nonfinite_loss_steps(out)).astype(jnp.int32))
        new_tasks = None if self.full_horizon else self._carry_state(new_ts)
        new_state = EstimatorState(tasks=new_tasks, accum=accum, outer_step=state.outer_step + 1)
        return unravel(grad), new_state, metrics


def make_estimator(kind: str, problem: InnerProblem, **kwargs: Any) -> GradientEstimator:
    """Build an estimator by name (one of :data:`ESTIMATORS`)."""
    return GradientEstimator(kind, problem, **kwargs)


def es(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Truncated antithetic ES."""
    return GradientEstimator("es", problem, **kw)


def pes(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Persistent evolution strategies."""
    return GradientEstimator("pes", problem, **kw)


def tbptt(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Truncated backprop through the unroll."""
    return GradientEstimator("tbptt", problem, **kw)


def smoothed_rp(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Gaussian-smoothed reparameterization gradient."""
    return GradientEstimator("smoothed_rp", problem, **kw)


def full_es(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Full-horizon antithetic ES."""
    return GradientEstimator("full_es", problem, **kw)


def full_grad(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Full-horizon backprop (jax.checkpoint per inner step)."""
    return GradientEstimator("full_grad", problem, **kw)


def hybrid(problem: InnerProblem, **kw: Any) -> GradientEstimator:
    """Inverse-variance-weighted merge of antithetic ES and reparameterization gradients."""
    return GradientEstimator("hybrid", problem, **kw)


class MixtureState(NamedTuple):
    """States of the member estimators of a :class:`MixtureEstimator` (a tuple, one per member)."""

    members: tuple


@dataclasses.dataclass(frozen=True, eq=False)
class MixtureEstimator:
    """Several estimators (e.g. one per TaskSet task shape) evaluated in one call, averaged.

    ``g = Σ_j g_j / M`` over the M members whose estimate is finite (members with a non-finite
    estimate are dropped and counted in ``num_nonfinite``); metrics are averaged. With
    ``task_grad_clip`` r ≥ 1 every member's estimate is first clipped to r times the median member
    norm (:func:`clip_to_median_norm`; metric ``task_grad_spread``, the largest norm over the median);
    with ``task_grad_equalize`` every member's estimate is rescaled to exactly that norm (r = 1 when
    ``task_grad_clip`` is 0), so each member has an equal vote on the direction.
    """

    members: tuple
    task_grad_clip: float = 0.0
    task_grad_equalize: bool = False

    def __post_init__(self):
        if not self.members:
            raise ValueError("a MixtureEstimator needs at least one member")
        _check_task_grad_clip(self.task_grad_clip)
        _check_task_grad_equalize(self.task_grad_equalize)
        object.__setattr__(self, "members", tuple(self.members))

    @property
    def inner_steps(self) -> int:
        return sum(m.inner_steps for m in self.members)

    @property
    def kind(self) -> str:
        return self.members[0].kind

    def init(self, key: jax.Array, theta: Any) -> MixtureState:
        keys = jax.random.split(key, len(self.members))
        return MixtureState(tuple(m.init(k, theta) for m, k in zip(self.members, keys)))

    def __call__(self, theta: Any, state: MixtureState, key: jax.Array):
        keys = jax.random.split(key, len(self.members))
        grads, states, metrics = [], [], []
        for m, s, k in zip(self.members, state.members, keys):
            g, s2, met = m(theta, s, k)
            grads.append(ravel_pytree(g)[0])
            states.append(s2)
            metrics.append(met)
        _, unravel = ravel_pytree(theta)
        g = jnp.stack(grads)
        ok = _tree_all_finite(g)
        spread = None
        if self.task_grad_clip or self.task_grad_equalize:
            g, spread = _rescale_tasks(g, ok, self.task_grad_clip, self.task_grad_equalize)
        n = jnp.sum(ok)
        mean = jnp.where(n > 0, jnp.sum(jnp.where(ok[:, None], g, 0.0), 0) / jnp.maximum(n, 1), jnp.nan)
        common = set.intersection(*(set(m) for m in metrics))
        out: dict[str, Any] = {k: jnp.mean(jnp.stack([jnp.asarray(m[k], jnp.float32) for m in metrics]))
                               for k in common}
        out["num_nonfinite"] = sum(jnp.asarray(m["num_nonfinite"]) for m in metrics) + jnp.sum(~ok)
        out["num_nonfinite_loss"] = sum(jnp.asarray(m["num_nonfinite_loss"]) for m in metrics)  # a count: summed
        if spread is not None:
            out["task_grad_spread"] = spread
        return unravel(mean), MixtureState(tuple(states)), out
