"""Downstream (real-image) data sets as arrays, through TFDS, working offline.

Choice: ``tfds.data_source`` over ``array_record`` files, which needs no TensorFlow, rather
than ``tfds.load`` (tf.data, TensorFlow: an optional ``[tf]`` extra). The core path never
imports TensorFlow.

* ``fashion_mnist``: a TFDS builder shipped here, ``fashion_mnist_local``, prepares the
  real Fashion-MNIST from its idx files (Debian's ``dataset-fashion-mnist`` package puts
  them in ``/usr/share/datasets/fashion-mnist/``; ``source_dir`` moves that). A standard
  TFDS ``fashion_mnist`` prepared as array_record in ``data_dir`` is used instead if present.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images) as the TFDS builder
  ``sklearn_digits``: always available, for tests.
* any other TFDS name (``cifar10``, ``cifar100``, ...): read from ``data_dir`` where it was
  prepared as array_record (on a machine with internet:
  ``tfds.builder(NAME, data_dir=DIR, file_format='array_record').download_and_prepare()``).

A missing set raises :class:`fractaljax.errors.DataError` saying how to get it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import io
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from fractaljax import augment
from fractaljax.errors import DataError

try:
    import tensorflow_datasets as tfds
except ImportError:  # an image without TFDS (e.g. a bare accelerator machine): see load()
    tfds = None

# Where prepared data sets live unless ``downstream.data_dir`` says: TFDS's own default
# ($TFDS_DATA_DIR, else ~/tensorflow_datasets), so one prepared copy serves both.
DEFAULT_DATA_DIR = os.environ.get("TFDS_DATA_DIR") or os.path.join(
    os.path.expanduser("~"), "tensorflow_datasets"
)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: str) -> np.ndarray:
    """An idx file (optionally gzipped) as a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_arrays(split: str, source_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's ``split`` from its idx files: ``uint8[N, 28, 28, 1]``, ``int[N]``."""
    images, labels = (_read_idx(os.path.join(source_dir, f)) for f in FASHION_FILES[split])
    return images[..., None], labels


# scikit-learn's digits: the first 1,297 images train, the last 500 test.
DIGITS_SPLITS = {"train": slice(0, 1297), "test": slice(1297, None)}


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits' ``split``: ``uint8[N, 8, 8, 1]`` (0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    return images[DIGITS_SPLITS[split]], d.target[DIGITS_SPLITS[split]]


def _digits_keys(split: str) -> range:
    return range(1797)[DIGITS_SPLITS[split]]


def tfds_order(keys, split: str) -> np.ndarray:
    """The order in which TFDS stores a split's examples: sorted by the md5 of the split
    name and the example's key (``tensorflow_datasets.core.hashing``; a stable order that
    TFDS changes only with a major version). Indices into ``keys``."""
    digest = lambda k: hashlib.md5(f"{split}{k}".encode()).hexdigest()
    return np.asarray(sorted(range(len(keys)), key=lambda i: digest(keys[i])), np.int64)


if tfds is not None:  # the offline builders, registered with TFDS when it is here

    def _features(shape: tuple[int, int, int], num_classes: int):
        # Tensor rather than Image: Image's PNG encoding needs TensorFlow.
        return tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=num_classes),
            }
        )

    class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
        """Fashion-MNIST (Xiao et al. 2017) from local idx files; 60k train, 10k test, 28x28."""

        VERSION = tfds.core.Version("1.0.0")
        source_dir = FASHION_MNIST_DIR  # set before preparing to read another directory

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=_features((28, 28, 1), 10),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in FASHION_FILES}

        def _generate_examples(self, split):
            images, labels = fashion_mnist_arrays(split, self.source_dir)
            for i, (img, lab) in enumerate(zip(images, labels)):
                yield i, {"image": img, "label": int(lab)}

    class SklearnDigits(tfds.core.GeneratorBasedBuilder):
        """scikit-learn's 8x8 digits: 1,797 images; the first 1,297 train, the last 500 test."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=_features((8, 8, 1), 10), supervised_keys=("image", "label")
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            images, labels = digits_arrays(split)
            # Keys are indices into the 1,797 images (they decide TFDS's stored order).
            for key, img, lab in zip(_digits_keys(split), images, labels):
                yield key, {"image": img, "label": int(lab)}


# Downstream name -> the builder shipped here that makes it offline.
LOCAL_BUILDERS = {"fashion_mnist": "fashion_mnist_local", "digits": "sklearn_digits"}


def fashion_mnist_available(source_dir: str = FASHION_MNIST_DIR) -> bool:
    return all(
        os.path.exists(os.path.join(source_dir, f)) for fs in FASHION_FILES.values() for f in fs
    )


@contextlib.contextmanager
def _quiet_tfds():
    """Hide TFDS's absl warnings about version folders it probes and does not find."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _prepared(name: str, data_dir: str) -> bool:
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception:
        return False
    return (
        builder.is_prepared()
        and builder.info.file_format is not None
        and (builder.info.file_format.value == "array_record")
    )


