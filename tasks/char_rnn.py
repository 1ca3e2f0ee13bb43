"""Character-level RNN language model on ``tasks.datasets.load_text_dataset``.

Batches are ``{"tokens": int32 [B, T+1]}``; inputs are ``tokens[:, :-1]`` and targets
``tokens[:, 1:]``. The model embeds characters, runs one recurrent layer (``cell``: "rnn" --
``h' = act(W_i x + W_h h + b)``, "gru" or "lstm", flax linen cells) from a zero state, and maps
every hidden state to next-character logits::

    L = mean_{b,t} -log softmax(Dense(h_{b,t}))[tokens_{b,t+1}]
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from tasks.base import Datasets
from tasks.common import (
    ConfiguredTask,
    check_choice,
    check_datasets,
    check_positive_int,
    default_float,
    load_text,
    params_dtype,
    plain_dict,
)
from tasks.nn import ACTIVATIONS, get_activation, softmax_cross_entropy

CELLS = ("rnn", "gru", "lstm")


class CharRNN(nn.Module):
    """Embedding -> one recurrent layer -> dense logits over the vocabulary."""

    vocab_size: int
    embed_dim: int
    hidden_size: int
    cell: str = "lstm"
    activation: str = "tanh"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab_size, self.embed_dim, param_dtype=self.param_dtype)(tokens)
        if self.cell == "rnn":
            cell = nn.SimpleCell(self.hidden_size, activation_fn=get_activation(self.activation),
                                 param_dtype=self.param_dtype)
        elif self.cell == "gru":
            cell = nn.GRUCell(self.hidden_size, param_dtype=self.param_dtype)
        else:
            cell = nn.OptimizedLSTMCell(self.hidden_size, param_dtype=self.param_dtype)
        h = nn.RNN(cell)(x)
        return nn.Dense(self.vocab_size, param_dtype=self.param_dtype)(h)


class CharRNNTask(ConfiguredTask):
    """Next-character prediction with a vanilla RNN / GRU / LSTM.

    Args (JSON-friendly): ``dataset`` (a name for ``load_text_dataset``), ``seq_len``,
    ``batch_size``, ``cell`` ("rnn"/"gru"/"lstm"), ``hidden_size``, ``embed_dim``, ``activation``
    (vanilla cell only), ``seed``, ``data_dir``; ``datasets`` (not in the config) injects data,
    which then needs a ``vocab_size`` attribute or is sized by its largest token.
    """

    def __init__(self, dataset: str = "python_docs", seq_len: int = 32, batch_size: int = 32,
                 cell: str = "lstm", hidden_size: int = 32, embed_dim: int = 16,
                 activation: str = "tanh", seed: int = 0, data_dir: Optional[str] = None,
                 name: Optional[str] = None, datasets: Optional[Datasets] = None):
        seq_len = check_positive_int("seq_len", seq_len)
        batch_size = check_positive_int("batch_size", batch_size)
        self.cell = check_choice("cell", cell, CELLS)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        embed_dim = check_positive_int("embed_dim", embed_dim)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        seed = check_positive_int("seed", seed, minimum=0)
        name = name or f"{dataset}_char_{cell}_{hidden_size}"
        self._set_config(dataset=dataset, seq_len=seq_len, batch_size=batch_size, cell=cell,
                         hidden_size=hidden_size, embed_dim=embed_dim, activation=activation,
                         seed=seed, data_dir=data_dir, name=name)
        self.name = name
        if datasets is None:
            datasets = load_text(dataset, seq_len=seq_len, batch_size=batch_size, seed=seed,
                                 data_dir=data_dir)
        self.datasets = check_datasets(datasets, ("tokens",))
        vocab = getattr(datasets, "vocab_size", None)
        if vocab is None:
            vocab = 1 + max(int(getattr(datasets, s).arrays["tokens"].max())
                            for s in ("train", "inner_valid", "outer_valid", "test"))
        self.vocab_size = int(vocab)
        self._spec: dict[str, Any] = dict(vocab_size=self.vocab_size, embed_dim=embed_dim,
                          hidden_size=hidden_size, cell=self.cell, activation=activation)

    def model(self, dtype=jnp.float32) -> CharRNN:
        """The flax module with parameters (and recurrent state) in ``dtype``."""
        return CharRNN(param_dtype=dtype, **self._spec)

    def init(self, key: jax.Array) -> dict:
        assert self.datasets is not None
        tokens = jnp.asarray(self.datasets.train.arrays["tokens"][:1, :-1])
        dtype = default_float()
        return plain_dict(self.model(dtype).init(key, tokens)["params"], dtype)

    def logits(self, params: dict, batch: dict) -> jax.Array:
        tokens = jnp.asarray(batch["tokens"])
        return self.model(params_dtype(params)).apply({"params": params}, tokens[:, :-1])  # pyright: ignore[reportReturnType]  (flax's apply: the output, no mutable collections asked)

    def loss(self, params: dict, key: jax.Array, batch: dict) -> jax.Array:
        tokens = jnp.asarray(batch["tokens"])
        return softmax_cross_entropy(self.logits(params, batch), tokens[:, 1:])
