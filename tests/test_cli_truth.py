"""The command line tells the truth: no abbreviated flags, the presets' values in each flag's help,
JSON flags checked key by key before ``--out`` exists, ``--data-dir`` on every command that reads
data, one ``error:`` line per failure (absl's warnings silenced; a failed ``reproduce`` stage:
``tests/test_reproduce.py``), and a plain-text ``--help``.

No test here runs an experiment: :func:`jaxdyn.experiments.runner.execute` is replaced by a fake
(:func:`no_run`) wherever a command could get that far.
"""

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys

import pytest

from jaxdyn.cli import app as cli
from jaxdyn.experiments import EXPERIMENTS, load, runner
from jaxdyn.experiments.reproduce import TABLE_STAGES
from jaxdyn.training import QUICK, QUICK_ADV, TrainConfig
from jaxdyn.experiments import _common as C

DATA_COMMANDS = [*EXPERIMENTS, "train", "reproduce"]


@pytest.fixture
def no_run(monkeypatch):
    """``execute`` records the config it is given instead of running anything; ``calls`` holds them."""
    calls = []

    def fake(exp, cfg, out, **kw):
        calls.append(cfg)
        return {"claims": []}

    monkeypatch.setattr(runner, "execute", fake)
    return calls


@functools.lru_cache(maxsize=None)
def parser(name: str) -> argparse.ArgumentParser:
    return cli.build_parser(name)


