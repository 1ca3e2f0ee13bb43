"""``load_image_dataset`` / ``load_text_dataset``: TFDS-prepared data as ``tasks.Datasets``.

Split membership is a fixed function of the data (never of the user's seed):

* a source ``test`` split is kept as ``test``; without one, ``floor(TEST_FRACTION * n)`` of the
  examples, chosen by the permutation ``np.random.default_rng([SPLIT_SEED, 0, n])``, become
  ``test``;
* of the remaining pool of ``m``, ``floor(VALID_FRACTION * m)`` each go to ``inner_valid`` and
  ``outer_valid`` (permutation ``default_rng([SPLIT_SEED, 1, m])``), the rest to ``train``.

Examples carrying an ``index`` feature are first sorted by it, so the storage order chosen by
TFDS does not matter. The user ``seed`` only sets the batch order: split ``j`` (train,
inner_valid, outer_valid, test) iterates with seed ``SeedSequence([seed, j])``.

Image preprocessing (once, at load time): integer pixels are divided by ``pixel_max`` (16 for
digits, 255 for 8-bit images; float sources are used as they are), optionally resized
(:mod:`tasks.datasets.resize`), then, if ``center``, standardized with the scalar mean and
standard deviation of the *train* split: ``x <- (x - mean) / std``.

Prepared arrays are cached per process (``functools.lru_cache``) keyed by the arguments that
determine them; the cached arrays are read-only and shared, the ``Split`` objects are new.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np

from tasks.base import Datasets, Split
from tasks.datasets import builders, reader
from tasks.datasets import sources as src
from tasks.datasets import text as text_lib
from tasks.datasets.resize import resize_images

SPLIT_NAMES = ("train", "inner_valid", "outer_valid", "test")
SPLIT_SEED = 20240611
TEST_FRACTION = 0.2
VALID_FRACTION = 0.1
TEXT_TEST_FRACTION = 0.1
TEXT_VALID_FRACTION = 0.05

IMAGE_DATASETS = ("digits", "mnist_5k", "fashion_mnist", "mnist1d", "gaussian_mixture",
                  "teacher_mlp")
TEXT_DATASETS = ("python_docs",)


def _available(name: str) -> bool:
    try:
        src.check_available(name)
    except src.DatasetUnavailableError:
        return False
    return True


def dataset_names(kind: str = "image", available_only: bool = False) -> list:
    """Names of the built-in datasets: ``kind`` is ``"image"``, ``"text"`` or ``"all"``.

    ``available_only`` drops the ones whose optional local source is missing here (a dataset
    already prepared in a data_dir still loads). Any prepared TFDS dataset in a data_dir also
    loads by its TFDS name, e.g. ``load_image_dataset("mnist", data_dir=...)``.
    """
    if kind not in ("image", "text", "all"):
        raise ValueError(f"kind must be 'image', 'text' or 'all', got {kind!r}")
    names = {"image": IMAGE_DATASETS, "text": TEXT_DATASETS,
             "all": IMAGE_DATASETS + TEXT_DATASETS}[kind]
    return [n for n in names if not available_only or _available(n)]


# --- raw data: prepared once, read through TFDS ------------------------------------------------

@functools.lru_cache(maxsize=16)
def _read_dataset(name: str, data_dir: str) -> tuple:
    """``({split: arrays}, metadata)`` for a built-in source or a prepared TFDS dataset."""
    if name in IMAGE_DATASETS or name in TEXT_DATASETS:
        path = builders.source_dir(name, data_dir)
        if not os.path.exists(os.path.join(path, "dataset_info.json")):
            generic = reader.find_prepared(data_dir, name) if name == "fashion_mnist" else None
            if generic is not None and not _available(name):
                path = generic  # a TFDS-prepared fashion_mnist stands in for the Debian files
            else:
                src.check_available(name)  # before TFDS creates any directory
                path = builders.prepare_source(name, data_dir)
    else:
        try:
            path = reader.find_prepared(data_dir, name)
        except ValueError as e:
            raise ValueError(f"unknown dataset {name!r}: {e}; built-in datasets are "
                             f"{list(IMAGE_DATASETS + TEXT_DATASETS)}") from e
        if path is None:
            raise ValueError(
                f"unknown dataset {name!r}: not a built-in dataset "
                f"{list(IMAGE_DATASETS + TEXT_DATASETS)} and no prepared TFDS dataset "
                f"'{name}' in data_dir {data_dir}")
    splits, metadata = reader.read_tfds_directory(path)
    for arrays in splits.values():
        if "index" in arrays:
            order = np.argsort(arrays["index"], kind="stable")
            for k in list(arrays):
                arrays[k] = arrays[k][order]
        for v in arrays.values():
            v.setflags(write=False)
    return splits, metadata


def _fixed_permutation(n: int, salt: int) -> np.ndarray:
    return np.random.default_rng([SPLIT_SEED, salt, n]).permutation(n)


def partition(source_splits: dict, test_fraction: float = TEST_FRACTION,
              valid_fraction: float = VALID_FRACTION) -> dict:
    """Deterministic train / inner_valid / outer_valid / test index sets (see module doc).

    Returns ``{split: (source_split, indices)}`` with sorted indices.
    """
    if "train" not in source_splits:
        raise ValueError(f"dataset has no 'train' split (has {sorted(source_splits)})")
    n_train = len(next(iter(source_splits["train"].values())))
    out = {}
    if "test" in source_splits:
        n_test_src = len(next(iter(source_splits["test"].values())))
        out["test"] = ("test", np.arange(n_test_src))
        pool = np.arange(n_train)
    else:
        perm = _fixed_permutation(n_train, 0)
        n_test = int(n_train * test_fraction)
        out["test"] = ("train", np.sort(perm[:n_test]))
        pool = np.sort(perm[n_test:])
    perm = pool[_fixed_permutation(len(pool), 1)]
    n_valid = int(len(pool) * valid_fraction)
    if n_valid < 1 or len(pool) - 2 * n_valid < 1:
        raise ValueError(f"dataset too small to split: {n_train} train examples")
    out["inner_valid"] = ("train", np.sort(perm[:n_valid]))
    out["outer_valid"] = ("train", np.sort(perm[n_valid:2 * n_valid]))
    out["train"] = ("train", np.sort(perm[2 * n_valid:]))
    return {k: out[k] for k in SPLIT_NAMES}


def _split_seed(seed: int, j: int) -> int:
    return int(np.random.SeedSequence([int(seed), j]).generate_state(1, np.uint32)[0])


def _check_int(name: str, value, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


# --- images -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _image_arrays(name: str, data_dir: str, image_size: Optional[int], flatten: bool,
                  center: bool) -> tuple:
    splits, metadata = _read_dataset(name, data_dir)
    for split, arrays in splits.items():
        for key in ("image", "label"):
            if key not in arrays:
                raise ValueError(f"dataset {name!r} split {split!r} has no {key!r} feature "
                                 f"(features: {sorted(arrays)})")
    parts = partition(splits)
    sample = splits["train"]["image"]
    pixel_max = metadata.get("pixel_max", 255.0 if np.issubdtype(sample.dtype, np.integer) else None)
    out = {}
    for split, (source, idx) in parts.items():
        image = splits[source]["image"][idx]
        if image.ndim == 3:  # [N, H, W] -> [N, H, W, 1]
            image = image[..., None]
        if image.ndim != 4:
            raise ValueError(f"dataset {name!r}: expected images [N, H, W, C], got {image.shape}")
        image = image.astype(np.float32)
        if pixel_max is not None:
            image = image / np.float32(pixel_max)
        if image_size is not None:
            if image.shape[2] == 1 and image.shape[1] > 1:
                raise ValueError(f"dataset {name!r} holds 1-D signals {image.shape[1:]}; "
                                 "image_size only applies to 2-D images")
            image = resize_images(image, image_size, image_size)
        out[split] = {"image": image, "label": splits[source]["label"][idx].astype(np.int32)}
    mean, std = 0.0, 1.0
    if center:
        train = out["train"]["image"]
        mean, std = float(train.mean(dtype=np.float64)), float(train.std(dtype=np.float64))
        if not np.isfinite(std) or std <= 0:
            raise ValueError(f"dataset {name!r}: train images have std {std}; cannot standardize")
        for arrays in out.values():
            arrays["image"] = (arrays["image"] - np.float32(mean)) / np.float32(std)
    for arrays in out.values():
        if flatten:
            arrays["image"] = arrays["image"].reshape(arrays["image"].shape[0], -1)
        for v in arrays.values():
            v.setflags(write=False)
    num_classes = int(metadata.get("num_classes") or
                      1 + max(int(a["label"].max()) for a in out.values()))
    info = {"num_classes": num_classes, "mean": mean, "std": std, "pixel_max": pixel_max}
    return out, info


def load_image_dataset(name: str, *, image_size: Optional[int] = None, batch_size: int = 128,
                       seed: int = 0, data_dir: Optional[str] = None, flatten: bool = False,
                       center: bool = True) -> Datasets:
    """A classification dataset as ``tasks.Datasets`` with four splits.

    Batches are ``{"image": float32 [B, H, W, C] (or [B, H*W*C] if flatten), "label": int32 [B]}``;
    pixels scaled to [0, 1], then standardized with train statistics if ``center``.
    ``name``: one of :func:`dataset_names` or any TFDS dataset prepared in ``data_dir``
    (``name[/config][:version]``). The returned object also has ``num_classes``,
    ``input_shape`` (per example), ``mean`` and ``std`` (the standardization applied).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"dataset name must be a non-empty str, got {name!r}")
    if name in TEXT_DATASETS:
        raise ValueError(f"{name!r} is a text dataset; use load_text_dataset")
    _check_int("image_size", image_size, allow_none=True)
    _check_int("batch_size", batch_size)
    _check_int("seed", seed, minimum=0)
    data_dir = builders.resolve_data_dir(data_dir)
    arrays, info = _image_arrays(name, data_dir, None if image_size is None else int(image_size),
                                 bool(flatten), bool(center))
    splits = [Split(arrays[s], batch_size=batch_size, seed=_split_seed(seed, j), name=s)
              for j, s in enumerate(SPLIT_NAMES)]
    label = name if image_size is None else f"{name}_{image_size}x{image_size}"
    ds = Datasets(*splits, name=label)
    ds.num_classes = info["num_classes"]
    ds.input_shape = tuple(arrays["train"]["image"].shape[1:])
    ds.mean, ds.std = info["mean"], info["std"]
    return ds


