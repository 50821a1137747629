"""MNIST loading from the IDX files, the binary task, subsets."""

import gzip
import hashlib
import shutil

import numpy as np
import pytest

from jaxdyn.datasets import loading as data

pytestmark = pytest.mark.timeout(120)


def test_load_mnist_shapes_and_range(data_dir):
    x, y = data.load_mnist("train", data_dir=data_dir)
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert sorted(np.unique(y)) == list(range(10))
    # the first training labels of MNIST are well known
    np.testing.assert_array_equal(y[:8], [5, 0, 4, 1, 9, 2, 1, 3])
    xt, yt = data.load_mnist("test", data_dir=data_dir)
    assert xt.shape == (10000, 28, 28, 1) and yt.shape == (10000,)
    np.testing.assert_array_equal(yt[:5], [7, 2, 1, 0, 4])


def test_load_is_cached_and_env_var(data_dir, monkeypatch):
    a = data.load_mnist("test", data_dir=data_dir)
    monkeypatch.setenv("JAXDYN_DATA_DIR", data_dir)
    b = data.load_mnist("test")
    assert a[0] is b[0] and a[1] is b[1]
    assert not a[0].flags.writeable
    c = data.load_mnist("test", data_dir=data_dir, dtype=np.float64)
    assert c[0].dtype == np.float64


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("valid", data_dir="/nonexistent")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz.*JAXDYN_DATA_DIR"):
        data.load_mnist("test", data_dir=tmp_path)


def test_bad_md5(tmp_path, data_dir):
    for name in data.MNIST_FILES["test"]:
        shutil.copy(f"{data_dir}/{name}", tmp_path / name)
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[100] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*md5"):
        data.load_mnist("test", data_dir=tmp_path)


def test_bad_header(tmp_path, monkeypatch):
    """An IDX file whose header does not match its body is rejected, naming the file."""
    for name, body in [("t10k-images-idx3-ubyte.gz", b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3),
                       ("t10k-labels-idx1-ubyte.gz", b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))]:
        (tmp_path / name).write_bytes(gzip.compress(body))
    # these are not the official files: skip the md5 check for them
    monkeypatch.setattr(data, "MNIST_MD5", {})
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*header"):
        data.load_mnist("test", data_dir=tmp_path)


def test_binary_task():
    x = np.arange(6, dtype=np.float32).reshape(6, 1)
    y = np.array([3, 5, 1, 3, 5, 7], np.int32)
    xb, yb = data.binary_task(x, y, classes=(3, 5))
    np.testing.assert_array_equal(xb[:, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(yb, [1, -1, 1, -1])
    assert yb.dtype == np.float32
    with pytest.raises(ValueError, match="two different digits"):
        data.binary_task(x, y, classes=(3, 3))


def test_subset_deterministic():
    x = np.arange(100).reshape(100, 1)
    y = np.arange(100)
    a = data.subset(x, y, 10, seed=1)
    b = data.subset(x, y, 10, seed=1)
    c = data.subset(x, y, 10, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[0][:, 0], a[1])  # pairs stay together, original order
    assert np.all(np.diff(a[1]) > 0)
    assert data.subset(x, y, None)[0] is x
    with pytest.raises(ValueError):
        data.subset(x, y, 0)


def test_md5_table_matches_files(data_dir):
    for name, want in data.MNIST_MD5.items():
        with open(f"{data_dir}/{name}", "rb") as fh:
            assert hashlib.md5(fh.read()).hexdigest() == want
