"""Deprecated location of the dict API: :mod:`learned_opt.minimize` (kept so that existing imports
``from learned_opt.dict_api import minimize, OptimizeResult`` keep working)."""
from __future__ import annotations

from learned_opt.minimize import (
                                  GLOBAL_METHODS,
                                  METHODS,
                                  SCIPY_METHODS,
                                  STATUS_CALLBACK,
                                  STATUS_NONFINITE,
                                  MethodInfo,
                                  OptimizeResult,
                                  Problem,
                                  minimize,
)

__all__ = ["minimize", "OptimizeResult", "SCIPY_METHODS", "GLOBAL_METHODS", "METHODS", "MethodInfo", "Problem",
           "STATUS_CALLBACK", "STATUS_NONFINITE"]
