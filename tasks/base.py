"""The inner-problem interface: ``Task`` and ``TaskFamily``.

A ``Task`` is an inner optimization problem over a pytree dict of parameters:

* ``init(key) -> params``: a dict of arrays (nested dicts allowed);
* ``loss(params, key, batch) -> scalar``: pure and jittable; ``batch`` is whatever the task's
  datasets yield (``None`` for data-free tasks);
* ``datasets``: ``None`` for data-free tasks, else a :class:`Datasets` with ``train``,
  ``inner_valid``, ``outer_valid`` and ``test`` splits;
* ``name``: a human-readable identifier;
* ``eval_loss(params, batch) -> scalar``: the **evaluation objective** -- the loss with train-time
  noise off (dropout disabled, the exact expected loss of noisy synthetic problems, a fixed key
  for any remaining randomness), so that a score depends only on ``params`` and ``batch``.

Tasks with non-trainable state (batch-norm statistics, ...) override ``init_with_state`` /
``loss_with_state``; the defaults wrap the stateless pair with ``state = None``.

A ``TaskFamily`` is a distribution over tasks whose members share shapes: ``sample(key) -> cfg``
returns a pytree of arrays (vmappable, so N tasks can be drawn at once inside ``jit``) and
``task_fn(cfg) -> Task`` builds the member.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

Params = Any  # pytree (dict) of arrays
Batch = Any  # pytree (dict) of arrays, or None
ModelState = Any


EVAL_KEY_SEED = 2**31 - 1  # the fixed key of every evaluation loss


def eval_key() -> jax.Array:
    """The fixed PRNG key evaluation losses use for randomness that is part of the objective
    (e.g. a VAE's reparameterization sample)."""
    return jax.random.PRNGKey(EVAL_KEY_SEED)


class Task:
    """Base class for inner problems. Subclasses implement ``init`` and ``loss``."""

    name: str = "task"
    datasets: Optional[Datasets] = None
    #: set by tasksets.build_task on the tasks it builds (the cfg they came from)
    tasksets_cfg: dict

    def init(self, key: jax.Array) -> Params:
        raise NotImplementedError  # abstract

    def loss(self, params: Params, key: jax.Array, batch: Batch) -> jax.Array:
        raise NotImplementedError  # abstract

    def eval_loss(self, params: Params, batch: Batch) -> jax.Array:
        """The loss with train-time noise off; deterministic in ``(params, batch)``.

        Default: ``loss(params, EVAL_KEY, batch)`` with one fixed key. Tasks whose training loss
        is noisy by design override it: classifiers turn dropout off, noisy quadratics return
        their exact expected loss, wrappers delegate to the task they wrap.
        """
        return self.loss(params, eval_key(), batch)

    # --- stateful variants (override for tasks with model state) -----------------------------
    def init_with_state(self, key: jax.Array) -> tuple[Params, ModelState]:
        return self.init(key), None

    def loss_with_state(self, params: Params, state: ModelState, key: jax.Array,
                        batch: Batch) -> tuple[jax.Array, ModelState]:
        return self.loss(params, key, batch), state

    # --- full-batch access for classical (exact-gradient) methods -----------------------------
    @property
    def full_batch(self) -> bool:
        """True when ``datasets.train.full()`` is the whole training objective (or no data)."""
        return self.datasets is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class TaskFamily:
    """A distribution over shape-compatible tasks."""

    name: str = "task_family"

    def sample(self, key: jax.Array) -> Any:
        raise NotImplementedError  # abstract

    def task_fn(self, cfg: Any) -> Task:
        raise NotImplementedError  # abstract

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FixedTaskFamily:
    """A one-member "family" around a fixed :class:`~tasks.base.Task` (e.g. a TaskSet task).

    ``sample`` returns a dummy scalar so the vectorized machinery is unchanged; every sample is
    the same task (tasks still differ in their initial parameters and data).
    """

    def __init__(self, task: Any):
        self.task = task
        self.name = getattr(task, "name", "task")

    def sample(self, key: jax.Array) -> jax.Array:
        del key
        return jnp.zeros((), jnp.int32)

    def task_fn(self, cfg: Any) -> Any:
        del cfg
        return self.task

    def __repr__(self) -> str:
        return f"FixedTaskFamily({self.task!r})"


class Split:
    """One split of a dataset, held in memory as a dict of NumPy arrays with equal first axis.

    * iterating yields batches (dicts of NumPy arrays) in an order drawn from a seeded
      ``np.random.Generator`` (never the global NumPy RNG), reshuffling every epoch;
    * ``sample(key)`` draws one batch inside ``jit`` (indices from ``jax.random``), so batches
      for a whole ``lax.scan`` of vmapped tasks need no Python loop;
    * ``full()`` returns the whole split as one batch (exact full-batch objectives).
    """

    def __init__(self, arrays: dict, batch_size: int, seed: int = 0, name: str = "train"):
        if not arrays:
            raise ValueError(f"split {name!r}: no arrays")
        sizes = {k: np.shape(v)[0] for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"split {name!r}: arrays have different lengths {sizes}")
        self.num_examples = next(iter(sizes.values()))
        if not 1 <= batch_size:
            raise ValueError(f"split {name!r}: batch_size must be >= 1, got {batch_size}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.batch_size = int(min(batch_size, self.num_examples))
        self.seed = int(seed)
        self.name = name

    def __iter__(self) -> Iterator[dict]:
        rng = np.random.default_rng(self.seed)
        bs = self.batch_size
        while True:
            order = rng.permutation(self.num_examples)
            for start in range(0, self.num_examples - bs + 1, bs):
                idx = order[start:start + bs]
                yield {k: v[idx] for k, v in self.arrays.items()}

    def sample(self, key: jax.Array) -> dict:
        import jax.numpy as jnp
        idx = jax.random.randint(key, (self.batch_size,), 0, self.num_examples)
        return {k: jnp.asarray(v)[idx] for k, v in self.arrays.items()}

    def full(self) -> dict:
        return dict(self.arrays)

    def __len__(self) -> int:
        return self.num_examples

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.arrays.items()}
        return f"Split({self.name!r}, n={self.num_examples}, batch_size={self.batch_size}, {shapes})"


class Datasets:
    """The four splits of a task's data."""

    # set by the loaders (tasks.datasets.loader) for image / text data
    num_classes: int
    input_shape: tuple
    mean: Any
    std: Any
    vocab_size: int
    seq_len: int

    def __init__(self, train: Split, inner_valid: Split, outer_valid: Split, test: Split,
                 name: str = "dataset"):
        self.train = train
        self.inner_valid = inner_valid
        self.outer_valid = outer_valid
        self.test = test
        self.name = name

    def split(self, name: str) -> Split:
        if name not in ("train", "inner_valid", "outer_valid", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, inner_valid, outer_valid or test")
        return getattr(self, name)

    def __repr__(self) -> str:
        return f"Datasets({self.name!r}, train={self.train!r})"


