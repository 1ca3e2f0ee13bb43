"""Shared neural-network building blocks for the tasks (flax linen).

* ``ACTIVATIONS``: name -> elementwise function; ``ACTIVATION_NAMES`` fixes an order so families
  can pick one by integer index with :func:`activation_switch` (``lax.switch``; vmappable).
* ``INITIALIZERS``: name -> flax initializer ``(key, shape, dtype) -> array``;
  ``INITIALIZER_NAMES`` and :func:`initializer_switch` do the same for weight initializers.
* :class:`MLP`: dense stack with optional layer norm and dropout.
* :func:`softmax_cross_entropy`, :func:`accuracy`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array


def _identity(x: Array) -> Array:
    return x


def _leaky_relu(x: Array) -> Array:
    return jax.nn.leaky_relu(x, negative_slope=0.01)


def _gelu(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=True)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "swish": jax.nn.swish,
    "gelu": _gelu,
    "sigmoid": jax.nn.sigmoid,
    "leaky_relu": _leaky_relu,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "sin": jnp.sin,
    "identity": _identity,
}
# fixed order for integer-indexed selection inside families
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


INITIALIZERS: dict[str, Callable[..., Array]] = {
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "he_normal": nn.initializers.he_normal(),
    "lecun_uniform": nn.initializers.lecun_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),
    "orthogonal": nn.initializers.orthogonal(),
    "normal": nn.initializers.normal(stddev=0.05),
    "uniform": nn.initializers.uniform(scale=0.1),
    "truncated_normal": nn.initializers.truncated_normal(stddev=0.05),
    "zeros": nn.initializers.zeros,
}
INITIALIZER_NAMES: tuple[str, ...] = tuple(INITIALIZERS)


def get_activation(name: str) -> Callable[[Array], Array]:
    """Activation function by name; ``ValueError`` names the options on a typo."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a str, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def get_initializer(name: str) -> Callable[..., Array]:
    """Flax initializer by name; ``ValueError`` names the options on a typo."""
    if not isinstance(name, str):
        raise TypeError(f"initializer must be a str, got {type(name).__name__}")
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; expected one of {list(INITIALIZERS)}")
    return INITIALIZERS[name]


def _names_or_default(names: Optional[Sequence[str]], default: tuple[str, ...],
                      table: dict) -> tuple[str, ...]:
    names = default if names is None else tuple(names)
    if not names:
        raise ValueError("the list of names to switch over is empty")
    for n in names:
        if n not in table:
            raise ValueError(f"unknown name {n!r}; expected one of {list(table)}")
    return names


def activation_switch(index: Array, x: Array, names: Optional[Sequence[str]] = None) -> Array:
    """``ACTIVATIONS[names[index]](x)`` with ``index`` an integer array (traced is fine).

    Uses ``lax.switch`` (index clamped to range), so under ``vmap`` it evaluates every branch and
    selects -- cheap for elementwise functions.
    """
    names = _names_or_default(names, ACTIVATION_NAMES, ACTIVATIONS)
    branches = [ACTIVATIONS[n] for n in names]
    return jax.lax.switch(jnp.asarray(index, jnp.int32), branches, x)


# variance-scaling initializers as (scale, fan mode, distribution): std^2 = scale / fan
VARIANCE_SCALING: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


def _fans(shape: Sequence[int]) -> tuple[float, float]:
    """(fan_in, fan_out) as flax computes them: last axis is out, second-last in, rest receptive."""
    if len(shape) < 2:
        return float(shape[0]) if shape else 1.0, float(shape[0]) if shape else 1.0
    receptive = 1
    for d in shape[:-2]:
        receptive *= d
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _unit_variance_draw(key, shape, dtype, distribution):
    if distribution == "uniform":  # U[-sqrt 3, sqrt 3] has variance 1
        return jax.random.uniform(key, shape, dtype, -jnp.sqrt(3.0), jnp.sqrt(3.0))
    if distribution == "truncated_normal":  # N(0,1) truncated to [-2, 2], rescaled to variance 1
        return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / 0.87962566103423978
    return jax.random.normal(key, shape, dtype)


def initializer_switch(index: Array, names: Optional[Sequence[str]] = None) -> Callable[..., Array]:
    """A flax initializer that applies ``INITIALIZERS[names[index]]`` (``index`` may be traced).

    When every name is a variance-scaling initializer (glorot/he/lecun, uniform/normal) the
    selection is closed-form: one draw per distinct distribution, ``std = sqrt(scale / fan)``
    picked by index -- cheap to compile and to vmap. Otherwise it uses ``lax.switch``. Both give
    the same distribution as ``INITIALIZERS[name]``; the random stream of the closed form differs.
    """
    names = _names_or_default(names, INITIALIZER_NAMES, INITIALIZERS)
    index = jnp.asarray(index, jnp.int32)

    if all(n in VARIANCE_SCALING for n in names):
        def init(key, shape, dtype=jnp.float32):
            fan_in, fan_out = _fans(shape)
            dists = sorted({VARIANCE_SCALING[n][2] for n in names})
            draws = jnp.stack([_unit_variance_draw(k, shape, dtype, d) for k, d in
                               zip(jax.random.split(key, len(dists)), dists)])
            fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}
            stds = jnp.asarray([(VARIANCE_SCALING[n][0] / fans[VARIANCE_SCALING[n][1]]) ** 0.5
                                for n in names], dtype)
            which = jnp.asarray([dists.index(VARIANCE_SCALING[n][2]) for n in names], jnp.int32)
            i = jnp.clip(index, 0, len(names) - 1)
            return stds[i] * draws[which[i]]
        return init

    def switched(key, shape, dtype=jnp.float32):
        branches = [lambda k, f=INITIALIZERS[n]: f(k, shape, dtype) for n in names]
        return jax.lax.switch(index, branches, key)

    return switched


def scaled_initializer(init: Callable[..., Array], scale: Any) -> Callable[..., Array]:
    """``scale * init(key, shape, dtype)`` (``scale`` may be a traced scalar)."""

    def scaled(key, shape, dtype=jnp.float32):
        return (init(key, shape, dtype) * scale).astype(dtype)

    return scaled


class MLP(nn.Module):
    """Dense stack ``x -> [Dense -> (LayerNorm) -> act -> (Dropout)] * L -> Dense(out)``.

    ``activation`` is any callable (a closure over a traced index is fine for families).
    """

    hidden_sizes: Sequence[int]
    out_size: int
    activation: Callable[[Array], Array] = jax.nn.relu
    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., Array] = nn.initializers.zeros
    use_bias: bool = True
    layer_norm: bool = False
    dropout_rate: float = 0.0
    activate_final: bool = False

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        for width in self.hidden_sizes:
            x = nn.Dense(width, use_bias=self.use_bias, kernel_init=self.kernel_init,
                         bias_init=self.bias_init)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
            if self.dropout_rate > 0.0:
                x = nn.Dropout(rate=self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.out_size, use_bias=self.use_bias, kernel_init=self.kernel_init,
                     bias_init=self.bias_init)(x)
        if self.activate_final:
            x = self.activation(x)
        return x


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean over the batch of ``-log softmax(logits)[label]`` (integer labels)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    labels = jnp.asarray(labels, jnp.int32)
    picked = jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    return -jnp.mean(picked)


def accuracy(logits: Array, labels: Array) -> Array:
    """Fraction of examples whose arg-max logit is the label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == jnp.asarray(labels, jnp.int32))


def flatten_images(images: Array) -> Array:
    """``[B, ...] -> [B, prod(...)]``."""
    return jnp.reshape(images, (images.shape[0], -1))
