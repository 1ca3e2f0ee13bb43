"""Learned optimizers by name.

===============  ==========================================  ====================================
name             class                                        module
===============  ==========================================  ====================================
``mlp``          :class:`~learned_opt.mlp_lopt.MLPLOpt`        per-parameter MLP (Metz et al. 2019)
``factored_mlp`` :class:`~learned_opt.factored_lopt.FactoredMLPLOpt`  small Adafactor-feature MLP
``hierarchical`` :class:`~learned_opt.hierarchical_lopt.HierarchicalLOpt`  per-tensor RNN + MLP
``scheduled_adam`` :class:`~learned_opt.scheduled_adam.ScheduledAdamLOpt`  Adam + learned per-tensor
                 step-size schedule + per-parameter correction (equals Adam at its initial θ)
``sgd``          :class:`~learned_opt.learnable_hand.LearnableSGD`
``momentum``     :class:`~learned_opt.learnable_hand.LearnableMomentum`
``adam``         :class:`~learned_opt.learnable_hand.LearnableAdam`
===============  ==========================================  ====================================

Modules are imported only when their optimizer is requested.
"""
from __future__ import annotations

import importlib

from learned_opt.base import LearnedOptimizer

# registry name -> (module, class name)
_OPTIMIZERS = {
    "mlp": ("learned_opt.mlp_lopt", "MLPLOpt"),
    "factored_mlp": ("learned_opt.factored_lopt", "FactoredMLPLOpt"),
    "hierarchical": ("learned_opt.hierarchical_lopt", "HierarchicalLOpt"),
    "scheduled_adam": ("learned_opt.scheduled_adam", "ScheduledAdamLOpt"),
    "sgd": ("learned_opt.learnable_hand", "LearnableSGD"),
    "momentum": ("learned_opt.learnable_hand", "LearnableMomentum"),
    "adam": ("learned_opt.learnable_hand", "LearnableAdam"),
}


def optimizer_names() -> list[str]:
    """Names accepted by :func:`get_optimizer`."""
    return list(_OPTIMIZERS)


def optimizer_class(name: str) -> type:
    """The class registered under ``name`` (a registry name or a class name such as ``"MLPLOpt"``)."""
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a str, got {type(name).__name__}")
    entry = _OPTIMIZERS.get(name)
    if entry is None:
        entry = next((e for e in _OPTIMIZERS.values() if e[1] == name), None)
    if entry is None:
        raise ValueError(f"unknown learned optimizer {name!r}; known: {optimizer_names()}")
    module, cls_name = entry
    return getattr(importlib.import_module(module), cls_name)


def class_names() -> list[str]:
    """Class names of the registered optimizers (as stored in checkpoints)."""
    return [cls for _, cls in _OPTIMIZERS.values()]


def get_optimizer(name: str, **kwargs) -> LearnedOptimizer:
    """Construct the learned optimizer registered under ``name`` with constructor ``kwargs``."""
    cls = optimizer_class(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f"bad arguments for learned optimizer {name!r}: {e}") from e
