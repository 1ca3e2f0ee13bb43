"""Small convolutional image classifiers (TaskSet's "conv + pooling" and "conv + fc" shapes).

``net(x) = head(act(conv_L(... act(conv_1(x)) ...)))`` with 3x3 (``kernel_size``) convolutions of
``channels[i]`` features and stride ``strides[i]``, optionally followed by 2x2 ``pooling``
("max" / "avg") after every block. The head reduces the feature map to class logits:
``"mean"`` / ``"max"`` / ``"squared_mean"`` global pooling over space then a dense layer, or
``"fc"`` (flatten then dense). Loss: mean softmax cross-entropy (+ ``l2/2 ||kernels||^2``).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from tasks.base import Datasets
from tasks.common import check_choice, check_float, check_int_list, check_positive_int, num_classes_of
from tasks.image_mlp import ClassifierTask, resolve_image_datasets
from tasks.nn import ACTIVATIONS, INITIALIZERS, get_activation, get_initializer

POOLINGS = ("none", "max", "avg")
HEADS = ("mean", "max", "squared_mean", "fc")
PADDINGS = ("SAME", "VALID")


class ConvNet(nn.Module):
    """Conv blocks then a pooling/flatten head and a dense classifier."""

    channels: Sequence[int]
    strides: Sequence[int]
    num_classes: int
    kernel_size: int = 3
    padding: str = "SAME"
    pooling: str = "none"
    head: str = "mean"
    activation: Callable = jax.nn.relu
    kernel_init: Callable = nn.initializers.lecun_normal()
    use_bias: bool = True

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        for ch, st in zip(self.channels, self.strides):
            k = min(self.kernel_size, x.shape[1]) if self.padding == "VALID" else self.kernel_size
            kw = min(self.kernel_size, x.shape[2]) if self.padding == "VALID" else self.kernel_size
            x = nn.Conv(ch, (k, kw), strides=(st, st), padding=self.padding,
                        use_bias=self.use_bias, kernel_init=self.kernel_init)(x)
            x = self.activation(x)
            if self.pooling != "none" and x.shape[1] >= 2:
                window = (2, 2) if x.shape[2] >= 2 else (2, 1)
                pool = nn.max_pool if self.pooling == "max" else nn.avg_pool
                x = pool(x, window, strides=window, padding="VALID")
        if self.head == "mean":
            x = jnp.mean(x, axis=(1, 2))
        elif self.head == "max":
            x = jnp.max(x, axis=(1, 2))
        elif self.head == "squared_mean":
            x = jnp.mean(x * x, axis=(1, 2))
        else:
            x = jnp.reshape(x, (x.shape[0], -1))
        return nn.Dense(self.num_classes, use_bias=self.use_bias,
                        kernel_init=self.kernel_init)(x)


class ConvTask(ClassifierTask):
    """Conv-net classifier on ``load_image_dataset(dataset, image_size=...)`` (NHWC images).

    Args (JSON-friendly): ``channels`` (features per block), ``strides`` (one int per block, or a
    single int for all), ``kernel_size``, ``padding`` ("SAME"/"VALID"), ``pooling``
    ("none"/"max"/"avg", 2x2 after each block), ``head`` ("mean"/"max"/"squared_mean"/"fc"),
    ``activation``, ``w_init``, ``use_bias``, ``l2``, ``batch_size``, ``seed``, ``data_dir``,
    ``center``, ``full_batch``; ``datasets`` (not in the config) injects data.
    """

    def __init__(self, dataset: str = "digits", image_size: Optional[int] = None,
                 channels: Sequence[int] = (8, 16), strides: Sequence[int] | int = 2,
                 kernel_size: int = 3, padding: str = "SAME", pooling: str = "none",
                 head: str = "mean", activation: str = "relu", w_init: str = "he_normal",
                 use_bias: bool = True, l2: float = 0.0, batch_size: int = 128, seed: int = 0,
                 data_dir: Optional[str] = None, center: bool = True, full_batch: bool = False,
                 name: Optional[str] = None, datasets: Optional[Datasets] = None):
        channels = check_int_list("channels", channels, allow_empty=False)
        strides = check_int_list("strides", strides, allow_empty=False)
        if len(strides) == 1:
            strides = strides * len(channels)
        if len(strides) != len(channels):
            raise ValueError(f"strides has {len(strides)} entries but channels has "
                             f"{len(channels)}")
        kernel_size = check_positive_int("kernel_size", kernel_size)
        check_choice("padding", padding, PADDINGS)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("head", head, HEADS)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("w_init", w_init, tuple(INITIALIZERS))
        self.l2 = check_float("l2", l2, low=0.0)
        batch_size = check_positive_int("batch_size", batch_size)
        seed = check_positive_int("seed", seed, minimum=0)
        if image_size is not None:
            image_size = check_positive_int("image_size", image_size)
        name = name or (f"{dataset}{'' if image_size is None else image_size}_conv_"
                        + "x".join(map(str, channels)) + f"_{pooling}_{head}")
        self._set_config(dataset=dataset, image_size=image_size, channels=list(channels),
                         strides=list(strides), kernel_size=kernel_size, padding=padding,
                         pooling=pooling, head=head, activation=activation, w_init=w_init,
                         use_bias=bool(use_bias), l2=self.l2, batch_size=batch_size, seed=seed,
                         data_dir=data_dir, center=bool(center), full_batch=bool(full_batch),
                         name=name)
        self.name = name
        self._full_batch = bool(full_batch)
        self.datasets = resolve_image_datasets(datasets, dataset, image_size, batch_size, seed,
                                               data_dir, center, full_batch)
        shape = self.datasets.train.arrays["image"].shape
        if len(shape) != 4:
            raise ValueError(f"ConvTask needs NHWC images, got image shape {shape[1:]}")
        self.num_classes = num_classes_of(self.datasets)
        self.model = ConvNet(channels=channels, strides=strides, num_classes=self.num_classes,
                             kernel_size=kernel_size, padding=padding, pooling=pooling, head=head,
                             activation=get_activation(activation),
                             kernel_init=get_initializer(w_init), use_bias=bool(use_bias))
