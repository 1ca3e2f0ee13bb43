"""Image classifiers: the shared :class:`ClassifierTask` core and the MLP classifier task.

Loss (per batch ``{"image": [B, ...], "label": int [B]}``)::

    L(params) = mean_i -log softmax(net(params, image_i))[label_i]  +  l2/2 * sum ||W||^2

where the L2 term covers kernels only (not biases / layer-norm scales). Dropout draws its mask
from the loss key; with ``dropout_rate = 0`` the loss ignores the key.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from tasks.base import Datasets
from tasks.common import (
    ConfiguredTask,
    check_choice,
    check_datasets,
    check_float,
    check_int_list,
    check_positive_int,
    full_batch_size,
    load_images,
    num_classes_of,
    plain_dict,
)
from tasks.nn import (
    ACTIVATIONS,
    INITIALIZERS,
    MLP,
    accuracy,
    flatten_images,
    get_activation,
    get_initializer,
    softmax_cross_entropy,
)


def kernel_l2(params: Any) -> jax.Array:
    """``sum ||W||^2`` over every leaf named ``kernel`` or ``embedding``."""
    total = jnp.zeros(())
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in flat:
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        if name in ("kernel", "embedding"):
            total = total + jnp.sum(jnp.square(leaf))
    return total


class ClassifierTask(ConfiguredTask):
    """A flax classifier on an image dataset; subclasses set ``model`` and ``datasets``.

    ``preprocess(images) -> model input`` maps batch images to what ``model`` takes.
    """

    model: nn.Module
    l2: float = 0.0
    _full_batch: bool = False

    def preprocess(self, images: jax.Array) -> jax.Array:
        return images

    def _example_input(self) -> jax.Array:
        assert self.datasets is not None
        images = self.datasets.train.arrays["image"][:1]
        return self.preprocess(jnp.asarray(images, jnp.float32))

    @property
    def full_batch(self) -> bool:
        return self._full_batch

    def init(self, key: jax.Array) -> dict:
        variables = self.model.init({"params": key, "dropout": key}, self._example_input())
        return plain_dict(variables["params"])

    def logits(self, params: dict, batch: dict, key: Optional[jax.Array] = None) -> jax.Array:
        """Network outputs; dropout is active only when a ``key`` is given."""
        x = self.preprocess(jnp.asarray(batch["image"]))
        if key is None:
            return self.model.apply({"params": params}, x, train=False)  # pyright: ignore[reportReturnType]  (flax's apply: the output, no mutable collections asked)
        return self.model.apply({"params": params}, x, train=True, rngs={"dropout": key})  # pyright: ignore[reportReturnType]  (flax's apply: the output, no mutable collections asked)

    def loss(self, params: dict, key: jax.Array, batch: dict) -> jax.Array:
        value = softmax_cross_entropy(self.logits(params, batch, key), batch["label"])
        if self.l2 > 0:
            value = value + 0.5 * self.l2 * kernel_l2(params)
        return value

    def eval_loss(self, params: dict, batch: dict) -> jax.Array:
        """Cross-entropy (plus the L2 term) with dropout off."""
        value = softmax_cross_entropy(self.logits(params, batch), batch["label"])
        if self.l2 > 0:
            value = value + 0.5 * self.l2 * kernel_l2(params)
        return value

    def accuracy(self, params: dict, batch: dict) -> jax.Array:
        """Fraction classified correctly (dropout off)."""
        return accuracy(self.logits(params, batch), batch["label"])


def resolve_image_datasets(datasets: Optional[Datasets], dataset: str, image_size: Optional[int],
                           batch_size: int, seed: int, data_dir: Optional[str], center: bool,
                           full_batch: bool) -> Datasets:
    """Use ``datasets`` if given (tests, families sharing data), else load ``dataset``."""
    if datasets is None:
        bs = full_batch_size() if full_batch else batch_size
        datasets = load_images(dataset, image_size=image_size, batch_size=bs, seed=seed,
                               data_dir=data_dir, flatten=False, center=center)
    return check_datasets(datasets, ("image", "label"))


class ImageMLPTask(ClassifierTask):
    """MLP classifier on images (flattened), with optional dropout and layer norm.

    Args (all JSON-friendly): ``dataset`` and ``image_size`` (passed to
    ``tasks.datasets.load_image_dataset``), ``hidden_sizes``, ``activation`` (a name in
    ``tasks.nn.ACTIVATIONS``), ``w_init`` (a name in ``tasks.nn.INITIALIZERS``), ``use_bias``,
    ``layer_norm``, ``dropout_rate``, ``l2``, ``batch_size``, ``seed`` (data order),
    ``data_dir``, ``center``, ``full_batch`` (the train split is served whole; dropout must be 0).
    ``datasets`` (not part of the config) injects an already-built :class:`~tasks.base.Datasets`.
    """

    def __init__(self, dataset: str = "digits", image_size: Optional[int] = None,
                 hidden_sizes: Sequence[int] = (32,), activation: str = "relu",
                 w_init: str = "lecun_normal", use_bias: bool = True, layer_norm: bool = False,
                 dropout_rate: float = 0.0, l2: float = 0.0, batch_size: int = 128, seed: int = 0,
                 data_dir: Optional[str] = None, center: bool = True, full_batch: bool = False,
                 name: Optional[str] = None, datasets: Optional[Datasets] = None):
        hidden_sizes = check_int_list("hidden_sizes", hidden_sizes)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("w_init", w_init, tuple(INITIALIZERS))
        dropout_rate = check_float("dropout_rate", dropout_rate, low=0.0, high=1.0,
                                   high_inclusive=False)
        l2 = check_float("l2", l2, low=0.0)
        batch_size = check_positive_int("batch_size", batch_size)
        seed = check_positive_int("seed", seed, minimum=0)
        if image_size is not None:
            image_size = check_positive_int("image_size", image_size)
        if full_batch and dropout_rate > 0:
            raise ValueError("full_batch=True needs dropout_rate=0 (a deterministic objective)")
        if name is None:
            name = f"{dataset}{'' if image_size is None else image_size}_mlp_" + "x".join(
                map(str, hidden_sizes)) + f"_{activation}"
        self._set_config(dataset=dataset, image_size=image_size, hidden_sizes=list(hidden_sizes),
                         activation=activation, w_init=w_init, use_bias=bool(use_bias),
                         layer_norm=bool(layer_norm), dropout_rate=dropout_rate, l2=l2,
                         batch_size=batch_size, seed=seed, data_dir=data_dir, center=bool(center),
                         full_batch=bool(full_batch), name=name)
        self.name = name
        self.l2 = l2
        self._full_batch = bool(full_batch)
        self.datasets = resolve_image_datasets(datasets, dataset, image_size, batch_size, seed,
                                               data_dir, center, full_batch)
        self.num_classes = num_classes_of(self.datasets)
        self.model = MLP(hidden_sizes=hidden_sizes, out_size=self.num_classes,
                         activation=get_activation(activation), kernel_init=get_initializer(w_init),
                         use_bias=bool(use_bias), layer_norm=bool(layer_norm),
                         dropout_rate=dropout_rate)

    def preprocess(self, images: jax.Array) -> jax.Array:
        return flatten_images(images)


class MLPClassifierMember(ClassifierTask):
    """A member of :class:`tasks.families.ImageMLPFamily`: activation / initializer / scale come
    from a (possibly traced) cfg, so the class is built inside ``vmap``."""

    def __init__(self, model: nn.Module, datasets: Datasets, name: str, l2: float = 0.0):
        self.model = model
        self.datasets = datasets
        self.name = name
        self.l2 = l2
        self._full_batch = False
        self._set_config()

    def preprocess(self, images: jax.Array) -> jax.Array:
        return flatten_images(images)
