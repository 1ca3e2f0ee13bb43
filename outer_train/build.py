"""From a :class:`~outer_train.config.TrainConfig` to objects: task family, learned optimizer,
inner problem(s) and the estimator."""
from __future__ import annotations

from typing import Any

from outer_train.config import TrainConfig
from outer_train.estimators import GradientEstimator, MixtureEstimator
from outer_train.truncation import make_schedule
from outer_train.unroll import InnerProblem
from tasks.base import FixedTaskFamily


def build_lopt(config: TrainConfig) -> Any:
    """The learned optimizer ``learned_opt.get_optimizer(config.optimizer, **optimizer_kwargs)``."""
    from learned_opt.registry import get_optimizer
    return get_optimizer(config.optimizer, **config.optimizer_kwargs)


def build_schedule(config: TrainConfig):
    start = config.curriculum_start
    return make_schedule(config.trunc_schedule, config.trunc_length, config.min_trunc_length,
                         start, config.curriculum_steps if start is not None else 0)


def build_family(config: TrainConfig) -> Any:
    """The task family of a ``quadratic`` or ``image_mlp`` config."""
    from tasks import families
    if config.task == "quadratic":
        return families.QuadraticFamily(**config.task_kwargs)
    if config.task == "image_mlp":
        return families.ImageMLPFamily(**config.task_kwargs)
    raise ValueError(f"task {config.task!r} is not a single family")


def mixture_tasks(config: TrainConfig) -> list:
    """``mixture_size`` (task, cfg) pairs drawn with ``seed`` from the named taskset."""
    import numpy as np

    import tasksets
    cfgs = tasksets.load_taskset(config.taskset)
    if not cfgs:
        raise ValueError(f"taskset {config.taskset!r} is empty")
    rng = np.random.default_rng(config.seed)
    idx = rng.choice(len(cfgs), size=min(config.mixture_size, len(cfgs)), replace=False)
    return [(tasksets.build_task(cfgs[i]), cfgs[i]) for i in sorted(idx)]


def build_estimator(config: TrainConfig, lopt: Any, family: Any | None = None):
    """The estimator of ``config`` (a :class:`MixtureEstimator` for taskset mixtures)."""
    schedule = build_schedule(config)
    common: dict[str, Any] = dict(num_tasks=config.num_tasks, unroll_length=config.unroll_length, sigma=config.sigma,
                  random_offsets=config.random_offsets, remat=config.remat,
                  task_grad_clip=config.task_grad_clip, task_grad_equalize=config.task_grad_equalize)
    if config.task == "taskset_mixture" and family is None:
        import tasksets
        members = []
        for task, cfg in mixture_tasks(config):
            normalizer = config.normalizer
            if normalizer == "taskset":
                stats = tasksets.lookup_stats(cfg)
                normalizer = _TasksetNormalizer(float(stats["loss_init"]), float(stats["loss_best"]))
            family = FixedTaskFamily(task)
            if config.reparam != "none":
                from tasks.augment import ReparamFamily
                lo, hi = config.reparam_range
                family = ReparamFamily(family, mode=config.reparam, min_scale=lo, max_scale=hi)
            problem = InnerProblem(family, lopt, schedule, meta_loss=config.meta_loss,
                                   normalizer=normalizer, clip=config.meta_loss_clip,
                                   meta_weighting=config.meta_weighting)
            members.append(GradientEstimator(config.estimator, problem, **common))
        return MixtureEstimator(tuple(members), task_grad_clip=config.task_grad_clip,
                                task_grad_equalize=config.task_grad_equalize)
    family = build_family(config) if family is None else family
    problem = InnerProblem(family, lopt, schedule, meta_loss=config.meta_loss,
                           normalizer=config.normalizer, clip=config.meta_loss_clip,
                           meta_weighting=config.meta_weighting)
    return GradientEstimator(config.estimator, problem, **common)


class _TasksetNormalizer:
    """``tasksets.normalize_with(loss, loss_init, loss_best)`` with one task's stored statistics."""

    def __init__(self, loss_init: float, loss_best: float):
        self.loss_init, self.loss_best = loss_init, loss_best

    def __call__(self, loss):
        import tasksets
        return tasksets.normalize_with(loss, self.loss_init, self.loss_best)