def subparser(name: str) -> argparse.ArgumentParser:
    return next(a for a in parser(name)._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def flag_help(name: str, flag: str) -> str:
    action = next(a for a in subparser(name)._actions if flag in a.option_strings)
    return " ".join(action.help.replace("%%", "%").split())


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


# --- no abbreviations -------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATA_COMMANDS)
def test_no_parser_accepts_an_abbreviated_flag(name):
    """``--no-progres`` is not ``--no-progress`` (every command has that flag)."""
    required = ["--model", "mlp3"] if name == "train" else []
    assert parser(name).parse_args([name, *required, "--no-progress"]).no_progress
    with pytest.raises(SystemExit) as e:
        parser(name).parse_args([name, *required, "--no-progres"])
    assert e.value.code == 2


def test_a_misspelt_flag_is_one_error_line_naming_the_flag(tmp_path, capsys, no_run):
    with pytest.raises(SystemExit) as e:
        cli.main(["kappa-sweep", "--n-sample", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and not no_run and not (tmp_path / "o").exists()
    (line,) = error_lines(err)
    assert "unrecognized arguments: --n-sample 4" in line and "did you mean --n-samples?" in line


# --- the presets in the help ------------------------------------------------------------------


def _preset_values(exp, field: str) -> dict:
    default = {f.name: f.default for f in dataclasses.fields(exp.Config)}[field]
    return {s: exp.SCALES[s].get(field, default) for s in ("quick", "full")}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_flag_shows_the_quick_and_full_presets(name):
    exp = load(name)
    for f in dataclasses.fields(exp.Config):
        if f.name == "scale":
            continue
        text = flag_help(name, "--" + f.name.replace("_", "-"))
        assert "the scale's preset" not in text and ("quick: " in text or "quick and full: " in text), text
        vals = _preset_values(exp, f.name)
        if all(isinstance(v, (int, float, str)) for v in vals.values()):  # the plain values, as typed
            q, full = (str(vals[s]) for s in ("quick", "full"))
            assert (f"(quick: {q}, full: {full})" in text if q != full else f"(quick and full: {q})" in text), text
        elif all(isinstance(v, dict) for v in vals.values()):  # JSON presets, as JSON
            assert json.dumps(vals["full"], separators=(", ", ": ")) in text, text


def test_the_help_of_train_and_reproduce_shows_their_defaults():
    assert f"default: {TrainConfig.epochs}" in flag_help("train", "--epochs")
    assert f"--quick --adv: {QUICK_ADV['epochs']}" in flag_help("train", "--epochs")
    assert f"--quick: {QUICK['mlp3']['lr']}" in flag_help("train", "--lr")
    assert f"--quick: {QUICK['mlp3']['width']} (mlp*), {QUICK['cnn3']['width']} (cnn*" in flag_help("train", "--width")
    quick = ",".join(load(TABLE_STAGES[0]).SCALES["quick"]["models"])
    assert f"quick: {quick}, full: all" in flag_help("reproduce", "--table-models")


# --- JSON flags -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, says", [
    (["kappa-sweep", "--train", '{"widht": 0.1}'], ["unknown key 'widht'", "did you mean 'width'?", "valid keys:"]),
    (["kappa-sweep", "--train", '{"epochs": "3"}'], ["epochs must be an integer", "'3'"]),
    (["kappa-sweep", "--train", '{"seed": 3}'], ["'seed' is set by --seed"]),
    (["kappa-sweep", "--train", "[1, 2]"], ["train must be 'quick' or a JSON object"]),
    (["table1", "--train-overrides", '{"n_eval_robst": 0}'], ["did you mean 'n_eval_robust'?"]),
    (["fig3", "--train", '{"width": 0.5}'], ["'width' is set by --width"]),
    (["table2", "--train-overrides", '{"binary": [1, 2]}'], ["'binary' is Table 2's task"]),
    (["fig3", "--widths", '{"alexnt": 0.5}'], ["did you mean 'alexnet'?"]),
    (["fig5", "--pgd", '{"eps": 0.1, "alpha": 0.05, "step": 5}'], ["did you mean 'steps'?", "eps, alpha, steps"]),
    (["fig5", "--track", '{"points": 3, "probe": 32.5, "iters": 12}'], ["probe must be an integer"]),
])
def test_bad_json_is_one_error_line_before_out_exists(argv, says, tmp_path, capsys, no_run):
    rc = cli.main([*argv, "--out", str(tmp_path / "o")])
    (line,) = error_lines(capsys.readouterr().err)
    assert rc == 2 and not no_run and not (tmp_path / "o").exists(), line
    assert line.startswith("error: ") and all(s in line for s in says), line


def test_json_flags_take_a_bare_word_and_the_api_checks_the_same(tmp_path, no_run):
    assert cli.main(["kappa-sweep", "--train", "quick", "--out", str(tmp_path)]) == 0
    assert no_run[0].train == "quick"
    with pytest.raises(ValueError, match="did you mean 'width'"):
        load("kappa-sweep").config("quick", train={"widht": 0.1})
    for name in EXPERIMENTS:  # every preset passes its own checks
        for scale in ("tiny", "quick", "full"):
            load(name).config(scale)


def test_bad_train_flags_fail_before_out_exists(tmp_path, capsys):
    assert cli.main(["train", "--model", "nope", "--out", str(tmp_path / "t")]) == 2
    assert len(error_lines(capsys.readouterr().err)) == 1 and not (tmp_path / "t").exists()


# --- --data-dir -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATA_COMMANDS)
def test_every_command_that_reads_data_has_data_dir(name):
    assert "--data-dir" in [o for a in subparser(name)._actions for o in a.option_strings]


def test_data_dir_is_used_for_the_run_and_checked_first(data_dir, tmp_path, monkeypatch, capsys):

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("JAXDYN_DATA_DIR", str(empty))
    loaded = []
    monkeypatch.setattr(runner, "execute", lambda *a, **k: loaded.append(C.fixed_digits(3, seed=0)) or {"claims": []})
    assert cli.main(["kappa-sweep", "--data-dir", data_dir, "--out", str(tmp_path / "o")]) == 0
    assert loaded[0][0].shape == (3, 28, 28, 1) and os.environ["JAXDYN_DATA_DIR"] == str(empty)
    capsys.readouterr()
    for bad, says in ((empty, "lacks t"), (tmp_path / "nope", "no such folder")):
        assert cli.main(["table1", "--data-dir", str(bad), "--out", str(tmp_path / "p")]) == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert says in line and not (tmp_path / "p").exists()


# --- one error line ---------------------------------------------------------------------------

PROBE = """
import sys, warnings
from absl import logging as absl_logging
from jaxdyn.cli import app as cli
from jaxdyn.experiments import runner

def fake(*a, **k):
    absl_logging.warning("Variant folder /nowhere/mnist/3.0.1 has no dataset_info.json")
    warnings.warn("some library's deprecation", DeprecationWarning)
    raise FileNotFoundError("no MNIST here;\\nsecond line of the message")

runner.execute = fake
sys.exit(cli.main(["kappa-sweep", "--out", sys.argv[1]]))
"""


def test_one_error_line_without_absl_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAXDYN_DEBUG"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: no MNIST here; second line of the message"], out.stderr


def test_no_command_is_an_error_naming_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    (line,) = error_lines(capsys.readouterr().err)
    assert e.value.code == 2 and all(name in line for name in DATA_COMMANDS)


# --- plain text -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["table2", "--help"]])
def test_help_is_plain_text(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    text = capsys.readouterr().out
    assert e.value.code == 0 and "``" not in text and ":func:" not in text and ":mod:" not in text
    if argv == ["--help"]:
        assert "Train one model" in " ".join(text.split())
