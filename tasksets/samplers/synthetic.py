"""``synthetic_family``: classic test problems with optional wrappers.

cfg = ``{"problem": name, "problem_args": {...}, "wrappers": [{"name": ..., ...}, ...]}``.

Problems (uniform choice; ranges of the default space):

* ``bowl``: rotated 2-D bowl, condition number log-uniform [1, 1e3], angle uniform [0, pi),
  init scale log-uniform [0.3, 3];
* ``rosenbrock``: d-dimensional Rosenbrock, d uniform in [2, 10];
* ``sparse_softmax_regression``: features log-uniform [16, 128], classes [2, 10], examples
  log-uniform [32, 256], density log-uniform [0.02, 0.3];
* ``norm``: ``1/m sum |Ax - b|^p``, d log-uniform [4, 64], m = d * {1, 2, 4}, p uniform [1, 3];
* ``function_2d``: one of the 2-D test functions of ``tasks.functions2d`` from its default start
  plus Gaussian noise of standard deviation log-uniform [0.05, 1].

Wrappers, applied innermost first, each independently: ``rescale`` (p = 0.3; parameters scaled by
a log-uniform factor in [0.01, 100]), ``log_objective`` (p = 0.2; ``log(f - f_min + 1e-3)``,
only for problems with a known lower bound ``f_min``), ``sparse_gradient`` (p = 0.2; each
gradient entry kept with probability uniform [0.1, 0.9]).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from tasksets import sampling as S
from tasksets.spec import FamilySpec

KEYS = ("problem", "problem_args", "wrappers")
PROBLEMS = ("bowl", "rosenbrock", "sparse_softmax_regression", "norm", "function_2d")
FUNCTIONS = ("rosenbrock", "beale", "booth", "ackley", "himmelblau", "styblinski_tang",
             "rastrigin", "matyas", "three_hump_camel", "flower")
LOG_EPS = 1e-3

DEFAULT_SPACE = {
    "problems": list(PROBLEMS),
    "functions": list(FUNCTIONS),
    "rescale_prob": 0.3,
    "rescale": [0.01, 100.0],
    "log_prob": 0.2,
    "sparse_grad_prob": 0.2,
    "keep_prob": [0.1, 0.9],
}


def _sample_problem(rng: np.random.Generator, name: str, space: Mapping[str, Any]) -> dict:
    if name == "bowl":
        return {"condition_number": S.log_uniform(rng, 1.0, 1e3),
                "angle": S.round_sig(rng.uniform(0.0, math.pi)),
                "init_scale": S.log_uniform(rng, 0.3, 3.0)}
    if name == "rosenbrock":
        return {"dim": S.uniform_int(rng, 2, 10)}
    if name == "sparse_softmax_regression":
        return {"num_features": S.log_int(rng, 16, 128), "num_classes": S.uniform_int(rng, 2, 10),
                "num_examples": S.log_int(rng, 32, 256), "density": S.log_uniform(rng, 0.02, 0.3),
                "seed": S.uniform_int(rng, 0, 2**31 - 1)}
    if name == "norm":
        dim = S.log_int(rng, 4, 64)
        return {"dim": dim, "num_rows": dim * int(S.choice(rng, [1, 2, 4])),
                "power": S.round_sig(rng.uniform(1.0, 3.0), 3),
                "seed": S.uniform_int(rng, 0, 2**31 - 1)}
    if name == "function_2d":
        return {"function": S.choice(rng, list(space["functions"])),
                "init_noise": S.log_uniform(rng, 0.05, 1.0)}
    raise ValueError(f"unknown synthetic problem {name!r}; expected one of {list(PROBLEMS)}")


def sample(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    problem = S.choice(rng, list(space["problems"]))
    args = _sample_problem(rng, problem, space)
    wrappers = []
    rescale, scale = S.bernoulli(rng, space["rescale_prob"]), S.log_uniform(rng, *space["rescale"])
    if rescale:
        wrappers.append({"name": "rescale", "scale": scale})
    use_log = S.bernoulli(rng, space["log_prob"])
    if use_log:
        wrappers.append({"name": "log_objective", "eps": LOG_EPS})
    sparse = S.bernoulli(rng, space["sparse_grad_prob"])
    keep = S.round_sig(rng.uniform(*space["keep_prob"]), 3)
    if sparse:
        wrappers.append({"name": "sparse_gradient", "keep_prob": keep})
    return {"problem": problem, "problem_args": args, "wrappers": wrappers}


def _build_problem(name: str, args: dict):
    from tasks import synthetic
    from tasks.functions2d import Function2DTask

    if not isinstance(args, dict):
        raise TypeError(f"problem_args must be a dict, got {type(args).__name__}")
    if name == "bowl":
        return synthetic.BowlTask(**args)
    if name == "rosenbrock":
        return synthetic.RosenbrockNDTask(**args)
    if name == "sparse_softmax_regression":
        return synthetic.SparseSoftmaxRegressionTask(**args)
    if name == "norm":
        return synthetic.NormTask(**args)
    if name == "function_2d":
        return Function2DTask(**args)
    raise ValueError(f"unknown synthetic problem {name!r}; expected one of {list(PROBLEMS)}")


def _lower_bound(name: str, task) -> float:
    """A value the problem's loss never goes below (its minimum, or 0 for nonnegative losses)."""
    if name == "function_2d":
        return float(task.min_value)
    return 0.0  # bowl, rosenbrock, cross-entropy and norms are nonnegative


def build(cfg: dict):
    from tasks import synthetic

    task = _build_problem(cfg["problem"], cfg["problem_args"])
    lower = _lower_bound(cfg["problem"], task)
    if not isinstance(cfg["wrappers"], list):
        raise TypeError(f"wrappers must be a list, got {type(cfg['wrappers']).__name__}")
    for i, w in enumerate(cfg["wrappers"]):
        if not isinstance(w, dict) or "name" not in w:
            raise ValueError(f"wrappers[{i}] must be a dict with a 'name'")
        args = {k: v for k, v in w.items() if k != "name"}
        if w["name"] == "rescale":
            task = synthetic.RescaleTask(task, **args)
        elif w["name"] == "log_objective":
            task = synthetic.LogObjectiveTask(task, offset=lower, **args)
        elif w["name"] == "sparse_gradient":
            task = synthetic.SparseGradientTask(task, **args)
        else:
            raise ValueError(f"unknown wrapper {w['name']!r} in wrappers[{i}]; expected "
                             "rescale, log_objective or sparse_gradient")
    return task


def shape_part(cfg: dict) -> Any:
    """Parameter shapes depend on the problem and its size arguments only."""
    args = cfg["problem_args"]
    size_keys = {"rosenbrock": ("dim",), "norm": ("dim",),
                 "sparse_softmax_regression": ("num_features", "num_classes")}
    return [cfg["problem"], {k: args.get(k) for k in size_keys.get(cfg["problem"], ())}]


SYNTHETIC_FAMILY = FamilySpec(
    name="synthetic_family", sample=sample, build=build, keys=KEYS, shape_keys=(),
    default_space=DEFAULT_SPACE, shape_fn=shape_part,
    description="classic synthetic problems (bowl, Rosenbrock, sparse softmax regression, norm, "
                "2-D test functions) with rescale / log-objective / sparse-gradient wrappers")
