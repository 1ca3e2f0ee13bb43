"""Method specifications: what the runner can evaluate.

Two kinds, one door (``learned_opt.minimize`` for the classical ones; the same optax update rule
for the first-order ones):

* :class:`FirstOrderMethod` -- an optax transform (hand-designed or a learned optimizer at a
  given θ) built per task from a hyperparameter setting; a ``grid`` of settings is a sweep, and
  the runner keeps the setting with the lowest seed-averaged final loss (``tuned``).
* :class:`ScipyMethod` -- a ``scipy.optimize.minimize`` method name run through
  ``learned_opt.minimize`` on the exact training objective, with its default settings.

:func:`as_method` turns user-facing values (``"adam"``, ``"L-BFGS-B"``, an optax transform, a
``(lopt, theta)`` pair, a learned optimizer, a checkpoint path) into one of these.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import optax

from learned_opt.minimize import METHODS, SCIPY_METHODS

# scipy.optimize.minimize methods that use gradients (the ones worth a gradient-evaluation budget),
# read from learned_opt.minimize's method table
GRADIENT_SCIPY_METHODS = tuple(n for n in SCIPY_METHODS if METHODS[n.lower()].uses_gradient)


@dataclasses.dataclass(frozen=True)
class FirstOrderMethod:
    """An optax update rule, possibly with a hyperparameter sweep.

    ``make(hparams, num_steps) -> optax.GradientTransformation`` (ExtraArgs transforms get the
    current minibatch loss as ``loss=``); ``hparams`` is one entry of ``grid`` whose values are
    floats (they are traced, so a whole sweep is one compiled ``vmap``).
    """

    name: str
    make: Callable[[Mapping[str, Any], int], optax.GradientTransformation]
    grid: tuple[Mapping[str, float], ...] = ({},)
    kind: str = "optax"  # "optax" | "learned" | "baseline"
    description: str = ""
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    family: Optional[str] = None  # methods of one family (same make) share one compiled sweep

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"method name must be a non-empty string, got {self.name!r}")
        if not callable(self.make):
            raise TypeError(f"method {self.name!r}: make must be callable")
        grid = tuple(dict(g) for g in self.grid)
        if not grid:
            raise ValueError(f"method {self.name!r}: grid must hold at least one setting")
        keys = set(grid[0])
        for g in grid:
            if set(g) != keys:
                raise ValueError(f"method {self.name!r}: every grid entry needs the keys {sorted(keys)}, "
                                 f"got {sorted(g)}")
            for k, v in g.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise TypeError(f"method {self.name!r}: grid value {k}={v!r} must be a number")
        object.__setattr__(self, "grid", grid)

    @property
    def is_sweep(self) -> bool:
        return len(self.grid) > 1

    def summary(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "description": self.description,
               "grid": [dict(g) for g in self.grid]}
        if self.config:
            out["config"] = dict(self.config)
        return out


@dataclasses.dataclass(frozen=True)
class ScipyMethod:
    """A ``scipy.optimize.minimize`` method run through ``learned_opt.minimize``.

    ``full_batch_only``: run only on tasks whose training objective is exact (full batch or no
    data); ``max_params``: skip tasks with more parameters (dense quasi-Newton matrices).
    ``options`` are passed to the method on top of the gradient-evaluation budget.
    """

    name: str
    method: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    full_batch_only: bool = False
    max_params: Optional[int] = None
    description: str = ""

    def __post_init__(self):
        if self.method not in GRADIENT_SCIPY_METHODS:
            raise ValueError(f"scipy method {self.method!r} is not a gradient method the evaluator "
                             f"supports; choose one of {GRADIENT_SCIPY_METHODS}")
        object.__setattr__(self, "options", dict(self.options))

    @property
    def kind(self) -> str:
        return "scipy"

    @property
    def uses_hessp(self) -> bool:
        """The method uses second derivatives (the runner hands it the task's ``H·p``)."""
        return METHODS[self.method.lower()].hessian != "none"

    def applies_to(self, full_batch: bool, num_params: int) -> bool:
        if self.full_batch_only and not full_batch:
            return False
        return self.max_params is None or num_params <= self.max_params

    def summary(self) -> dict:
        return {"name": self.name, "kind": "scipy", "method": self.method,
                "options": dict(self.options), "full_batch_only": self.full_batch_only,
                "max_params": self.max_params, "description": self.description}


Method = Any  # FirstOrderMethod | ScipyMethod


def learned_method(lopt: Any, theta: Any, name: Optional[str] = None,
                   description: str = "") -> FirstOrderMethod:
    """A learned optimizer at meta-parameters ``theta`` (no sweep: it has no hyperparameters)."""
    if not hasattr(lopt, "opt_fn"):
        raise TypeError(f"expected a learned optimizer with opt_fn(theta, num_steps), got {type(lopt).__name__}")

    def make(hparams, num_steps):
        return lopt.opt_fn(theta, num_steps=num_steps)

    cfg = {}
    try:
        cfg = {"class": type(lopt).__name__, "config": dict(lopt.config())}
    except Exception:  # a third-party optimizer without config(): describe by class only
        cfg = {"class": type(lopt).__name__}
    return FirstOrderMethod(name=name or getattr(lopt, "name", type(lopt).__name__), make=make,
                            kind="learned", description=description or repr(lopt), config=cfg)


def optax_method(opt: optax.GradientTransformation, name: str = "optax") -> FirstOrderMethod:
    """A fixed optax transform (no sweep)."""
    if not isinstance(opt, optax.GradientTransformation):
        raise TypeError(f"expected an optax.GradientTransformation, got {type(opt).__name__}")
    return FirstOrderMethod(name=name, make=lambda hp, n: opt, description="fixed optax transform")


def untrained_learned(name: str, seed: int = 0) -> FirstOrderMethod:
    """A learned optimizer of architecture ``name`` at its initial θ (``init(PRNGKey(seed))``)."""
    import jax

    lopt = _learned_by_name(name)
    theta = lopt.init(jax.random.PRNGKey(seed))
    return learned_method(lopt, theta, name=f"{name}-untrained",
                          description=f"{type(lopt).__name__} at its initial θ (seed {seed})")


_ALIASES = {"factored": "factored_mlp", "learnable_adam": "adam", "learnable_sgd": "sgd",
            "learnable_momentum": "momentum"}


def _learned_by_name(name: str) -> Any:
    """A learned optimizer with default constructor arguments from ``learned_opt``'s registry."""
    import learned_opt

    try:
        return learned_opt.get_optimizer(_ALIASES.get(name, name))
    except (KeyError, ValueError) as e:
        raise ValueError(f"unknown learned optimizer {name!r}; known: {learned_opt.optimizer_names()}") from e


def from_checkpoint(path: str | os.PathLike, name: Optional[str] = None) -> FirstOrderMethod:
    """The learned optimizer stored at ``path`` (a checkpoint file or a run directory)."""
    import learned_opt

    if not os.path.exists(path):
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    lopt, theta = learned_opt.load(path)
    base = os.path.basename(os.path.normpath(str(path)))
    return learned_method(lopt, theta, name=name or f"learned:{base}",
                          description=f"{type(lopt).__name__} loaded from {base}")


def from_pretrained(pname: str) -> FirstOrderMethod:
    """A pretrained learned optimizer shipped with the package: per task,
    ``learned_opt.load_pretrained(pname, num_steps=<the task's horizon>)``."""
    import learned_opt

    if pname not in learned_opt.pretrained_names():
        raise ValueError(f"unknown pretrained optimizer {pname!r}; available: {learned_opt.pretrained_names()}")

    def make(hparams, num_steps):
        return learned_opt.load_pretrained(pname, num_steps=num_steps)

    return FirstOrderMethod(name=f"pretrained:{pname}", make=make, kind="learned",
                            description=f"pretrained optimizer {pname!r} (learned_opt.load_pretrained)",
                            config={"pretrained": pname})


def as_method(obj: Any) -> Method:
    """Coerce a user-facing method description into a method spec.

    * a :class:`FirstOrderMethod` / :class:`ScipyMethod`: itself;
    * ``"adam"`` / ``"sgdm"``: the tuned sweeps of :mod:`eval.baselines`;
    * a scipy gradient method name (``"L-BFGS-B"``, ``"CG"``, ``"BFGS"``, ``"trust-ncg"``, …);
    * ``"untrained:<arch>"``: a learned optimizer at its initial θ;
    * a path to a checkpoint file or run directory;
    * an optax ``GradientTransformation``; a ``(lopt, theta)`` pair; a learned optimizer (initial θ).
    """
    from eval import baselines

    if isinstance(obj, (FirstOrderMethod, ScipyMethod)):
        return obj
    if isinstance(obj, str):
        low = obj.lower()
        if low in baselines.SWEEPS:
            return baselines.SWEEPS[low]()
        if low.startswith("adam@") or low.startswith("adam-"):
            try:
                return baselines.adam_fixed(float(low.split("@" if "@" in low else "-", 1)[1]), name=obj)
            except ValueError:
                pass
        if low in METHODS and METHODS[low].name in GRADIENT_SCIPY_METHODS:
            return baselines.scipy_baseline(METHODS[low].name)
        if low.startswith("untrained:"):
            return untrained_learned(obj.split(":", 1)[1])
        if os.path.exists(obj):
            return from_checkpoint(obj)
        raise ValueError(f"unknown method {obj!r}: expected one of {sorted(baselines.SWEEPS)}, "
                         f"'adam@<lr>', a scipy gradient method {GRADIENT_SCIPY_METHODS}, "
                         "'untrained:<arch>' or a checkpoint path")
    if isinstance(obj, optax.GradientTransformation):
        return optax_method(obj)
    if isinstance(obj, tuple) and len(obj) == 2 and hasattr(obj[0], "opt_fn"):
        return learned_method(obj[0], obj[1])
    if hasattr(obj, "opt_fn") and hasattr(obj, "init"):
        import jax
        lopt: Any = obj
        return learned_method(lopt, lopt.init(jax.random.PRNGKey(0)),
                              name=f"{getattr(obj, 'name', type(obj).__name__)}-untrained")
    raise TypeError(f"cannot interpret {type(obj).__name__} as an evaluation method")


def as_methods(objs: Sequence[Any]) -> list[Method]:
    methods = [as_method(o) for o in objs]
    names = [m.name for m in methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate method names {dup}: give each method a distinct name")
    return methods
