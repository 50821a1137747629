"""Data: the built-in default, and the tensorflow-datasets path without TensorFlow and without network.

MNIST is prepared in tfds's ``array_record`` format into a temporary folder from the first
examples of the four IDX files (tfds's own MNIST builder, its download and its TensorFlow-only
PNG encoding replaced by local files and PIL), then read back through ``load_mnist`` with
``JAXDYN_DATA_DIR=tfds``: the arrays must equal those of the IDX path, in the same order.
"""

import gzip
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from jaxdyn.datasets import loading as data
import importlib.util

pytestmark = pytest.mark.timeout(120)

N = 40  # examples per split in the prepared dataset

try:
    import tensorflow_datasets as tfds
except ImportError:  # the tfds extra is not installed: only its tests are skipped
    tfds = None
needs_tfds = pytest.mark.skipif(tfds is None, reason="tensorflow-datasets is not installed (pip install -e '.[tfds]')")


@pytest.fixture
def fresh_cache():
    """``load_mnist``'s per-process caches emptied before and after (no 40-example MNIST leaks)."""
    for fn in (data._load_float, data._load_tfds_split):
        fn.cache_clear()
    yield
    for fn in (data._load_float, data._load_tfds_split):
        fn.cache_clear()


def _prepare(idx_dir: str, tfds_dir: Path, n: int = N) -> None:
    """MNIST in tfds's array_record format, the first ``n`` examples of each split, no network."""
    from PIL import Image  # noqa: PLC0415 (lazy: the tfds extra, only for the tests that prepare a tfds folder)
    from tensorflow_datasets.image_classification import mnist as M  # noqa: PLC0415 (lazy: the tfds extra)

    raw = tfds_dir / "raw"
    raw.mkdir(parents=True)
    keys = {"train_data": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
            "test_data": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
    files = {}
    for k, name in keys.items():
        files[k] = raw / name[:-3]
        files[k].write_bytes(gzip.decompress(Path(idx_dir, name).read_bytes()))

    def generate(self, num_examples, data_path, label_path):
        images = np.frombuffer(Path(data_path).read_bytes()[16:16 + 784 * n], np.uint8).reshape(n, 28, 28)
        labels = np.frombuffer(Path(label_path).read_bytes()[8:8 + n], np.uint8)
        for i, (im, lab) in enumerate(zip(images, labels)):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            yield i, {"image": buf.getvalue(), "label": int(lab)}

    builder = tfds.builder("mnist", data_dir=str(tfds_dir), file_format="array_record")
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", lambda self, urls: files), \
            mock.patch.object(M.MNIST, "_generate_examples", generate):
        builder.download_and_prepare()
    assert builder.is_prepared()


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("JAXDYN_DATA_DIR", "JAXDYN_TFDS_DOWNLOAD")}
    env.update(extra)
    return env