def _missing_fashion(src: str) -> str:
    return (
        f"dataset fashion_mnist: idx files not found in {src}; install them with "
        f"'apt-get install -y dataset-fashion-mnist' (Debian), set "
        f"downstream.source_dir to a folder holding them, or use "
        f"downstream.dataset=digits"
    )


def prepare(name: str, data_dir: str, source_dir: str | None = None) -> str:
    """Make ``name`` readable from ``data_dir``; return the TFDS builder name to read
    (without TFDS: check that the offline set's files are there, return ``name``)."""
    if tfds is None:
        _load_without_tfds(name, "test", source_dir, 1)
        return name
    with _quiet_tfds():
        return _prepare(name, data_dir, source_dir)


def _prepare(name: str, data_dir: str, source_dir: str | None) -> str:
    if name not in LOCAL_BUILDERS:
        if _prepared(name, data_dir):
            return name
        raise DataError(
            f"dataset {name!r} is not prepared in {data_dir} (as array_record); on a machine "
            f'with internet run: python -c "import tensorflow_datasets as tfds; '
            f"tfds.builder('{name}', data_dir='{data_dir}', file_format='array_record')"
            f".download_and_prepare()\" (needs pip install '.[tf]'), or set "
            f"downstream.data_dir; offline sets here: fashion_mnist, digits"
        )
    if _prepared(name, data_dir):  # a standard TFDS copy wins when it is there
        return name
    builder_name = LOCAL_BUILDERS[name]
    if _prepared(builder_name, data_dir):
        return builder_name
    builder = tfds.builder(builder_name, data_dir=data_dir, file_format="array_record")
    if name == "fashion_mnist":
        src = source_dir or FASHION_MNIST_DIR
        if not fashion_mnist_available(src):
            raise DataError(_missing_fashion(src))
        FashionMnistLocal.source_dir = src
    try:
        os.makedirs(data_dir, exist_ok=True)
        # Two processes preparing one directory at once (a probe and a fine-tuning started
        # together) would race on TFDS's final rename: the second waits, then finds it done.
        with open(os.path.join(data_dir, f".{builder_name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _prepared(builder_name, data_dir):
                return builder_name
            # One line instead of TFDS's progress bars (carriage returns) and messages.
            tfds.disable_progress_bar()
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare()
    except OSError as e:
        raise DataError(
            f"downstream.data_dir={data_dir}: cannot prepare {name} there ({e}); "
            f"pick a writable directory"
        ) from None
    finally:
        tfds.enable_progress_bar()
    print(f"prepared {name} once, as TFDS {builder_name} in {data_dir}", flush=True)
    return builder_name


@dataclasses.dataclass(frozen=True)
class Split:
    """A labelled split held in memory: ``images uint8[N, H, W, C]``, ``labels int32[N]``."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int


def load(
    name: str,
    split: str,
    data_dir: str | None = None,
    source_dir: str | None = None,
    limit: int | None = None,
) -> Split:
    """Read a split as arrays (the first ``limit`` examples if given).

    Without TFDS installed, the two offline sets are read straight from their files: the
    same arrays in the same order (:func:`tfds_order`) as through their TFDS builders, so
    results do not depend on whether TFDS is installed; other sets need TFDS.
    """
    if tfds is None:
        return _load_without_tfds(name, split, source_dir, limit)
    data_dir = data_dir or DEFAULT_DATA_DIR
    builder_name = prepare(name, data_dir, source_dir)
    try:
        with _quiet_tfds():
            source = tfds.data_source(builder_name, split=split, data_dir=data_dir)
            info = tfds.builder(builder_name, data_dir=data_dir).info
    except (ValueError, KeyError) as e:
        raise DataError(f"dataset {name}: no split {split!r} ({e})") from None
    n = len(source) if limit is None else min(limit, len(source))
    rows = source.__getitems__(list(range(n)))
    images = np.stack([r["image"] for r in rows]).astype(np.uint8)
    labels = np.asarray([r["label"] for r in rows], np.int32)
    return Split(images, labels, info.features["label"].num_classes)


def _load_without_tfds(name: str, split: str, source_dir: str | None, limit: int | None) -> Split:
    if name == "fashion_mnist":
        src = source_dir or FASHION_MNIST_DIR
        if not fashion_mnist_available(src):
            raise DataError(_missing_fashion(src))
        images, labels = fashion_mnist_arrays(split, src)
        order = tfds_order(range(len(labels)), split)
    elif name == "digits":
        images, labels = digits_arrays(split)
        order = tfds_order(_digits_keys(split), split)
    else:
        raise DataError(
            f"dataset {name!r} needs tensorflow-datasets (pip install tensorflow-datasets); "
            "without it only fashion_mnist and digits are read"
        )
    order = order[: len(order) if limit is None else limit]  # TFDS's order, as through it
    return Split(images[order].astype(np.uint8), np.asarray(labels[order], np.int32), 10)


def to_model_input(
    images_u8: np.ndarray | jax.Array, size: int, channels: int = 3, method: str = "bilinear"
) -> jax.Array:
    """``uint8[N, H, W, C]`` -> ``float32[N, size, size, channels]`` in [0, 1]: grey
    replicated to ``channels``, resized with ``method`` as every other path resizes
    (:func:`fractaljax.augment.to_size`; the fine-tuning config's interpolation); the
    normalisation is left to the fine-tuning step and the probes."""
    x = jnp.asarray(images_u8, jnp.float32) / 255.0
    if x.shape[-1] == 1 and channels == 3:
        x = jnp.repeat(x, 3, -1)
    return augment.to_size(x, size, method)


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Labelled arrays on the device as a source for ``train.make_train_step``: the batch at
    ``step`` is a pure function of (key, step), like the synthetic sources."""

    images: jax.Array  # float32[N, H, W, C] in [0, 1]
    labels: jax.Array  # int32[N]
    num_classes: int
    name: str = "arrays"
    gray: bool = False  # every image's channels equal (Source.gray): crop one channel

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def arrays(self) -> dict[str, jax.Array]:
        """The arrays, passed to jitted programs as an argument (as a synthetic source's)."""
        return {"images": self.images, "labels": self.labels}

    def with_arrays(self, arrays: dict[str, jax.Array]) -> ArraySource:
        """This source reading ``arrays`` (its own, traced inside a jitted function)."""
        return dataclasses.replace(self, images=arrays["images"], labels=arrays["labels"])

    def program_key(self) -> tuple:
        """All that a program drawing from this source depends on besides the arrays'
        values: runs on equal keys share compiled steps (``train.kept``)."""
        shapes = [(a.shape, str(a.dtype)) for a in (self.images, self.labels)]
        return ("ArraySource", self.name, self.num_classes, self.gray, *shapes)

    def batch(self, key: jax.Array, step, batch_size: int):
        idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, len(self.labels))
        return self.images[idx], self.labels[idx]