# --- text ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _text_arrays(name: str, data_dir: str, seq_len: int) -> dict:
    splits, _ = _read_dataset(name, data_dir)
    blocks = splits["train"]["tokens"]
    if seq_len + 1 > blocks.shape[1]:
        raise ValueError(f"seq_len + 1 = {seq_len + 1} exceeds the stored block length "
                         f"{blocks.shape[1]}")
    parts = partition({"train": {"tokens": blocks}}, TEXT_TEST_FRACTION, TEXT_VALID_FRACTION)
    starts = np.arange(0, blocks.shape[1] - seq_len, seq_len)  # windows overlap by one token
    window = starts[:, None] + np.arange(seq_len + 1)[None, :]
    out = {}
    for split, (_, idx) in parts.items():
        tokens = blocks[idx][:, window].reshape(-1, seq_len + 1).astype(np.int32)
        tokens.setflags(write=False)
        out[split] = {"tokens": tokens}
    return out


def load_text_dataset(name: str = "python_docs", *, seq_len: int = 32, batch_size: int = 32,
                      seed: int = 0, data_dir: Optional[str] = None) -> Datasets:
    """A character-level language-modelling dataset as ``tasks.Datasets``.

    Batches are ``{"tokens": int32 [B, seq_len + 1]}`` (inputs ``tokens[:, :-1]``, targets
    ``tokens[:, 1:]``), windows of stride ``seq_len`` inside 2048-character blocks; whole blocks
    are assigned to splits (10% test, then 5% of the rest each to inner_valid and outer_valid). The returned object has
    ``vocab_size`` (see :mod:`tasks.datasets.text` for the vocabulary) and ``seq_len``.
    """
    if name not in TEXT_DATASETS:
        raise ValueError(f"unknown text dataset {name!r}; known: {list(TEXT_DATASETS)}")
    _check_int("seq_len", seq_len)
    _check_int("batch_size", batch_size)
    _check_int("seed", seed, minimum=0)
    data_dir = builders.resolve_data_dir(data_dir)
    arrays = _text_arrays(name, data_dir, int(seq_len))
    splits = [Split(arrays[s], batch_size=batch_size, seed=_split_seed(seed, j), name=s)
              for j, s in enumerate(SPLIT_NAMES)]
    ds = Datasets(*splits, name=f"{name}_seq{seq_len}")
    ds.vocab_size = text_lib.VOCAB_SIZE
    ds.seq_len = int(seq_len)
    return ds
