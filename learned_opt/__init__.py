"""learned_opt: learned optimizers in JAX and scipy.optimize.minimize over dicts of arrays.

Public names are resolved lazily so that ``import learned_opt`` stays light; each maps to the
module that defines it (one concept per module).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> defining module (relative to this package)
_LAZY = {
    # the dict API
    "minimize": "minimize",
    "OptimizeResult": "minimize",
    # learned-optimizer interface and architectures
    "LearnedOptimizer": "base",
    "MLPLOpt": "mlp_lopt",
    "FactoredMLPLOpt": "factored_lopt",
    "HierarchicalLOpt": "hierarchical_lopt",
    "ScheduledAdamLOpt": "scheduled_adam",
    "LearnableSGD": "learnable_hand",
    "LearnableMomentum": "learnable_hand",
    "LearnableAdam": "learnable_hand",
    "get_optimizer": "registry",
    "optimizer_names": "registry",
    "num_meta_params": "base",
    # safety wrapper for any optax optimizer that gets the loss
    "backtrack_on_spike": "backtracking",
    # checkpoints
    "save": "checkpoint",
    "load": "checkpoint",
    "as_optax": "checkpoint",
    "load_pretrained": "pretrained",
    "pretrained_names": "pretrained",
    "pretrained_path": "pretrained",
}

__all__ = sorted(_LAZY) + ["__version__"]  # pyright: ignore[reportUnsupportedDunderAll]

if TYPE_CHECKING:  # what the lazy names are, for type checkers (``minimize`` is the function)
    from learned_opt.minimize import OptimizeResult, minimize  # noqa: F401


class _Package(types.ModuleType):
    """``learned_opt.minimize`` is the function, although a subpackage of the same name exists:
    importing ``learned_opt.minimize.<anything>`` makes Python set this attribute to the
    subpackage, which is replaced here by the function it exports."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "minimize" and isinstance(value, types.ModuleType):
            value = value.minimize
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


# optional submodules reachable as attributes (imported on first access; not in __all__, so
# ``from learned_opt import *`` never imports torch)
_SUBMODULES = ("torch",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"learned_opt.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'learned_opt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"learned_opt.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
