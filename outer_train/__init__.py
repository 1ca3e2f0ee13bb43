"""Outer training (meta-training) of learned optimizers.

* :mod:`outer_train.truncation` — truncation schedules (constant, log-uniform, curricula) and
  random initial offsets;
* :mod:`outer_train.unroll` — the vectorized truncated step (:class:`InnerProblem`);
* :mod:`outer_train.estimators` — ES, PES, truncated backprop, smoothed RP, full-horizon ES and
  backprop, and the ES/RP hybrid, all ``(theta, state, key) -> (meta_grad, state, metrics)``;
* :mod:`outer_train.trainer` — :func:`train` (outer Adam, NaN guards, logs, atomic checkpoints,
  exact resume); :mod:`outer_train.config` — :class:`TrainConfig` and :func:`presets`;
* :mod:`outer_train.cli` — ``learned-opt train``.
"""
from __future__ import annotations

from outer_train.config import TrainConfig, apply_overrides, load_config, preset, presets
from outer_train.estimators import (ESTIMATORS, EstimatorState, GradientEstimator, MixtureEstimator,
                                    es, full_es, full_grad, hybrid, make_estimator, pes, smoothed_rp,
                                    tbptt)
from outer_train.trainer import TrainResult, TrainState, train
from outer_train.truncation import ConstantSchedule, LogUniformSchedule, initial_offsets, make_schedule
from outer_train.unroll import FixedTaskFamily, InnerProblem, StepOutput, TaskState

__all__ = [
    "ConstantSchedule", "ESTIMATORS", "EstimatorState", "FixedTaskFamily", "GradientEstimator",
    "InnerProblem", "LogUniformSchedule", "MixtureEstimator", "StepOutput", "TaskState",
    "TrainConfig", "TrainResult", "TrainState", "apply_overrides", "es", "full_es", "full_grad",
    "hybrid", "initial_offsets", "load_config", "make_estimator", "make_schedule", "pes", "preset",
    "presets", "smoothed_rp", "tbptt", "train",
]
