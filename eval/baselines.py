"""The hand-designed comparators.

* **Tuned Adam**: ``optax.adam`` swept over 9 log-spaced learning rates (1e-4 … 1, half-decade
  steps); per task the rate with the lowest seed-averaged final loss is reported. Its whole sweep
  is also the envelope the speed-up metric measures against.
* **SGD with momentum** (0.9), the same rate grid.
* **Classical methods with no tuning** through ``learned_opt.minimize``: L-BFGS-B on every task
  (on minibatch tasks it minimizes the whole training split, its exact objective), and CG, BFGS
  (dense inverse-Hessian approximation, so only up to ``BFGS_MAX_PARAMS`` parameters) and
  trust-ncg (Hessian-vector products by autodiff) on full-batch tasks.

Default settings throughout: the only option set is the gradient-evaluation budget.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import optax

from eval.methods import FirstOrderMethod, ScipyMethod

#: 9 learning rates, half-decade steps: 1e-4, 3.2e-4, 1e-3, …, 0.32, 1.
DEFAULT_LEARNING_RATES: tuple[float, ...] = tuple(float(f"{v:.6g}") for v in np.logspace(-4, 0, 9))
BFGS_MAX_PARAMS = 2000


def _grid(rates: Sequence[float]) -> tuple[dict, ...]:
    rates = [float(r) for r in rates]
    if len(rates) < 1 or any(not r > 0 for r in rates):
        raise ValueError(f"learning rates must be positive, got {rates}")
    return tuple({"learning_rate": r} for r in rates)


def adam_sweep(learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES, name: str = "adam") -> FirstOrderMethod:
    """Adam (b1=0.9, b2=0.999, eps=1e-8) with the learning rate tuned per task over the grid."""
    return FirstOrderMethod(
        name=name, make=lambda hp, n: optax.adam(hp["learning_rate"]), grid=_grid(learning_rates),
        description=f"Adam, learning rate tuned over {len(learning_rates)} log-spaced values")


def sgdm_sweep(learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES, momentum: float = 0.9,
               name: str = "sgdm") -> FirstOrderMethod:
    """SGD with heavy-ball momentum, learning rate tuned per task over the grid."""
    return FirstOrderMethod(
        name=name, make=lambda hp, n: optax.sgd(hp["learning_rate"], momentum=momentum),
        grid=_grid(learning_rates),
        description=f"SGD + momentum {momentum}, learning rate tuned over {len(learning_rates)} values")


def adam_fixed(learning_rate: float = 1e-3, name: str = "adam-1e-3") -> FirstOrderMethod:
    """Adam at one fixed learning rate (the library default)."""
    return FirstOrderMethod(name=name, make=lambda hp, n: optax.adam(hp["learning_rate"]),
                            grid=({"learning_rate": float(learning_rate)},),
                            description=f"Adam at learning rate {learning_rate:g}")


def scipy_baseline(method: str) -> ScipyMethod:
    """A classical method with default settings; CG/BFGS/trust-ncg only on full-batch tasks."""
    full_only = method != "L-BFGS-B"
    max_params = BFGS_MAX_PARAMS if method == "BFGS" else None
    return ScipyMethod(name=method, method=method, full_batch_only=full_only, max_params=max_params,
                       description=f"scipy {method} through learned_opt.minimize, default settings")


SWEEPS = {"adam": adam_sweep, "sgdm": sgdm_sweep, "sgd_momentum": sgdm_sweep}


def default_baselines() -> list:
    """Tuned Adam, tuned SGD+momentum, L-BFGS-B, CG, BFGS, trust-ncg."""
    return [adam_sweep(), sgdm_sweep(), scipy_baseline("L-BFGS-B"), scipy_baseline("CG"),
            scipy_baseline("BFGS"), scipy_baseline("trust-ncg")]
