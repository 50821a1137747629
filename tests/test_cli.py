"""The command line: a top-level ``--help`` that imports neither jax nor any experiment, one flag
per config field, and one ``error:`` line (exit code 2) for bad input."""

import subprocess
import sys

from jaxdyn.cli import app as cli
from jaxdyn.experiments import EXPERIMENTS
import pytest
from jaxdyn.experiments import kappa_sweep
import jaxdyn

PROBE = """
import sys, contextlib, io
from jaxdyn.cli import app as cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli.main(["--help"])
    except SystemExit:
        pass
heavy = sorted(m for m in sys.modules if m in ("jax", "optax", "flax") or m.startswith("jaxdyn.experiments."))
print(heavy)
"""


def test_top_level_help_is_light():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    out = subprocess.run([sys.executable, "-m", "jaxdyn", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in list(EXPERIMENTS) + list(cli.COMMANDS):
        assert name in out.stdout


def test_import_jaxdyn_is_light_and_the_api_resolves():
    probe = ("import sys, jaxdyn; print('jax' in sys.modules, 'optax' in sys.modules); jaxdyn.kappa; "
             "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]

    for name in jaxdyn.__all__:
        assert getattr(jaxdyn, name) is not None, name


def test_config_flags_and_bad_values(tmp_path, capsys):
    out = subprocess.run([sys.executable, "-m", "jaxdyn", "kappa-sweep", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--n-samples" in out.stdout and "--betas" in out.stdout
    rc = cli.main(["kappa-sweep", "--n-samples", "0", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "n_samples" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "config.json").exists()


def test_train_command_writes_json_of_its_arguments(tmp_path, capsys):
    rc = cli.main(["train", "--model", "nope", "--out", str(tmp_path)])
    assert rc == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()  # nothing written for a failed run


def test_runtime_failure_is_one_error_line_with_exit_code_1(tmp_path, capsys, monkeypatch):

    def boom(*a, **k):
        raise RuntimeError("deliberate")

    monkeypatch.setattr(kappa_sweep, "run", boom)
    rc = cli.main(["kappa-sweep", "--scale", "tiny", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: RuntimeError: deliberate") and "Traceback" not in err
    monkeypatch.setenv("JAXDYN_DEBUG", "1")

    with pytest.raises(RuntimeError):
        cli.main(["kappa-sweep", "--scale", "tiny", "--out", str(tmp_path), "--no-progress"])
