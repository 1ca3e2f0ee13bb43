"""tasks: inner optimization problems over pytree dicts, their datasets and task families.

The interface (``Task``, ``TaskFamily``, ``Split``, ``Datasets``) is imported eagerly; every other
public name resolves lazily to the module that defines it, so ``import tasks`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

from tasks.base import Batch, Datasets, FixedTaskFamily, Params, Split, Task, TaskFamily

# public name -> defining module (relative to this package)
_LAZY = {
    # shared building blocks
    "ACTIVATIONS": "nn",
    "ACTIVATION_NAMES": "nn",
    "INITIALIZERS": "nn",
    "INITIALIZER_NAMES": "nn",
    "activation_switch": "nn",
    "initializer_switch": "nn",
    "ConfiguredTask": "common",
    # fixed tasks
    "QuadraticTask": "quadratic",
    "SampledQuadraticTask": "quadratic",
    "Function2DTask": "functions2d",
    "FUNCTIONS_2D": "functions2d",
    "function_names": "functions2d",
    "LeastSquaresTask": "regression",
    "LogisticRegressionTask": "regression",
    "ClassifierTask": "image_mlp",
    "ImageMLPTask": "image_mlp",
    "ConvTask": "conv",
    "MLPAutoencoderTask": "autoencoder",
    "MLPVAETask": "autoencoder",
    "CharRNNTask": "char_rnn",
    # synthetic problems and wrappers
    "BowlTask": "synthetic",
    "RosenbrockNDTask": "synthetic",
    "SparseSoftmaxRegressionTask": "synthetic",
    "NormTask": "synthetic",
    "SparseGradientTask": "synthetic",
    "RescaleTask": "synthetic",
    "LogObjectiveTask": "synthetic",
    # augmentation
    "ReparamTask": "augment",
    "ReparamFamily": "augment",
    # families
    "QuadraticFamily": "families",
    "ImageMLPFamily": "families",
    "ConvFamily": "families",
    # data layer (tasks/datasets/)
    "load_image_dataset": "datasets",
    "load_text_dataset": "datasets",
    # registry of fixed tasks by name
    "get_task": "registry",
    "task_names": "registry",
}

__all__ = ["Batch", "Datasets", "Params", "Split", "Task", "TaskFamily", "FixedTaskFamily"] + sorted(_LAZY)  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tasks.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
