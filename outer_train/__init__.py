"""Outer training (meta-training) of learned optimizers.

* :mod:`outer_train.truncation` — truncation schedules (constant, log-uniform, curricula) and
  random initial offsets;
* :mod:`outer_train.unroll` — the vectorized truncated step (:class:`InnerProblem`);
* :mod:`outer_train.estimators` — ES, PES, truncated backprop, smoothed RP, full-horizon ES and
  backprop, and the ES/RP hybrid, all ``(theta, state, key) -> (meta_grad, state, metrics)``;
* :mod:`outer_train.trainer` — :func:`train` (outer Adam, NaN guards, logs, atomic checkpoints,
  exact resume); :mod:`outer_train.config` — :class:`TrainConfig` and :func:`presets`;
* :mod:`outer_train.distributed` — the task axis sharded over devices and processes
  (:class:`TaskLayout`, :func:`make_layout`; ``jax.sharding`` + ``jax.distributed``);
* :mod:`outer_train.cli` — ``learned-opt train``.

Meta-loss: per inner step the training loss divided by the same trajectory's initial training loss
(``L(w_t)/L(w_0)``, so every task starts at 1; clipped to [-2, 2], NaN/inf -> 2), or for TaskSet
mixtures ``tasksets.normalize_with`` with the task's stored statistics; optionally measured on an
``outer_valid`` batch after the update. Each trajectory of T updates contributes T θ-dependent
measurements; the loss of the fresh parameters (the step after a reset) is masked.
"""
from __future__ import annotations

from outer_train.build import build_estimator, build_family, build_lopt
from outer_train.config import TrainConfig, apply_overrides, load_config, preset, presets
from outer_train.distributed import TaskLayout, make_layout
from outer_train.estimators import (
    ESTIMATORS,
    EstimatorState,
    GradientEstimator,
    MixtureEstimator,
    es,
    full_es,
    full_grad,
    hybrid,
    make_estimator,
    pes,
    smoothed_rp,
    tbptt,
)
from outer_train.trainer import TrainResult, TrainState, train
from outer_train.truncation import ConstantSchedule, LogUniformSchedule, initial_offsets, make_schedule
from outer_train.unroll import InnerProblem, StepOutput, TaskState
from tasks.base import FixedTaskFamily

__all__ = [
    "ConstantSchedule", "ESTIMATORS", "EstimatorState", "FixedTaskFamily", "GradientEstimator",
    "InnerProblem", "LogUniformSchedule", "MixtureEstimator", "StepOutput", "TaskLayout", "TaskState",
    "TrainConfig", "TrainResult", "TrainState", "apply_overrides", "build_estimator", "build_family",
    "build_lopt", "es", "full_es", "full_grad",
    "hybrid", "initial_offsets", "load_config", "make_estimator", "make_layout", "make_schedule", "pes", "preset",
    "presets", "smoothed_rp", "tbptt", "train",
]
