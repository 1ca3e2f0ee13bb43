"""Read prepared TFDS datasets as NumPy, without TensorFlow.

:func:`read_tfds_directory` reads every split of a prepared dataset: ``array_record`` splits
through ``builder.as_data_source`` (TFDS's random-access data source, raw records), and the
``tfrecord`` format of datasets prepared by TFDS users with TensorFlow through a small record
reader. Records are serialized ``tf.train.Example`` protos; fixed-shape numeric ``Tensor``
features are decoded column-wise, everything else (e.g. PNG ``Image`` features of TFDS's own
``mnist``/``cifar10``) by TFDS's NumPy decoder. :func:`find_prepared` locates
``name[/config][:version]`` under a data_dir.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from typing import Any, Optional

import numpy as np
from tensorflow_datasets.core import decode as tfds_decode
from tensorflow_datasets.proto import tf_example_pb2

from tasks.datasets.builders import tfds  # imported there with a clear error message

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


def _fast_tensor_specs(features) -> Optional[dict]:
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
        if not isinstance(f, Tensor):
            return None
        shape: Any = f.shape  # tfds' annotations of Tensor.shape / np_dtype are looser than the values
        np_dtype: Any = f.np_dtype
        if shape is None or any(d is None for d in shape):
            return None
        dtype = np.dtype(np_dtype)
        encoding = getattr(f, "_encoding", None)
        if dtype.kind not in "biuf" or dtype == np.uint64 or encoding not in (
                Encoding.NONE, Encoding.BYTES, Encoding.ZLIB):
            return None
        specs[key] = (tuple(shape), dtype, encoding)
    return specs


def _decode_records(records: list, features, split: str) -> dict:
    """Serialized ``tf.train.Example`` records -> ``{key: [N, ...] array}``.

    Fixed-shape numeric Tensor features are decoded column-wise (one protobuf parse per record,
    one ``np.frombuffer``/``np.array`` per column); other features go through TFDS's
    ``features.deserialize_example_np`` (NumPy, no TensorFlow) and are stacked.
    """
    if not records:
        raise ValueError(f"split {split!r} is empty")
    specs = _fast_tensor_specs(features)
    if specs is None:
        return _stack([features.deserialize_example_np(r) for r in records], split)
    maps = [tf_example_pb2.Example.FromString(r).features.feature for r in records]  # pyright: ignore[reportAttributeAccessIssue]  (generated protobuf module)
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
    builder = tfds.builder_from_directory(path)
    info = builder.info
    fmt = str(getattr(info.file_format, "value", info.file_format))
    splits = {}
    for split in info.splits:
        if fmt == "array_record":
            source = builder.as_data_source(
                split=split, deserialize_method=tfds_decode.DeserializeMethod.RAW_BYTES)  # pyright: ignore[reportCallIssue]  (tfds forwards **kwargs)
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


