"""The 8×8 digits shipped inside the package (1,797 UCI optdigits images), split for the examples.

``digits_splits(seed)`` returns ``{"train", "calib", "test"}`` → ``(images, labels)`` with images
float32 in [0, 1] of shape (n, 8, 8) and integer labels; the split is a seeded permutation, so
every run of an example sees the same data. No download: the data lives in
``tasks/datasets/data/digits.csv.gz``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tasks.datasets.sources import read_digits  # noqa: E402


def digits_splits(seed: int = 0, sizes: tuple[int, int] = (600, 600)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded train / calib / test splits of the shipped digits (test = the rest)."""
    raw = read_digits().splits["train"]
    images = (raw["image"][..., 0].astype(np.float32) / 16.0)
    labels = raw["label"].astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(labels))
    a, b = sizes
    idx = {"train": perm[:a], "calib": perm[a:a + b], "test": perm[a + b:]}
    return {k: (images[i], labels[i]) for k, i in idx.items()}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: Σ_b (n_b / n) |accuracy_b − confidence_b| over equal-width confidence bins."""
    probs = np.asarray(probs, np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)
