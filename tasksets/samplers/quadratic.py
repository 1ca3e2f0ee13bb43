"""``quadratic_family``: random quadratics ``1/2 x^T A x - b^T x + c`` (minimum 0).

Sampled (defaults of the space):

* ``dim``: log-uniform integer in ``[2, 64]``;
* ``condition_number``: log-uniform in ``[1, 1e3]``; ``scale`` (smallest eigenvalue):
  log-uniform in ``[0.01, 10]``; ``spectrum``: ``"logspace"`` or ``"random"``;
* ``noise_std``: 0 with probability 1/2, else log-uniform in ``[0.01, 1]`` (gradient noise);
* ``init_scale``: log-uniform in ``[0.3, 3]``; ``problem_seed``: the seed of ``Q`` and ``b``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tasksets import sampling as S
from tasksets.spec import FamilySpec

KEYS = ("dim", "condition_number", "scale", "spectrum", "noise_std", "init_scale", "problem_seed")

DEFAULT_SPACE = {
    "dim": [2, 64],
    "condition_number": [1.0, 1e3],
    "scale": [0.01, 10.0],
    "noise_prob": 0.5,
    "noise_std": [0.01, 1.0],
    "init_scale": [0.3, 3.0],
}


def sample(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    cfg = {}
    cfg["dim"] = S.log_int(rng, *space["dim"])
    cfg["condition_number"] = S.log_uniform(rng, *space["condition_number"])
    cfg["scale"] = S.log_uniform(rng, *space["scale"])
    cfg["spectrum"] = S.choice(rng, ["logspace", "random"])
    noisy = S.bernoulli(rng, space["noise_prob"])
    noise = S.log_uniform(rng, *space["noise_std"])
    cfg["noise_std"] = noise if noisy else 0.0
    cfg["init_scale"] = S.log_uniform(rng, *space["init_scale"])
    cfg["problem_seed"] = S.uniform_int(rng, 0, 2**31 - 1)
    return cfg


def build(cfg: dict):
    from tasks.quadratic import QuadraticTask

    return QuadraticTask(dim=cfg["dim"], condition_number=cfg["condition_number"],
                         scale=cfg["scale"], noise_std=cfg["noise_std"],
                         init_scale=cfg["init_scale"], spectrum=cfg["spectrum"],
                         seed=cfg["problem_seed"])


QUADRATIC_FAMILY = FamilySpec(
    name="quadratic_family", sample=sample, build=build, keys=KEYS, shape_keys=("dim",),
    default_space=DEFAULT_SPACE,
    description="random quadratics: dim, conditioning, scale, spectrum, gradient noise")
