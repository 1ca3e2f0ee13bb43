"""Fixed tasks by name: ``get_task(name, **overrides)`` and ``task_names()``.

Each entry is ``(module, class name, default kwargs)``; keyword overrides replace defaults (e.g.
``get_task("digits_mlp", hidden_sizes=[64])``). Modules are imported on first use, so listing the
names does not load any data or model code.
"""
from __future__ import annotations

import importlib
from typing import Any

from tasks.base import Task

_Q = ("quadratic", "QuadraticTask")
_F = ("functions2d", "Function2DTask")
_MLP = ("image_mlp", "ImageMLPTask")
_CONV = ("conv", "ConvTask")
_AE = ("autoencoder", "MLPAutoencoderTask")
_VAE = ("autoencoder", "MLPVAETask")
_RNN = ("char_rnn", "CharRNNTask")
_SYN = "synthetic"

_TASKS: dict[str, tuple[str, str, dict]] = {
    # quadratics
    "quadratic_10": (*_Q, dict(dim=10, condition_number=10.0, name="quadratic_10")),
    "quadratic_10_ill": (*_Q, dict(dim=10, condition_number=1e4, name="quadratic_10_ill")),
    "quadratic_10_noisy": (*_Q, dict(dim=10, condition_number=10.0, noise_std=0.1,
                                     name="quadratic_10_noisy")),
    "quadratic_100": (*_Q, dict(dim=100, condition_number=100.0, spectrum="random",
                                name="quadratic_100")),
    # 2-D test functions
    **{f: (*_F, dict(function=f)) for f in (
        "rosenbrock", "beale", "booth", "ackley", "himmelblau", "styblinski_tang", "rastrigin",
        "matyas", "three_hump_camel", "flower")},
    # convex regression problems (full batch)
    "least_squares": ("regression", "LeastSquaresTask", dict(name="least_squares")),
    "logistic_regression": ("regression", "LogisticRegressionTask",
                            dict(name="logistic_regression")),
    "digits_logistic_regression": ("regression", "LogisticRegressionTask",
                                   dict(dataset="digits", l2=1e-3,
                                        name="digits_logistic_regression")),
    # image MLP classifiers
    "digits_mlp": (*_MLP, dict(dataset="digits", hidden_sizes=[32], name="digits_mlp")),
    "digits_mlp_wide": (*_MLP, dict(dataset="digits", hidden_sizes=[128],
                                    name="digits_mlp_wide")),
    "digits_mlp_deep": (*_MLP, dict(dataset="digits", hidden_sizes=[32, 32, 32],
                                    name="digits_mlp_deep")),
    "digits_mlp_dropout": (*_MLP, dict(dataset="digits", hidden_sizes=[64], dropout_rate=0.2,
                                       name="digits_mlp_dropout")),
    "digits_mlp_layernorm": (*_MLP, dict(dataset="digits", hidden_sizes=[32, 32],
                                         layer_norm=True, name="digits_mlp_layernorm")),
    "digits_mlp_tanh": (*_MLP, dict(dataset="digits", hidden_sizes=[32], activation="tanh",
                                    name="digits_mlp_tanh")),
    "digits_mlp_full_batch": (*_MLP, dict(dataset="digits", hidden_sizes=[32], full_batch=True,
                                          name="digits_mlp_full_batch")),
    "mnist8_mlp": (*_MLP, dict(dataset="mnist_5k", image_size=8, hidden_sizes=[32],
                               name="mnist8_mlp")),
    "mnist16_mlp": (*_MLP, dict(dataset="mnist_5k", image_size=16, hidden_sizes=[32],
                                name="mnist16_mlp")),
    "mnist_mlp": (*_MLP, dict(dataset="mnist_5k", hidden_sizes=[32], name="mnist_mlp")),
    "fashion_mnist16_mlp": (*_MLP, dict(dataset="fashion_mnist", image_size=16,
                                        hidden_sizes=[32], name="fashion_mnist16_mlp")),
    "mnist1d_mlp": (*_MLP, dict(dataset="mnist1d", hidden_sizes=[64, 32], name="mnist1d_mlp")),
    # conv nets
    "digits_conv": (*_CONV, dict(dataset="digits", channels=[8, 16], strides=[2, 2],
                                 name="digits_conv")),
    "digits_conv_pool": (*_CONV, dict(dataset="digits", channels=[8, 16], strides=[1, 1],
                                      pooling="max", head="fc", name="digits_conv_pool")),
    "mnist16_conv": (*_CONV, dict(dataset="mnist_5k", image_size=16, channels=[8, 16],
                                  strides=[2, 2], batch_size=64, name="mnist16_conv")),
    # autoencoders
    "digits_ae": (*_AE, dict(dataset="digits", hidden_sizes=[32, 8], name="digits_ae")),
    "mnist16_ae": (*_AE, dict(dataset="mnist_5k", image_size=16, hidden_sizes=[64, 16],
                              name="mnist16_ae")),
    "digits_vae": (*_VAE, dict(dataset="digits", hidden_sizes=[32], latent_dim=8,
                               name="digits_vae")),
    # character-level language models
    "char_rnn": (*_RNN, dict(cell="rnn", name="char_rnn")),
    "char_gru": (*_RNN, dict(cell="gru", name="char_gru")),
    "char_lstm": (*_RNN, dict(cell="lstm", name="char_lstm")),
    # synthetic problems (Wichrowska et al. 2017 style)
    "bowl": (_SYN, "BowlTask", dict(condition_number=100.0, name="bowl")),
    "rosenbrock_10d": (_SYN, "RosenbrockNDTask", dict(dim=10, name="rosenbrock_10d")),
    "sparse_softmax_regression": (_SYN, "SparseSoftmaxRegressionTask",
                                  dict(name="sparse_softmax_regression")),
    "norm": (_SYN, "NormTask", dict(name="norm")),
}


def task_names() -> list[str]:
    """Names accepted by :func:`get_task`."""
    return list(_TASKS)


def get_task(name: str, **kwargs: Any) -> Task:
    """Build the fixed task ``name``; ``kwargs`` override its default constructor arguments."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    if name not in _TASKS:
        close = [n for n in _TASKS if n.split("_")[0] == name.split("_")[0]]
        hint = f" (similar: {close})" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; see tasks.task_names()")
    module, cls_name, defaults = _TASKS[name]
    cls = getattr(importlib.import_module(f"tasks.{module}"), cls_name)
    merged = {**defaults, **kwargs}
    try:
        return cls(**merged)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise TypeError(f"task {name!r} ({cls_name}): {err}") from err
        raise
