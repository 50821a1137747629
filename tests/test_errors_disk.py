"""Nothing half-written: every result, piece, checkpoint, log line and figure is
written to a temporary file in its folder and ``os.replace``-d into place; a full disk (ENOSPC)
or an unwritable file ends a command with one ``error:`` line naming the file, exit code 1, and
what was written before intact and readable — and the same command, once there is room, resumes.

A real tiny filesystem (tmpfs, mounted when the test may: root on Linux; skipped otherwise) and a
portable stand-in (a write that raises ``OSError(ENOSPC)``)."""

import errno
import json
import os
import subprocess
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from jaxdyn.cli import app as cli  # noqa: E402

from jaxdyn._internal import results
from jaxdyn.experiments import _common as C  # noqa: E402
from jaxdyn.training import checkpoint  # noqa: E402
from jaxdyn.experiments import load

pytestmark = pytest.mark.timeout(300)

SWEEP = ["kappa-sweep", "--scale", "tiny", "--n-samples", "2", "--no-progress"]


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".tmp" in p.name], "a temporary file was left behind"


def _readable(out: Path) -> None:
    """Every JSON file parses and every PNG decodes."""
    for p in out.rglob("*.json"):
        if p.is_file():
            json.loads(p.read_text())
    for p in out.rglob("*.png"):
        if p.is_file():
            assert mpimg.imread(p).size > 0


class FullDisk:
    """``open`` for ``jaxdyn._internal.results`` that raises ENOSPC (after writing some bytes) for the
    temporary files of targets whose name contains ``match``, from the ``after``-th on."""

    def __init__(self, match: str, after: int = 1):
        self.match, self.after, self.seen = match, after, 0

    def __call__(self, file, mode="r", *args, **kw):
        fh = open(file, mode, *args, **kw)
        if "w" in mode and self.match in Path(file).name:
            self.seen += 1
            if self.seen >= self.after:
                fh.write(b"partial")
                fh.close()
                raise OSError(errno.ENOSPC, "No space left on device")
        return fh


def test_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    results.write_json_atomic(path, {"v": 1})
    monkeypatch.setattr(results, "open", FullDisk("r.json"), raising=False)
    with pytest.raises(results.WriteError, match=r"cannot write .*r\.json: No space left on device \(ENOSPC\)"):
        results.write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    _no_temp_files(tmp_path)


