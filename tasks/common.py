"""Small helpers shared by the task modules: configs, dtypes, plain-dict params, validation.

* :class:`ConfiguredTask` -- a :class:`~tasks.base.Task` that remembers the JSON-friendly keyword
  arguments it was built from (``task.config()``), so ``type(task)(**task.config())`` rebuilds it.
* :func:`default_float` -- the float dtype JAX uses right now (float32, or float64 inside
  ``jax.enable_x64(True)``); tasks create their parameters in it.
* :func:`plain_dict` -- flax variables -> nested ``dict`` of ``jnp`` arrays.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Datasets, Task


def default_float() -> jnp.dtype:
    """The canonical float dtype: float64 when x64 is enabled, else float32."""
    return jnp.zeros((), dtype=float).dtype


def plain_dict(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Convert a (possibly frozen) nested mapping of arrays into nested plain ``dict``s.

    Leaves become ``jnp`` arrays; floating leaves are cast to ``dtype`` (default: the canonical
    float dtype) so that parameters follow ``jax.enable_x64``.
    """
    dtype = default_float() if dtype is None else dtype

    def convert(node):
        if isinstance(node, Mapping):
            return {str(k): convert(v) for k, v in node.items()}
        arr = jnp.asarray(node)
        if jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(dtype)
        return arr

    return convert(tree)


def params_dtype(params: Any) -> jnp.dtype:
    """The float dtype of the first floating leaf of ``params`` (default float if none)."""
    for leaf in jax.tree_util.tree_leaves(params):
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
            return jnp.asarray(leaf).dtype
    return default_float()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


class ConfiguredTask(Task):
    """A task whose constructor keyword arguments are JSON-friendly and recorded.

    Subclasses call ``self._set_config(name=..., **kwargs)`` in ``__init__``; ``config()`` returns
    a fresh copy (tuples become lists) so that ``type(task)(**task.config())`` rebuilds the task.
    """

    _config: dict

    def _set_config(self, **kwargs: Any) -> None:
        self._config = {k: _jsonable(v) for k, v in kwargs.items()}

    def config(self) -> dict:
        """The constructor keyword arguments of this task (JSON-serializable)."""
        return {k: _jsonable(v) for k, v in getattr(self, "_config", {}).items()}


# --- validation helpers --------------------------------------------------------------------------

def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_int_list(name: str, values: Any, allow_empty: bool = True) -> tuple[int, ...]:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list of ints, got {type(values).__name__}")
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return tuple(check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(values))


def check_float(name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} ({value!r})")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value


def check_datasets(datasets: Any, keys: Sequence[str]) -> Datasets:
    """Check that ``datasets`` has the four splits and that the train split holds ``keys``."""
    for split in ("train", "inner_valid", "outer_valid", "test"):
        if not hasattr(datasets, split):
            raise TypeError(f"datasets object {type(datasets).__name__} has no {split!r} split")
    arrays = getattr(datasets.train, "arrays", None)
    if arrays is None:
        raise TypeError("datasets.train must be a tasks.Split (with .arrays)")
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"datasets.train lacks keys {missing}; has {sorted(arrays)}")
    return datasets


def num_classes_of(datasets: Datasets) -> int:
    """Number of classes: ``datasets.num_classes`` if present, else 1 + max label over splits."""
    n = getattr(datasets, "num_classes", None)
    if n is not None:
        return int(n)
    top = 0
    for split in ("train", "inner_valid", "outer_valid", "test"):
        labels = getattr(datasets, split).arrays.get("label")
        if labels is not None and len(labels):
            top = max(top, int(np.max(labels)))
    return top + 1


def full_batch_size() -> int:
    """Batch size requested from loaders for full-batch tasks (splits cap it at their size)."""
    return 1 << 30


def load_images(dataset: str, *, image_size: Optional[int], batch_size: int, seed: int,
                data_dir: Optional[str], flatten: bool = False, center: bool = True) -> Datasets:
    """``tasks.datasets.load_image_dataset`` (imported lazily: it pulls in the data layer)."""
    from tasks.datasets import load_image_dataset
    return load_image_dataset(dataset, image_size=image_size, batch_size=batch_size, seed=seed,
                              data_dir=data_dir, flatten=flatten, center=center)


def load_text(dataset: str, *, seq_len: int, batch_size: int, seed: int,
              data_dir: Optional[str] = None) -> Datasets:
    """``tasks.datasets.load_text_dataset`` (imported lazily)."""
    from tasks.datasets import load_text_dataset
    return load_text_dataset(dataset, seq_len=seq_len, batch_size=batch_size, seed=seed,
                             data_dir=data_dir)