def test_default_is_built_in_without_tfds_or_warnings(tmp_path):
    """No ``JAXDYN_DATA_DIR``, an empty home: the files built into jaxdyn, md5-checked, the official
    first labels, nothing imported from tensorflow-datasets or absl, nothing on stderr."""
    code = ("import sys\n"
            "from jaxdyn.datasets import loading as data\n"
            "x, y = data.load_mnist('test'); print(x.shape, x.dtype, y[:5].tolist())\n"
            "assert 'tensorflow_datasets' not in sys.modules and 'absl' not in sys.modules\n")
    env = _clean_env(HOME=str(tmp_path), TFDS_DATA_DIR=str(tmp_path / "empty"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(10000, 28, 28, 1) float32 [7, 2, 1, 0, 4]" in r.stdout
    assert r.stderr == ""
    assert sorted(p.name for p in data.MNIST_DIR.glob("*.gz")) == sorted(data.MNIST_MD5)


def test_built_in_files_are_md5_checked(tmp_path, monkeypatch, fresh_cache):
    """A damaged built-in file is caught by its md5 (the check covers the default source)."""
    for name in data.MNIST_FILES["test"]:
        (tmp_path / name).write_bytes((data.MNIST_DIR / name).read_bytes())
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 0xFF
    p.write_bytes(bytes(raw))
    monkeypatch.delenv("JAXDYN_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "MNIST_DIR", tmp_path)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*md5"):
        data.load_mnist("test")


@needs_tfds
def test_tfds_path_equals_idx_path(data_dir, tmp_path, monkeypatch, fresh_cache):
    _prepare(data_dir, tmp_path)
    monkeypatch.setenv("JAXDYN_DATA_DIR", "tfds")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    for split in ("test", "train"):
        x, y = data.load_mnist(split)
        xi, yi = data.load_mnist(split, data_dir=data_dir)
        assert x.shape == (N, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
        # tfds stored them shuffled: the official order is restored
        np.testing.assert_array_equal(y, yi[:N])
        np.testing.assert_array_equal(x, xi[:N])
        assert not x.flags.writeable
    x64, _ = data.load_mnist("test", dtype=np.float64)
    assert x64.dtype == np.float64


@needs_tfds
def test_tfds_path_works_without_tensorflow(data_dir, tmp_path):
    """The reading path needs no TensorFlow (nor importlib_resources, which tfds' builders need
    only to prepare data): checked in a fresh process where neither is imported."""

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed here")
    _prepare(data_dir, tmp_path)
    code = ("import sys; sys.modules['importlib_resources'] = None\n"
            "from jaxdyn.datasets import loading as data\n"
            "x, y = data.load_mnist('test'); print(x.shape, y[:5].tolist())\n"
            "assert 'tensorflow' not in sys.modules\n")
    env = _clean_env(JAXDYN_DATA_DIR="tfds", TFDS_DATA_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"({N}, 28, 28, 1) [7, 2, 1, 0, 4]" in r.stdout


def _load_in_subprocess(tmp_path, **extra_env):
    env = _clean_env(JAXDYN_DATA_DIR="tfds", TFDS_DATA_DIR=str(tmp_path / "empty"), **extra_env)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", "from jaxdyn.datasets import loading as data; data.load_mnist('test')"],
                       env=env, capture_output=True, text=True, timeout=60)
    return r, time.perf_counter() - t0


@needs_tfds
def test_no_tfds_data_fails_within_seconds(tmp_path):
    """``JAXDYN_DATA_DIR=tfds`` and nothing prepared: a FileNotFoundError naming JAXDYN_DATA_DIR at
    once, no download attempt."""
    r, dt = _load_in_subprocess(tmp_path)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("FileNotFoundError") and "JAXDYN_DATA_DIR" in last and "JAXDYN_TFDS_DOWNLOAD" in last
    assert dt < 15, dt
    assert not (tmp_path / "empty" / "downloads").exists()  # nothing was fetched


@needs_tfds
def test_download_opt_in_needs_tensorflow(tmp_path):
    """``JAXDYN_TFDS_DOWNLOAD=1`` without TensorFlow says so at once (tfds's MNIST builder needs it)."""

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed: the opt-in would really download")
    r, dt = _load_in_subprocess(tmp_path, JAXDYN_TFDS_DOWNLOAD="1")
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("FileNotFoundError") and "tensorflow" in last and "JAXDYN_DATA_DIR" in last
    assert dt < 15, dt


def test_no_tfds_installed_names_the_extra(monkeypatch, fresh_cache):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(FileNotFoundError, match=r"tensorflow-datasets, which cannot be imported.*jaxdyn\[tfds\]"):
        data.load_mnist("test", data_dir="tfds")


def test_empty_data_dir_env_means_unset(monkeypatch, tmp_path, fresh_cache):
    """``JAXDYN_DATA_DIR=`` (empty) is treated as unset: the built-in files, not the current folder."""
    monkeypatch.setenv("JAXDYN_DATA_DIR", "")
    monkeypatch.chdir(tmp_path)
    x, y = data.load_mnist("test")
    assert x.shape == (10000, 28, 28, 1)
    assert data.load_mnist("test", data_dir=data.MNIST_DIR)[0] is x


def test_data_dir_is_a_file(tmp_path):
    f = tmp_path / "mnist.gz"
    f.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="JAXDYN_DATA_DIR"):
        data.load_mnist("test", data_dir=f)


def test_truncated_gzip_names_file(tmp_path, data_dir, monkeypatch):
    for name in data.MNIST_FILES["test"]:
        (tmp_path / name).write_bytes(Path(data_dir, name).read_bytes())
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:1000])
    monkeypatch.setattr(data, "MNIST_MD5", {})  # get past the md5 to the gzip check
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*gzip"):
        data.load_mnist("test", data_dir=tmp_path)