def test_figure_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "fig.png"
    fig = plt.figure(figsize=(2, 2))
    C.save_figure(fig, path)
    before = path.read_bytes()

    def savefig_then_disk_full(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG half")  # matplotlib had written part of the file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig_then_disk_full)
    with pytest.raises(results.WriteError, match="fig.png"):
        C.save_figure(plt.figure(figsize=(2, 2)), path)
    assert path.read_bytes() == before
    _no_temp_files(tmp_path)


def test_metrics_log_line_is_whole_or_absent(tmp_path, monkeypatch):
    checkpoint.append_metrics(tmp_path, {"epoch": 1, "loss": 0.5})
    monkeypatch.setattr(results, "open", FullDisk("metrics"), raising=False)
    with pytest.raises(results.WriteError):
        checkpoint.append_metrics(tmp_path, {"epoch": 2, "loss": 0.25})
    assert checkpoint.read_metrics(tmp_path) == [{"epoch": 1, "loss": 0.5}]


@pytest.mark.slow  # ~30 s: a clean, a failed and a resumed sweep; test_real_full_disk is the default one
def test_full_disk_mid_sweep_then_resume(tiny_env, monkeypatch, capsys):
    """The second β's piece hits a full disk: one line, exit 1, the first piece kept; with room
    again the same command resumes and gives the results of an uninterrupted run."""
    clean, out = tiny_env / "disk-clean", tiny_env / "disk-full"
    cmd = SWEEP + ["--betas", "1e-3,1e-1"]
    assert cli.main(cmd + ["--out", str(clean)]) == 0
    capsys.readouterr()
    with monkeypatch.context() as mp:
        mp.setattr(results, "open", FullDisk("beta=", after=2), raising=False)
        assert cli.main(cmd + ["--out", str(out)]) == 1
    line = _one_error_line(capsys)
    assert "No space left on device" in line and "beta=0.1" in line and "intact" in line
    assert [p.name for p in (out / "pieces").iterdir()] == ["beta=0.001.json"]
    _readable(out)
    _no_temp_files(out)
    assert cli.main(cmd + ["--out", str(out)]) == 0
    a, b = (json.loads((d / "kappa_sweep.json").read_text()) for d in (clean, out))
    strip = lambda r: [{k: v for k, v in row.items() if k != "seconds"} for row in r["rows"]]  # noqa: E731
    assert strip(a) == strip(b) and a["verdict"] == b["verdict"]


TRAIN = ["train", "--model", "mlp3", "--width", "0.0625", "--n-train", "256", "--batch-size", "64", "--n-test", "50",
         "--n-eval-robust", "0", "--epochs", "1", "--no-progress"]


@pytest.mark.slow  # ~15 s (a tiny training, twice); checkpoints are written by the same helper as the tests above
def test_training_on_a_full_disk(tmp_path, monkeypatch, capsys, data_dir):
    """``train``: the finished model cannot be written — one line naming ``final.msgpack``, exit 1,
    the checkpoint, config and metrics intact; with room again the same command finishes."""
    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(results, "open", FullDisk("final.msgpack"), raising=False)
        assert cli.main(TRAIN + ["--out", str(out), "--data-dir", data_dir]) == 1
    line = _one_error_line(capsys)
    assert "final.msgpack" in line and "No space left on device" in line
    assert not (out / "final.msgpack").exists() and checkpoint.read_metrics(out)
    _readable(out)
    _no_temp_files(out)
    assert cli.main(TRAIN + ["--out", str(out), "--data-dir", data_dir]) == 0
    assert (out / "final.msgpack").exists()


@pytest.fixture
def stand_in(monkeypatch):
    """kappa-sweep with a stand-in computation (writing is under test, not the sweep): one number
    and a figure."""

    exp = load("kappa-sweep")
    monkeypatch.setattr(exp, "run", lambda cfg, out, progress=True: {"rows": [], "value": 1.5})
    monkeypatch.setattr(exp, "plot", lambda results, out: C.save_figure(plt.figure(figsize=(2, 2)),
                                                                         Path(out) / "kappa_vs_beta.png"))
    monkeypatch.setattr(exp, "claims", lambda results: [])
    return SWEEP + ["--betas", "1e-3"]


@pytest.mark.parametrize("where", ["figures-dir", "results-file"])
def test_unwritable_file_is_one_line_exit_1(tmp_path, stand_in, capsys, where):
    """A file standing where a directory must go, or a directory where a result must go (root
    ignores permission bits, not file types): one line naming it, exit 1, earlier results intact."""
    out = tmp_path / "out"
    assert cli.main(stand_in + ["--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    if where == "figures-dir":
        blocker = tmp_path / "blocker"
        blocker.write_text("x")
        assert cli.main(stand_in + ["--out", str(out), "--figures-dir", str(blocker / "f")]) == 1
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    else:
        (out / "claims.json").unlink()
        (out / "claims.json").mkdir()  # the run's claims cannot be written
        assert cli.main(stand_in + ["--out", str(out), "--force"]) == 1
    line = _one_error_line(capsys)
    assert "cannot" in line and ("blocker" in line if where == "figures-dir" else "claims.json" in line)
    assert "No such file" not in line and "Traceback" not in line
    _readable(out)
    _no_temp_files(tmp_path)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs at ``tmp_path / "fs"`` (skipped where mounting is not permitted)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip()[:120]}); the portable tests "
                    "above cover the same paths")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave: int) -> Path:
    """Fill ``mnt`` until about ``leave`` bytes are free."""
    filler = mnt / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_real_full_disk(tiny_fs, tiny_env, capsys):
    """On a real 1 MiB filesystem: a finished sweep, then a second one with room for its pieces
    but not for its figure — one line, exit 1, the first run intact, no half PNG; with room
    again the second resumes."""
    first, second = tiny_fs / "first", tiny_fs / "second"
    assert cli.main(SWEEP + ["--betas", "1e-3,1e-1", "--out", str(first)]) == 0
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    filler = _fill(tiny_fs, leave=32 * 1024)  # pieces and small JSON fit, the ~70 kB PNG does not
    capsys.readouterr()
    assert cli.main(SWEEP + ["--betas", "1e-2,3e-1", "--out", str(second)]) == 1
    line = _one_error_line(capsys)
    assert "No space left on device" in line and "ENOSPC" in line and "kappa_vs_beta.png" in line
    assert len(list((second / "pieces").glob("*.json"))) == 2  # the work is kept for the resume
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == before
    _readable(first)
    _readable(second)
    _no_temp_files(tiny_fs)
    assert not (second / "kappa_sweep.json").exists()
    filler.unlink()
    assert cli.main(SWEEP + ["--betas", "1e-2,3e-1", "--out", str(second)]) == 0
    _readable(second)
