"""MNIST loading, the binary (two-digit) task and deterministic subsets.

Images come back as numpy arrays ``x: [N, 28, 28, 1]`` in [0, 1] and labels ``y: int32 [N]``.

Sources (``docs/spec.md``, "Data"), the first that applies:

1. the ``data_dir`` argument, else the environment variable ``JAXDYN_DATA_DIR``: a folder with the
   four official IDX ``.gz`` files;
2. otherwise the same four files built into jaxdyn (:data:`MNIST_DIR`, installed with the package:
   nothing to download or configure).

Both are read the same way: the count and shape come from each IDX header and every file is
checked against the official md5 sum (once per file and process).

``data_dir="tfds"`` (or ``JAXDYN_DATA_DIR=tfds``) reads instead MNIST as prepared by
tensorflow-datasets (the ``tfds`` extra; imported only then) in its data folder (``TFDS_DATA_DIR``,
default ``~/tensorflow_datasets``). TensorFlow is not needed to read the ``array_record`` format
(``builder.as_data_source``); data prepared in the ``tfrecord`` format needs TensorFlow. Nothing is
downloaded unless ``JAXDYN_TFDS_DOWNLOAD=1`` (tfds's MNIST builder then needs TensorFlow to prepare
the data). tfds stores the examples shuffled by a hash of their index; they are put back in the
official order, so every source gives the same arrays.

Decoded arrays are cached in-process, so repeated loads are free.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import importlib.util

__all__ = ["load_mnist", "fingerprint", "binary_task", "subset", "MNIST_DIR", "MNIST_FILES", "MNIST_MD5", "TFDS"]

#: the folder of the four official MNIST files built into jaxdyn (package data)
MNIST_DIR = Path(__file__).resolve().parent / "mnist"

#: the ``data_dir`` value (or ``JAXDYN_DATA_DIR``) that selects tensorflow-datasets
TFDS = "tfds"

#: split -> (images file, labels file)
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: official md5 sums of the four files
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

_HOWTO = (
    f"the four official MNIST files ({', '.join(MNIST_MD5)}) are built into jaxdyn ({MNIST_DIR}); reinstall "
    "jaxdyn if they are missing, or set JAXDYN_DATA_DIR (or pass data_dir=) to a folder holding them; "
    "JAXDYN_DATA_DIR=tfds reads MNIST prepared by tensorflow-datasets (array_record format) in TFDS_DATA_DIR"
)


def load_mnist(split: str = "train", *, data_dir=None, dtype=np.float32):
    """Load an MNIST split.

    Args:
      split: ``"train"`` (60,000 examples) or ``"test"`` (10,000).
      data_dir: folder with the four IDX ``.gz`` files, or ``"tfds"`` for the MNIST prepared by
        tensorflow-datasets; default env ``JAXDYN_DATA_DIR``, then the files built into jaxdyn
        (:data:`MNIST_DIR`).
      dtype: floating dtype of the images.

    Returns:
      ``(x, y)``: ``x`` of shape ``[N, 28, 28, 1]`` with values in [0, 1] (pixel / 255), ``y``
      int32 of shape ``[N]``. The arrays are read-only views of a per-process cache; copy them
      before writing.

    Example::

        x, y = jaxdyn.load_mnist("test")   # (10000, 28, 28, 1) float32, (10000,) int32
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    return _load_float(_source(data_dir), split, np.dtype(dtype).name)


def _source(data_dir) -> str:
    """Where :func:`load_mnist` reads: a resolved folder of IDX files, or ``"tfds"``."""
    if data_dir is None:
        data_dir = os.environ.get("JAXDYN_DATA_DIR") or MNIST_DIR
    return TFDS if str(data_dir) == TFDS else str(Path(data_dir).expanduser().resolve())


