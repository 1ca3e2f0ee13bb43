"""MLP autoencoder and MLP variational autoencoder on images (pixels in [0, 1], not centered).

Autoencoder (params ``{"encoder": ..., "decoder": ...}``): encoder ``MLP(hidden_sizes)`` with
the last width as the code, decoder the mirrored widths then ``D`` outputs ``o``::

    "mse":        L = mean_{i,j} (sigmoid(o_ij) - x_ij)^2
    "bernoulli":  L = mean_{i,j} [softplus(o_ij) - x_ij o_ij]      (sigmoid cross-entropy)

VAE with ``q(z|x) = N(mu(x), diag sigma(x)^2)``, ``sigma = softplus(.) + 1e-4``, prior
``N(0, I)``, decoder logits ``o(z)``; the loss is the negative ELBO per example (summed over
pixels and latents, averaged over the batch), with the reparameterization
``z = mu + sigma * eps``, ``eps ~ N(0, I)`` drawn from the loss key::

    L = mean_i [ -log p(x_i | z_i) + KL(q(z|x_i) || N(0, I)) ]
    KL = sum_k 1/2 (mu_k^2 + sigma_k^2 - 1) - log sigma_k
    bernoulli:  -log p(x|z) = sum_j softplus(o_j) - x_j o_j
    gaussian:   -log p(x|z) = sum_j 1/2 (x_j - o_j)^2 + 1/2 log(2 pi)    (unit variance)
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from tasks.base import Datasets
from tasks.common import ConfiguredTask, check_choice, check_int_list, check_positive_int, plain_dict
from tasks.image_mlp import resolve_image_datasets
from tasks.nn import ACTIVATIONS, INITIALIZERS, MLP, flatten_images, get_activation, get_initializer

AE_LOSSES = ("mse", "bernoulli")
VAE_LIKELIHOODS = ("bernoulli", "gaussian")


class _ImageTaskMixin(ConfiguredTask):
    """Shared data plumbing: flattened images of dimension ``self.input_dim``."""

    _full_batch: bool = False

    @property
    def full_batch(self) -> bool:
        return self._full_batch

    def _setup_data(self, datasets, dataset, image_size, batch_size, seed, data_dir, full_batch):
        self._full_batch = bool(full_batch)
        self.datasets = resolve_image_datasets(datasets, dataset, image_size, batch_size, seed,
                                               data_dir, center=False, full_batch=full_batch)
        shape = self.datasets.train.arrays["image"].shape[1:]
        self.input_dim = int(math.prod(shape))

    def _example(self) -> jax.Array:
        assert self.datasets is not None
        return flatten_images(jnp.asarray(self.datasets.train.arrays["image"][:1], jnp.float32))


def _check_common(hidden_sizes, activation, w_init, batch_size, seed, image_size):
    hidden_sizes = check_int_list("hidden_sizes", hidden_sizes, allow_empty=False)
    check_choice("activation", activation, tuple(ACTIVATIONS))
    check_choice("w_init", w_init, tuple(INITIALIZERS))
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_positive_int("seed", seed, minimum=0)
    if image_size is not None:
        image_size = check_positive_int("image_size", image_size)
    return hidden_sizes, batch_size, seed, image_size


class MLPAutoencoderTask(_ImageTaskMixin):
    """Deterministic MLP autoencoder; ``hidden_sizes[-1]`` is the code size."""

    def __init__(self, dataset: str = "digits", image_size: Optional[int] = None,
                 hidden_sizes: Sequence[int] = (32, 8), activation: str = "relu",
                 w_init: str = "lecun_normal", loss: str = "mse", batch_size: int = 128,
                 seed: int = 0, data_dir: Optional[str] = None, full_batch: bool = False,
                 name: Optional[str] = None, datasets: Optional[Datasets] = None):
        hidden_sizes, batch_size, seed, image_size = _check_common(
            hidden_sizes, activation, w_init, batch_size, seed, image_size)
        self.loss_type = check_choice("loss", loss, AE_LOSSES)
        name = name or (f"{dataset}{'' if image_size is None else image_size}_mlp_ae_"
                        + "x".join(map(str, hidden_sizes)) + f"_{loss}")
        self._set_config(dataset=dataset, image_size=image_size, hidden_sizes=list(hidden_sizes),
                         activation=activation, w_init=w_init, loss=loss, batch_size=batch_size,
                         seed=seed, data_dir=data_dir, full_batch=bool(full_batch), name=name)
        self.name = name
        self._setup_data(datasets, dataset, image_size, batch_size, seed, data_dir, full_batch)
        act, kinit = get_activation(activation), get_initializer(w_init)
        self.encoder = MLP(hidden_sizes=hidden_sizes[:-1], out_size=hidden_sizes[-1],
                           activation=act, kernel_init=kinit, activate_final=True)
        self.decoder = MLP(hidden_sizes=tuple(reversed(hidden_sizes[:-1])),
                           out_size=self.input_dim, activation=act, kernel_init=kinit)
        self.code_size = hidden_sizes[-1]

    def init(self, key: jax.Array) -> dict:
        ke, kd = jax.random.split(key)
        x = self._example()
        enc = self.encoder.init(ke, x)["params"]
        dec = self.decoder.init(kd, jnp.zeros((1, self.code_size), x.dtype))["params"]
        return plain_dict({"encoder": enc, "decoder": dec})

    def reconstruct_logits(self, params: dict, batch: dict) -> jax.Array:
        x = flatten_images(jnp.asarray(batch["image"]))
        code = self.encoder.apply({"params": params["encoder"]}, x)
        return self.decoder.apply({"params": params["decoder"]}, code)  # pyright: ignore[reportReturnType]  (flax's apply: the output, no mutable collections asked)

    def loss(self, params: dict, key: jax.Array, batch: dict) -> jax.Array:
        x = flatten_images(jnp.asarray(batch["image"]))
        o = self.reconstruct_logits(params, batch)
        if self.loss_type == "mse":
            return jnp.mean((jax.nn.sigmoid(o) - x) ** 2)
        return jnp.mean(jax.nn.softplus(o) - x * o)


class MLPVAETask(_ImageTaskMixin):
    """MLP VAE; the loss is the single-sample negative ELBO (reparameterized with the loss key)."""

    def __init__(self, dataset: str = "digits", image_size: Optional[int] = None,
                 hidden_sizes: Sequence[int] = (32,), latent_dim: int = 8,
                 activation: str = "relu", w_init: str = "lecun_normal",
                 likelihood: str = "bernoulli", batch_size: int = 128, seed: int = 0,
                 data_dir: Optional[str] = None, name: Optional[str] = None,
                 datasets: Optional[Datasets] = None):
        hidden_sizes, batch_size, seed, image_size = _check_common(
            hidden_sizes, activation, w_init, batch_size, seed, image_size)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.likelihood = check_choice("likelihood", likelihood, VAE_LIKELIHOODS)
        name = name or (f"{dataset}{'' if image_size is None else image_size}_mlp_vae_"
                        + "x".join(map(str, hidden_sizes)) + f"_z{latent_dim}")
        self._set_config(dataset=dataset, image_size=image_size, hidden_sizes=list(hidden_sizes),
                         latent_dim=self.latent_dim, activation=activation, w_init=w_init,
                         likelihood=likelihood, batch_size=batch_size, seed=seed,
                         data_dir=data_dir, name=name)
        self.name = name
        self._setup_data(datasets, dataset, image_size, batch_size, seed, data_dir, False)
        act, kinit = get_activation(activation), get_initializer(w_init)
        self.encoder = MLP(hidden_sizes=hidden_sizes, out_size=2 * self.latent_dim,
                           activation=act, kernel_init=kinit)
        self.decoder = MLP(hidden_sizes=tuple(reversed(hidden_sizes)), out_size=self.input_dim,
                           activation=act, kernel_init=kinit)

    @property
    def full_batch(self) -> bool:
        return False  # the objective is a Monte-Carlo ELBO

    def init(self, key: jax.Array) -> dict:
        ke, kd = jax.random.split(key)
        x = self._example()
        enc = self.encoder.init(ke, x)["params"]
        dec = self.decoder.init(kd, jnp.zeros((1, self.latent_dim), x.dtype))["params"]
        return plain_dict({"encoder": enc, "decoder": dec})

    def encode(self, params: dict, batch: dict) -> tuple[jax.Array, jax.Array]:
        """``(mu, sigma)`` of ``q(z|x)``, each ``[B, latent_dim]``."""
        x = flatten_images(jnp.asarray(batch["image"]))
        h = self.encoder.apply({"params": params["encoder"]}, x)
        mu, raw = jnp.split(h, 2, axis=-1)  # pyright: ignore[reportArgumentType]  (flax's apply: an array)
        return mu, jax.nn.softplus(raw) + 1e-4

    def decode(self, params: dict, z: jax.Array) -> jax.Array:
        """Decoder outputs (Bernoulli logits or Gaussian means), ``[B, D]``."""
        return self.decoder.apply({"params": params["decoder"]}, z)  # pyright: ignore[reportReturnType]  (flax's apply: the output, no mutable collections asked)

    def loss(self, params: dict, key: jax.Array, batch: dict) -> jax.Array:
        x = flatten_images(jnp.asarray(batch["image"]))
        mu, sigma = self.encode(params, batch)
        eps = jax.random.normal(key, mu.shape, mu.dtype)
        o = self.decode(params, mu + sigma * eps)
        if self.likelihood == "bernoulli":
            nll = jnp.sum(jax.nn.softplus(o) - x * o, axis=-1)
        else:
            nll = jnp.sum(0.5 * (x - o) ** 2 + 0.5 * math.log(2 * math.pi), axis=-1)
        kl = jnp.sum(0.5 * (mu * mu + sigma * sigma - 1.0) - jnp.log(sigma), axis=-1)
        return jnp.mean(nll + kl)
