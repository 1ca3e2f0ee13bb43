"""The hand-designed comparators of the protocol (:mod:`eval.protocol`).

* ``adam``: Adam (b1 0.9, b2 0.999, eps 1e-8) at a constant learning rate, tuned per task over
  the project grid :data:`learned_opt.inner_loop.LEARNING_RATE_GRID` -- the headline comparator;
* ``adam_cosine``: the same with cosine decay to 0 over the horizon, tuned the same way -- the
  stronger comparator a learned optimizer that only wins by decaying its step must face;
* ``sgdm``: SGD with heavy-ball momentum 0.9, tuned the same way;
* ``L-BFGS-B`` on tasks with an exact objective, through ``learned_opt.minimize``, default
  settings (the only option set is the gradient-evaluation budget).

The three first-order baselines are one family (:func:`learned_opt.inner_loop.hand_designed`
with traced choices), so their whole sweep runs as one compiled program per task.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from eval.methods import FirstOrderMethod, ScipyMethod
from learned_opt.inner_loop import LEARNING_RATE_GRID, hand_designed

DEFAULT_LEARNING_RATES = LEARNING_RATE_GRID
BFGS_MAX_PARAMS = 2000
HAND_FAMILY = "hand_designed"
_KINDS = {"adam": (1.0, 0.0), "adam_cosine": (1.0, 1.0), "sgdm": (0.0, 0.0), "sgdm_cosine": (0.0, 1.0)}
_DESCRIPTIONS = {"adam": "Adam, constant learning rate", "adam_cosine": "Adam, cosine decay to 0",
                 "sgdm": "SGD + momentum 0.9, constant learning rate",
                 "sgdm_cosine": "SGD + momentum 0.9, cosine decay to 0"}


def _make(hp: Mapping[str, float], num_steps: int):
    return hand_designed(hp["learning_rate"], hp["adam"], hp["cosine"], num_steps)


def _grid(kind: str, rates: Sequence[float]) -> tuple[dict, ...]:
    rates = [float(r) for r in rates]
    if not rates or any(not r > 0 for r in rates):
        raise ValueError(f"learning rates must be positive, got {rates}")
    adam, cosine = _KINDS[kind]
    return tuple({"learning_rate": r, "adam": adam, "cosine": cosine} for r in rates)


def hand_sweep(kind: str, learning_rates: Sequence[float] = LEARNING_RATE_GRID,
               name: str | None = None) -> FirstOrderMethod:
    """Baseline ``kind`` (adam, adam_cosine, sgdm, sgdm_cosine) tuned over ``learning_rates``."""
    if kind not in _KINDS:
        raise ValueError(f"unknown hand-designed baseline {kind!r}; choose from {list(_KINDS)}")
    return FirstOrderMethod(name=name or kind, make=_make, grid=_grid(kind, learning_rates),
                            kind="baseline", family=HAND_FAMILY,
                            description=f"{_DESCRIPTIONS[kind]}, tuned over {len(learning_rates)} rates")


def adam_sweep(learning_rates: Sequence[float] = LEARNING_RATE_GRID, name: str = "adam") -> FirstOrderMethod:
    return hand_sweep("adam", learning_rates, name)


def adam_cosine_sweep(learning_rates: Sequence[float] = LEARNING_RATE_GRID,
                      name: str = "adam_cosine") -> FirstOrderMethod:
    return hand_sweep("adam_cosine", learning_rates, name)


def sgdm_sweep(learning_rates: Sequence[float] = LEARNING_RATE_GRID, name: str = "sgdm") -> FirstOrderMethod:
    return hand_sweep("sgdm", learning_rates, name)


def adam_fixed(learning_rate: float = 1e-3, name: str | None = None) -> FirstOrderMethod:
    """Adam at one fixed learning rate (no tuning)."""
    if not learning_rate > 0:
        raise ValueError(f"learning rate must be > 0, got {learning_rate!r}")
    return FirstOrderMethod(name=name or f"adam@{learning_rate:g}", make=_make,
                            grid=_grid("adam", [learning_rate]), kind="optax", family=HAND_FAMILY,
                            description=f"Adam at learning rate {learning_rate:g}")


def scipy_baseline(method: str) -> ScipyMethod:
    """A classical method with default settings, on exact-objective tasks."""
    return ScipyMethod(name=method, method=method, full_batch_only=True,
                       max_params=BFGS_MAX_PARAMS if method == "BFGS" else None,
                       description=f"scipy {method} through learned_opt.minimize, default settings")


SWEEPS = {"adam": adam_sweep, "adam_cosine": adam_cosine_sweep, "sgdm": sgdm_sweep,
          "sgd_momentum": sgdm_sweep, "sgdm_cosine": lambda: hand_sweep("sgdm_cosine")}


def protocol_baselines(names: Sequence[str], learning_rates: Sequence[float] = LEARNING_RATE_GRID) -> list:
    """The baselines a protocol names, in order."""
    out = []
    for n in names:
        if n in _KINDS:
            out.append(hand_sweep(n, learning_rates))
        else:
            out.append(scipy_baseline(n))
    return out