def fingerprint(data_dir=None) -> dict:
    """The md5 of the data :func:`load_mnist` would read (same ``data_dir`` resolution), for the
    caches' keys: ``{"source": "idx", "md5": {file: md5}}`` (a missing file: ``None``), or for
    tensorflow-datasets the md5 of the decoded uint8 arrays of both splits (loaded for it; ``None``
    when they cannot be). Never raises for missing data: a run that needs the data fails there."""
    source = _source(data_dir)
    if source == TFDS:
        try:
            md5 = {split: _md5_arrays(*_load_tfds_split(split)) for split in MNIST_FILES}
        except (FileNotFoundError, ValueError, ImportError):
            md5 = None
        return {"source": TFDS, "md5": md5}
    md5 = {}
    for name in (f for pair in MNIST_FILES.values() for f in pair):
        path = Path(source) / name
        md5[name] = _md5_file(str(path), *_stamp(path)) if path.is_file() else None
    return {"source": "idx", "md5": md5}


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=None)
def _md5_file(path: str, size: int, mtime_ns: int) -> str:  # cached per file version
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _md5_arrays(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.md5(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).astype("<i4").tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _load_float(source: str, split: str, dtype_name: str) -> tuple[np.ndarray, np.ndarray]:
    if source == TFDS:
        images, labels = _load_tfds_split(split)
    else:
        images, labels = _load_idx_split(source, split)
    x = (images.astype(dtype_name) / np.asarray(255, dtype_name))[..., None]
    x.setflags(write=False)
    return x, labels


@functools.lru_cache(maxsize=None)
def _load_idx_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_name, lab_name = MNIST_FILES[split]
    images = _read_idx(Path(data_dir) / img_name, ndim=3)
    labels = _read_idx(Path(data_dir) / lab_name, ndim=1).astype(np.int32)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{img_name} holds {images.shape[0]} images but {lab_name} holds {labels.shape[0]} labels"
        )
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{img_name}: expected 28x28 images, header says {images.shape[1:]}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes after checking its md5 (if it is known)."""
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file not found: {path}; {_HOWTO}")
    raw = path.read_bytes()
    want = MNIST_MD5.get(path.name)
    if want is not None:
        got = _md5_file(str(path), *_stamp(path))  # one md5 per file version, shared with fingerprint()
        if got != want:
            raise ValueError(f"{path}: md5 {got} does not match the official sum {want}")
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a valid gzip file ({e})") from e
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: file too short for an IDX header")
    zero, dtype_code, nd = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype_code != 0x08 or nd != ndim:
        raise ValueError(
            f"{path}: bad IDX header (magic {data[:4].hex()}; expected unsigned bytes, {ndim} dims)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header announces shape {shape} but holds {body.size} bytes")
    return body.reshape(shape).copy()


@functools.lru_cache(maxsize=None)
def _load_tfds_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415 (lazy: tfds is an optional extra)
    except ImportError as e:
        raise FileNotFoundError(f"data_dir='tfds' needs tensorflow-datasets, which cannot be imported ({e}): "
                                f"pip install 'jaxdyn[tfds]'; {_HOWTO}") from None
    builder = tfds.builder("mnist", data_dir=os.environ.get("TFDS_DATA_DIR") or None)  # read now, not at import
    if not builder.is_prepared():
        if os.environ.get("JAXDYN_TFDS_DOWNLOAD") != "1":
            raise FileNotFoundError(f"tensorflow-datasets has no prepared MNIST in "
                                    f"{builder.data_dir} (nothing is downloaded unless JAXDYN_TFDS_DOWNLOAD=1); "
                                    f"{_HOWTO}")

        if importlib.util.find_spec("tensorflow") is None:  # tfds's MNIST builder decodes and encodes with it
            raise FileNotFoundError("JAXDYN_TFDS_DOWNLOAD=1: tensorflow-datasets needs tensorflow to prepare MNIST "
                                    f"(pip install tensorflow), which is not installed; {_HOWTO}")
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception as e:  # noqa: BLE001 — no network, no tensorflow, ...
            raise FileNotFoundError(f"tensorflow-datasets could not download and prepare MNIST "
                                    f"({type(e).__name__}: {e}); {_HOWTO}") from None
    try:
        source = builder.as_data_source(split=split)
        items = [source[i] for i in range(len(source))]
        images = np.stack([np.asarray(r["image"], np.uint8)[..., 0] for r in items])
        labels = np.asarray([r["label"] for r in items], np.int32)
    except NotImplementedError:  # prepared as tfrecord: only tf.data reads it
        try:
            ds = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
        except Exception as e:  # noqa: BLE001 — tensorflow missing
            raise FileNotFoundError(f"the MNIST prepared by tensorflow-datasets in {builder.data_dir} is in the "
                                    f"tfrecord format, which needs tensorflow ({type(e).__name__}: {e}); "
                                    f"{_HOWTO}") from None
        images = np.asarray(ds["image"], np.uint8)[..., 0]
        labels = np.asarray(ds["label"], np.int32)
    # tfds wrote example k at the rank of md5(split + str(k)) (tfds.core.hashing, its shuffler):
    # undo it, so that subsets are the same digits as with the IDX files
    from tensorflow_datasets.core import hashing  # noqa: PLC0415 (lazy: tfds is an optional extra)

    hasher = hashing.Hasher(split)
    order = sorted(range(len(labels)), key=hasher.hash_key)
    inverse = np.empty(len(order), np.int64)
    inverse[order] = np.arange(len(order))
    images, labels = images[inverse], labels[inverse]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def binary_task(x, y, classes=(3, 5)):
    """Keep two digit classes for a binary (sigmoid) task.

    Args:
      x: ``[N, ...]`` images; y: ``[N]`` integer digit labels.
      classes: ``(a, b)``; digit ``a`` gets label ``+1``, digit ``b`` gets ``-1``.

    Returns:
      ``(x_sub, y_pm)`` with ``y_pm`` float (same dtype as ``x``) in {+1, -1}, in the original order.
    """
    a, b = (int(c) for c in classes)
    if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
        raise ValueError(f"binary classes must be two different digits 0-9, got {tuple(classes)}")
    y = np.asarray(y)
    keep = (y == a) | (y == b)
    x = np.asarray(x)
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    y_pm = np.where(y[keep] == a, 1.0, -1.0).astype(dt)
    return x[keep], y_pm


def subset(x, y, n, seed=0):
    """A fixed, deterministic subset of ``n`` examples (a seeded permutation, then sorted back
    into the original order). ``n=None`` or ``n >= N`` returns the data unchanged."""
    N = len(x)
    if n is None or n >= N:
        return x, y
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    idx = np.sort(np.random.default_rng(seed).permutation(N)[:n])
    return np.asarray(x)[idx], np.asarray(y)[idx]
