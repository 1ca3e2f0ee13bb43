"""The vectorized truncated step: N inner problems unrolled with ``lax.scan``, vmapped over tasks.

Every per-task array carries the task axis first (``[N, ...]``); arrays that differ between the
branches of an antithetic pair (θ+ε / θ-ε) carry a branch axis second (``[N, B, ...]``). The two
branches of a task always share the task, its data, its loss keys, its initial parameters and its
reset times; only θ differs.

**One inner step of one task** (:meth:`InnerProblem.step`), with ``t`` = ``state.step``:

* if ``t >= length`` the trajectory is over: the step *measures* ``L(w_T)`` (train mode) and then
  lazily resets — a new task ``cfg ~ family.sample``, new ``w_0 = task.init``, fresh optimizer
  state, a new length from the truncation schedule, ``t = 0``. No update is made in a reset step.
* otherwise it computes ``(L(w_t), ∇L(w_t))`` on a training batch, updates
  ``w_{t+1} = w_t + U_θ(∇L, ...)`` with the learned optimizer and sets ``t <- t + 1``. If any
  branch's loss is NaN/inf, ``t <- length`` so that the next step resets the task.

**Meta-loss.** The per-step measurement is normalized and clipped (NaN/inf -> the upper clip):

* ``meta_loss="train"``: ``ℓ_t = norm(L_train(w_t))`` for ``t = 1..T`` (the pre-update loss of
  each update step, plus ``L(w_T)`` measured in the reset step). The loss of ``w_0`` — the first
  step after a reset — is θ-independent and *masked out*.
* ``meta_loss="outer_valid"``: ``ℓ_t = norm(L_outer_valid(w_{t+1}))`` measured after each update on
  a held-out batch (``outer_valid`` split; for data-free tasks a fresh noise key); reset steps are
  masked.

Either way a trajectory of ``T`` updates yields exactly ``T`` measured, θ-dependent losses and
occupies ``T + 1`` inner steps.

**Weighting** (``meta_weighting``): each ``ℓ_t`` carries a weight ``ω_t`` that the estimators
multiply into their per-step weights: ``"uniform"`` (``ω_t = 1``, the mean loss over the run),
``"linear"`` (``ω_t = 2 t/T``: averaged over a trajectory still 1, but the final loss counts twice
and the first steps almost not -- closer to an evaluation that scores the final loss) or
``"cubic"`` (``ω_t = 4 (t/T)³``: also averaging 1, the final loss counting four times and the
first half of the run together only 1/16 of the weight -- closer still).

**Normalization** (``normalizer``): ``"initial"`` (default for task families) divides by the
training loss at ``w_0`` of the same trajectory, ``L(w)/L(w_0)`` — so every task starts at 1 and
0 is a perfect fit (expects positive losses); ``"none"`` uses the raw loss; a callable
``normalizer(loss) -> normalized`` is used as given (e.g. ``tasksets.normalize`` with the
task's stored statistics: ``(L - best) / (init - best)``). The result is clipped to ``clip``.

**Random offsets.** :meth:`InnerProblem.init_tasks` can start each task's first trajectory at a
random step ``offset ~ U{0..T-1}`` (a shortened first trajectory), so tasks reset at different
outer steps.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from outer_train.truncation import ConstantSchedule, LogUniformSchedule, initial_offsets
from tasks.base import FixedTaskFamily  # noqa: F401  (moved to tasks; re-exported)

META_WEIGHTINGS = ("uniform", "linear", "cubic")


def _meta_weight(weighting: str, progress: jax.Array) -> jax.Array:
    """``ω_t`` of :data:`META_WEIGHTINGS` at ``progress = t/T`` (each averages 1 over ``t/T ∈ [0, 1]``)."""
    if weighting == "linear":
        return 2.0 * progress
    if weighting == "cubic":
        return 4.0 * progress ** 3
    return jnp.ones((), jnp.float32)

#: Remat (``jax.checkpoint``) policies of one inner step under backprop through an unroll: what the
#: backward pass keeps from the forward pass and what it recomputes. None changes a value.
#:
#: * ``"none"`` — keep every residual of every inner step (no recomputation; most memory);
#: * ``"full"`` — keep only the scan carry (the inner state) per step and recompute the whole
#:   step in the backward pass (least memory: O(K · |state|));
#: * ``"dots"`` — keep the outputs of matrix multiplications (the per-parameter network's and the
#:   task's layers) and recompute the elementwise work (features, activations) between them.
REMAT_POLICIES = ("none", "full", "dots")


def check_remat(policy: Any, what: str = "remat") -> str:
    """The remat policy name (``True`` -> ``"full"``, ``False`` -> ``"none"``); ValueError naming
    ``what`` for anything else."""
    if policy is True:
        return "full"
    if policy is False:
        return "none"
    if not isinstance(policy, str) or policy not in REMAT_POLICIES:
        raise ValueError(f"{what} must be one of {list(REMAT_POLICIES)}, got {policy!r}")
    return policy


def remat_step(body: Callable, policy: bool | str) -> Callable:
    """``body`` (one scan step) under the remat policy ``policy`` (:data:`REMAT_POLICIES`)."""
    policy = check_remat(policy, "checkpoint")
    if policy == "none":
        return body
    if policy == "full":
        return jax.checkpoint(body, prevent_cse=False)
    return jax.checkpoint(body, prevent_cse=False, policy=jax.checkpoint_policies.dots_saveable)


class TaskState(NamedTuple):
    """State of N inner problems (leading axis N; branch axis B second where noted)."""

    cfg: Any  # [N, ...] task configuration (pytree of arrays from family.sample)
    step: jax.Array  # [N] int32 updates done in the current trajectory
    length: jax.Array  # [N] int32 updates in the current trajectory
    fresh: jax.Array  # [N] bool: the next step is the first step of a trajectory
    params: Any  # [N, B, ...] inner parameters
    opt_state: Any  # [N, B, ...] learned-optimizer state
    model_state: Any  # [N, B, ...] non-trainable model state (None for stateless tasks)
    init_loss: jax.Array  # [N, B] training loss at w_0 of the current trajectory


class StepOutput(NamedTuple):
    """What one inner step reports (per task; stacked over the scan to ``[K, ...]``)."""

    meta: jax.Array  # [B] normalized, clipped measured loss ℓ_t (meaningful where valid)
    valid: jax.Array  # [] bool: ℓ_t counts toward the meta-loss
    reset: jax.Array  # [] bool: this step ended the trajectory and re-sampled the task
    loss: jax.Array  # [B] raw training loss at w_t
    progress: jax.Array  # [] float32 fraction of the trajectory done at the measurement, t/T in (0, 1]
    weight: jax.Array  # [] float32 weight of ℓ_t in the meta-loss (``InnerProblem.meta_weighting``)


def _where(pred: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


@dataclasses.dataclass(frozen=True, eq=False)
class InnerProblem:
    """A task family + learned optimizer + truncation schedule + meta-loss definition.

    ``num_steps`` is the static horizon told to the learned optimizer (``opt_fn(θ, num_steps)``);
    it defaults to the schedule's ``max_length``. A learned optimizer whose class sets
    ``traced_horizon = True`` is told each trajectory's own (traced) length instead, so under a
    log-uniform truncation schedule its fraction-of-training features stay right; ``num_steps``
    set explicitly overrides this.
    """

    if TYPE_CHECKING:  # set in __post_init__ (not a dataclass field): the datasets of the family
        _datasets: ClassVar[Any]

    family: Any
    lopt: Any
    schedule: ConstantSchedule | LogUniformSchedule
    meta_loss: str = "train"
    normalizer: str | Callable[[jax.Array], jax.Array] = "initial"
    clip: tuple[float, float] = (-2.0, 2.0)
    num_steps: int | None = None
    meta_weighting: str = "uniform"

    def __post_init__(self):
        if self.meta_weighting not in META_WEIGHTINGS:
            raise ValueError(f"meta_weighting must be one of {META_WEIGHTINGS}, got {self.meta_weighting!r}")
        if self.meta_loss not in ("train", "outer_valid"):
            raise ValueError(f"meta_loss must be 'train' or 'outer_valid', got {self.meta_loss!r}")
        if not (callable(self.normalizer) or self.normalizer in ("initial", "none")):
            raise ValueError(f"normalizer must be 'initial', 'none' or a callable, got {self.normalizer!r}")
        lo, hi = (float(c) for c in self.clip)
        if not lo < hi:
            raise ValueError(f"clip must be (low, high) with low < high, got {self.clip!r}")
        if not hasattr(self.family, "sample") or not hasattr(self.family, "task_fn"):
            raise TypeError(f"family must have sample(key) and task_fn(cfg), got {type(self.family).__name__}")
        if not hasattr(self.lopt, "opt_fn") or not hasattr(self.lopt, "init"):
            raise TypeError(f"lopt must be a LearnedOptimizer, got {type(self.lopt).__name__}")
        # The datasets of a family do not depend on the (traced) cfg: take them from one member.
        probe = self.family.task_fn(self.family.sample(jax.random.PRNGKey(0)))
        object.__setattr__(self, "_datasets", getattr(probe, "datasets", None))
        if self.meta_loss == "outer_valid" and self._datasets is not None \
                and getattr(self._datasets, "outer_valid", None) is None:
            raise ValueError("meta_loss='outer_valid' needs tasks whose datasets have an outer_valid split")

    @property
    def horizon(self) -> int:
        return self.schedule.max_length if self.num_steps is None else int(self.num_steps)

    # ------------------------------------------------------------------------------- helpers
    @property
    def tells_length(self) -> bool:
        """The optimizer is told each trajectory's traced length (see the class docstring)."""
        return self.num_steps is None and bool(getattr(self.lopt, "traced_horizon", False))

    def _opt(self, theta: Any, length: jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
        if length is not None and self.tells_length:
            return self.lopt.opt_fn(theta, num_steps=jnp.asarray(length, jnp.int32))
        return self.lopt.opt_fn(theta, num_steps=self.horizon)

    def _batch(self, split: str, key: jax.Array) -> Any:
        if self._datasets is None:
            return None
        return self._datasets.split(split).sample(key)

    def _normalize(self, measured: jax.Array, init_loss: jax.Array) -> jax.Array:
        if callable(self.normalizer):
            value = self.normalizer(measured)
        elif self.normalizer == "initial":
            value = measured / jnp.maximum(init_loss, 1e-30)
        else:
            value = measured
        lo, hi = (float(c) for c in self.clip)
        value = jnp.asarray(value, jnp.float32)
        return jnp.clip(jnp.where(jnp.isfinite(value), value, hi), lo, hi)

    def fresh_task(self, theta_b: Any, key: jax.Array, outer_step: jax.Array | int, num_branches: int | None):
        """Sample one new task and its initial inner state for B branches (θ_b has axis B).

        ``num_branches=None``: one branch without a branch axis (θ_b is then a plain θ).
        """
        k_cfg, k_init, k_len = jax.random.split(key, 3)
        cfg = self.family.sample(k_cfg)
        task = self.family.task_fn(cfg)
        params, model_state = task.init_with_state(k_init)
        length = self.schedule.sample(k_len, outer_step)
        if num_branches is None:
            return cfg, length, params, self._opt(theta_b, length).init(params), model_state
        params_b = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_branches,) + jnp.shape(x)), params)
        mstate_b = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_branches,) + jnp.shape(x)),
                                          model_state)
        opt_state_b = jax.vmap(lambda th, p: self._opt(th, length).init(p))(theta_b, params_b)
        return cfg, length, params_b, opt_state_b, mstate_b

    # ----------------------------------------------------------------------------- one task
    def init_task(self, theta_b: Any, key: jax.Array, outer_step: jax.Array | int = 0,
                  random_offset: bool = True) -> TaskState:
        """Initial state of one task (no task axis; branch axis B from ``theta_b``)."""
        num_branches = jax.tree_util.tree_leaves(theta_b)[0].shape[0]
        k_task, k_off = jax.random.split(key)
        cfg, length, params, opt_state, mstate = self.fresh_task(theta_b, k_task, outer_step, num_branches)
        step = initial_offsets(k_off, length) if random_offset else jnp.zeros((), jnp.int32)
        return TaskState(cfg=cfg, step=step, length=length, fresh=jnp.ones((), bool), params=params,
                         opt_state=opt_state, model_state=mstate,
                         init_loss=jnp.ones((num_branches,), jnp.float32))

    def init_tasks(self, theta_nb: Any, key: jax.Array, outer_step: jax.Array | int = 0,
                   random_offset: bool = True) -> TaskState:
        """Initial states of N tasks: ``theta_nb`` has leading axes ``[N, B]``."""
        n = jax.tree_util.tree_leaves(theta_nb)[0].shape[0]
        keys = jax.random.split(key, n)
        return jax.vmap(lambda th, k: self.init_task(th, k, outer_step, random_offset))(theta_nb, keys)

    def advance(self, theta_b: Any, ts: TaskState, key: jax.Array, branched: bool = True):
        """The non-reset part of one inner step of one task -> ``(state, StepOutput)``.

        Computes the loss and gradient at ``w_t``, the update and the measurement; the returned
        state is the advanced one (meaningless for tasks whose ``needs_reset`` is set — those are
        replaced by :meth:`reset_where`). ``branched=False``: a single branch whose state and θ
        carry no branch axis (see :func:`drop_branch_axis`); the outputs still have ``[1]``.
        """
        k_data, k_loss, k_valid_data, k_valid_loss, _ = jax.random.split(key, 5)
        task = self.family.task_fn(ts.cfg)
        batch = self._batch("train", k_data)
        valid_batch = self._batch("outer_valid", k_valid_data) if self.meta_loss == "outer_valid" else None
        needs_reset = ts.step >= ts.length

        def branch(theta, params, opt_state, mstate):
            def loss_fn(p):
                return task.loss_with_state(p, mstate, k_loss, batch)

            (loss, new_mstate), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, new_opt_state = self._opt(theta, ts.length).update(grads, opt_state, params, loss=loss)
            new_params = optax.apply_updates(params, updates)
            if self.meta_loss == "outer_valid":
                measured, _ = task.loss_with_state(new_params, new_mstate, k_valid_loss, valid_batch)
            else:
                measured = loss
            return loss, measured, new_params, new_opt_state, new_mstate

        run = jax.vmap(branch) if branched else branch
        loss, measured, new_params, new_opt_state, new_mstate = run(
            theta_b, ts.params, ts.opt_state, ts.model_state)
        loss = jnp.asarray(loss, jnp.float32)
        init_loss = jnp.where(ts.fresh, jax.lax.stop_gradient(loss), ts.init_loss)
        meta = self._normalize(jnp.asarray(measured, jnp.float32), init_loss)
        valid = ~ts.fresh if self.meta_loss == "train" else ~needs_reset
        measured_at = ts.step if self.meta_loss == "train" else ts.step + 1
        progress = jnp.clip(measured_at.astype(jnp.float32) / jnp.maximum(ts.length, 1).astype(jnp.float32),
                            0.0, 1.0)
        finite = jnp.all(jnp.isfinite(loss))
        advanced = TaskState(cfg=ts.cfg, step=jnp.where(finite, ts.step + 1, ts.length),
                             length=ts.length, fresh=jnp.zeros((), bool), params=new_params,
                             opt_state=new_opt_state, model_state=new_mstate, init_loss=init_loss)
        weight = _meta_weight(self.meta_weighting, progress)
        if not branched:
            meta, loss = meta[None], loss[None]
        return advanced, StepOutput(meta=meta, valid=valid, reset=needs_reset, loss=loss, progress=progress,
                                    weight=weight)

    def reset_where(self, theta_b: Any, ts: TaskState, reset: jax.Array, key: jax.Array,
                    outer_step: jax.Array | int, branched: bool = True) -> TaskState:
        """``ts`` with a freshly sampled task (new cfg, w_0, optimizer state, length) if ``reset``
        (``branched=False``: no branch axis, as in :meth:`advance`)."""
        num_branches = jax.tree_util.tree_leaves(theta_b)[0].shape[0] if branched else None
        k_reset = jax.random.split(key, 5)[4]
        cfg, length, params0, opt_state0, mstate0 = self.fresh_task(theta_b, k_reset, outer_step, num_branches)
        fresh = TaskState(cfg=cfg, step=jnp.zeros((), jnp.int32), length=length, fresh=jnp.ones((), bool),
                          params=params0, opt_state=opt_state0, model_state=mstate0,
                          init_loss=jnp.ones(() if num_branches is None else (num_branches,), jnp.float32))
        return _where(reset, fresh, ts)

    def step(self, theta_b: Any, ts: TaskState, key: jax.Array, outer_step: jax.Array | int):
        """One inner step of one task for its B branches -> ``(new_state, StepOutput)``."""
        advanced, out = self.advance(theta_b, ts, key)
        new_state = jax.lax.cond(out.reset, lambda s: self.reset_where(theta_b, s, out.reset, key, outer_step),
                                 lambda s: s, advanced)
        return new_state, out

    def unroll_task(self, theta_b: Any, ts: TaskState, key: jax.Array, num_steps: int,
                    outer_step: jax.Array | int = 0, checkpoint: bool | str = False):
        """``lax.scan`` of ``num_steps`` inner steps of one task -> ``(state, StepOutput[K])``.

        ``checkpoint``: a remat policy name (:data:`REMAT_POLICIES`; ``True`` = ``"full"``,
        ``False`` = ``"none"``) applied to each inner step.
        """
        keys = jax.random.split(key, num_steps)

        def body(state, k):
            return self.step(theta_b, state, k, outer_step)

        return jax.lax.scan(remat_step(body, checkpoint), ts, keys)

    @staticmethod
    def task_keys(key: jax.Array, num_tasks: int, num_steps: int) -> jax.Array:
        """The ``[N, K]`` per-task, per-step keys an :meth:`unroll` with ``key`` uses."""
        return jax.vmap(lambda k: jax.random.split(k, num_steps))(jax.random.split(key, num_tasks))

    def unroll(self, theta_nb: Any, ts: TaskState, key: jax.Array, num_steps: int,
               outer_step: jax.Array | int = 0, checkpoint: bool | str = False):
        """Vectorized truncated step: all N tasks (``theta_nb`` is ``[N, B, ...]``).

        ``lax.scan`` over steps of the task-vmapped step; the (comparatively expensive) reset
        path runs under one batch-level ``lax.cond`` only on steps where some task resets.
        Same keys and results as N separate :meth:`unroll_task` runs. Returns
        ``(state, StepOutput)`` with outputs shaped ``[N, K, ...]`` (task axis first).
        """
        keys = self.task_keys(key, ts.step.shape[0], num_steps)
        return self.unroll_keys(theta_nb, ts, keys, outer_step, checkpoint)

    def unroll_keys(self, theta_nb: Any, ts: TaskState, keys: jax.Array, outer_step: jax.Array | int = 0,
                    checkpoint: bool | str = False):
        """:meth:`unroll` given its ``[N, K]`` keys (:meth:`task_keys`).

        Every input but ``outer_step`` and every output carries the task axis first and tasks do
        not interact, so any block of tasks can be unrolled on its own (what a device of a
        sharded run does): the batch-level reset test then only looks at the block's tasks.

        ``checkpoint`` is the remat policy of each inner step (:data:`REMAT_POLICIES`; ``True`` =
        ``"full"``, ``False`` = ``"none"``): what the backward pass stores vs recomputes. It does
        not change any value. With a single branch (``B = 1``) the branch axis is dropped for the
        scan and restored afterwards (:func:`drop_branch_axis`): same values, but no size-1 axis
        in the per-parameter arrays, on which XLA:CPU's fused elementwise+reduce kernels (the
        backward pass of the per-parameter network) run an order of magnitude slower.
        """
        checkpoint = check_remat(checkpoint, "checkpoint")
        keys = jnp.swapaxes(keys, 0, 1)  # [K, N]
        branched = jax.tree_util.tree_leaves(theta_nb)[0].shape[1] != 1
        if not branched:
            theta_nb = jax.tree_util.tree_map(lambda x: x[:, 0], theta_nb)
            ts = drop_branch_axis(ts)

        def body(state, k):
            advanced, out = jax.vmap(lambda th, s, kk: self.advance(th, s, kk, branched))(theta_nb, state, k)
            new_state = jax.lax.cond(
                jnp.any(out.reset),
                lambda s: jax.vmap(lambda th, si, r, kk: self.reset_where(th, si, r, kk, outer_step, branched))(
                    theta_nb, s, out.reset, k),
                lambda s: s, advanced)
            return new_state, out

        final, out = jax.lax.scan(remat_step(body, checkpoint), ts, keys)
        if not branched:
            final = add_branch_axis(final)
        return final, jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), out)


def drop_branch_axis(ts: TaskState) -> TaskState:
    """``[N, 1, ...]`` task states -> ``[N, ...]`` (params, optimizer and model state, init loss)."""
    drop = lambda x: x[:, 0]  # noqa: E731
    return ts._replace(params=jax.tree_util.tree_map(drop, ts.params),
                       opt_state=jax.tree_util.tree_map(drop, ts.opt_state),
                       model_state=jax.tree_util.tree_map(drop, ts.model_state),
                       init_loss=drop(ts.init_loss))


def add_branch_axis(ts: TaskState) -> TaskState:
    """Inverse of :func:`drop_branch_axis`."""
    add = lambda x: x[:, None]  # noqa: E731
    return ts._replace(params=jax.tree_util.tree_map(add, ts.params),
                       opt_state=jax.tree_util.tree_map(add, ts.opt_state),
                       model_state=jax.tree_util.tree_map(add, ts.model_state),
                       init_loss=add(ts.init_loss))
