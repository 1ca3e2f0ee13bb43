"""``char_rnn_lm_family``: character-level RNN language models on the offline text corpus.

Sampled: cell (``rnn`` / ``gru`` / ``lstm``), hidden size (log-uniform 16-48), embedding size
(log-uniform 8-32), the ``rnn`` cell's activation, sequence length (8 / 16 / 32), batch size
(8 / 16 / 32) and the data-order seed.  The corpus is ``python_docs`` (the standard library's
``pydoc_data.topics``), the only one this package ships.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tasksets import sampling as S
from tasksets.spec import FamilySpec

KEYS = ("dataset", "cell", "hidden_size", "embed_dim", "activation", "seq_len", "batch_size",
        "data_seed")
DEFAULT_SPACE = {
    "datasets": ["python_docs"],
    "cells": ["rnn", "gru", "lstm"],
    "hidden_size": [16, 48],
    "embed_dim": [8, 32],
    "activations": ["tanh", "relu", "elu", "softsign", "sigmoid"],
    "seq_lens": [8, 16, 32],
    "batch_sizes": [8, 16, 32],
}


def sample(rng: np.random.Generator, space: Mapping[str, Any]) -> dict:
    cfg = {
        "dataset": S.choice(rng, list(space["datasets"])),
        "cell": S.choice(rng, list(space["cells"])),
        "hidden_size": S.log_int(rng, *space["hidden_size"]),
        "embed_dim": S.log_int(rng, *space["embed_dim"]),
        "activation": S.choice(rng, list(space["activations"])),
        "seq_len": int(S.choice(rng, list(space["seq_lens"]))),
        "batch_size": int(S.choice(rng, list(space["batch_sizes"]))),
        "data_seed": S.uniform_int(rng, 0, 2**31 - 1),
    }
    if cfg["cell"] != "rnn":  # gated cells have fixed nonlinearities: keep one cfg per task
        cfg["activation"] = "tanh"
    return cfg


def build(cfg: dict):
    from tasks.char_rnn import CharRNNTask

    return CharRNNTask(dataset=cfg["dataset"], seq_len=cfg["seq_len"],
                       batch_size=cfg["batch_size"], cell=cfg["cell"],
                       hidden_size=cfg["hidden_size"], embed_dim=cfg["embed_dim"],
                       activation=cfg["activation"], seed=cfg["data_seed"])


CHAR_RNN_LM_FAMILY = FamilySpec(
    name="char_rnn_lm_family", sample=sample, build=build, keys=KEYS,
    shape_keys=("dataset", "cell", "hidden_size", "embed_dim", "seq_len", "batch_size"),
    default_space=DEFAULT_SPACE,
    description="character RNN language models: cell, hidden/embedding sizes, activation, "
                "sequence length, batch size")
