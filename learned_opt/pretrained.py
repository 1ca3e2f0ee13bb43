"""Pretrained learned optimizers shipped inside the package.

Each pretrained optimizer is a self-describing checkpoint ``learned_opt/pretrained/<name>.lopt``
(written by :func:`learned_opt.save`: architecture config + θ + metadata) next to a data card
``<name>.md`` that records its training distribution, estimator, outer steps, wall time and
evaluation table.

``load_pretrained(name)`` returns a ready optax transform::

    opt = learned_opt.load_pretrained("mlp", num_steps=1000)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params, loss=loss)

``pretrained_path(name)`` gives the checkpoint file, so ``learned_opt.load(pretrained_path(name))``
returns ``(lopt, theta)`` for code that needs the meta-parameters themselves.
"""
from __future__ import annotations

from pathlib import Path

import optax

_DIR = Path(__file__).resolve().parent / "pretrained"
_SUFFIX = ".lopt"
#: Aliases: ``"default"`` names the best shipped optimizer under the evaluation protocol.
ALIASES = {"default": "scheduled_shape_swa"}


def pretrained_names() -> list[str]:
    """Names of the pretrained optimizers shipped with this installation (aliases included)."""
    shipped = sorted(p.name[: -len(_SUFFIX)] for p in _DIR.glob(f"*{_SUFFIX}"))
    return shipped + sorted(a for a, target in ALIASES.items() if target in shipped)


def pretrained_path(name: str) -> Path:
    """Path of the checkpoint file of pretrained optimizer ``name`` (an alias resolves to its
    target)."""
    if not isinstance(name, str):
        raise TypeError(f"pretrained optimizer name must be a str, got {type(name).__name__}")
    path = _DIR / f"{ALIASES.get(name, name)}{_SUFFIX}"
    if not path.is_file():
        raise ValueError(f"unknown pretrained optimizer {name!r}; available: {pretrained_names()}")
    return path


def load_pretrained(name: str = "default", num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
    """The pretrained optimizer ``name`` as an optax transform.

    Args:
      name: one of :func:`pretrained_names` (``"default"``, the best shipped optimizer, or e.g.
        ``"mlp"``, ``"hierarchical"``).
      num_steps: the training horizon, for optimizers with horizon-fraction features; ``None``
        uses only step-count features.
    """
    from learned_opt.checkpoint import load

    lopt, theta = load(pretrained_path(name))
    return lopt.opt_fn(theta, num_steps=num_steps)
