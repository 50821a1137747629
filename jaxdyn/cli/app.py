"""Command line: ``python -m jaxdyn <command> [--help]``.

Every experiment of :data:`jaxdyn.experiments.EXPERIMENTS` is a command whose flags are its
``Config`` fields (``--n-samples 16``, ``--betas 1e-3,1e-1``; a field's ``metadata["help"]`` is
its help, followed by the value of the quick and the full preset), plus the scale (``--quick``,
default; ``--full``), ``--out``, ``--force``, ``--figures-dir``, ``--data-dir`` and
``--no-progress``. Two more commands are not experiments: ``train`` and ``reproduce``. The
top-level ``--help`` imports neither jax nor any experiment (the one-line help of each command is
read from its module's docstring, as plain text). Flags are never abbreviated: an unknown flag is
an error that names the closest one.

Errors are one ``error:`` line: exit code 2 for bad input (checked before ``--out`` is created;
an ``--out`` held by another live run included: :mod:`jaxdyn._internal.runlock`), 1 for a failure at run
time (a full disk or an unwritable file included: :class:`jaxdyn._internal.results.WriteError`; set
``JAXDYN_DEBUG=1`` for the traceback of other failures), 130 when interrupted. absl's warnings and
Python's deprecation warnings are silenced while a command runs (not with ``JAXDYN_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import sys
import typing
import warnings
from pathlib import Path

from jaxdyn.cli.text import HelpFormatter, plain, preset_note, resolved_presets, suggest
from jaxdyn.experiments import EXPERIMENTS

#: commands that are not experiments: module with ``add_arguments(parser)`` and ``run(args)``
COMMANDS: dict[str, str] = {
    "train": "jaxdyn.cli.train",
    "reproduce": "jaxdyn.cli.reproduce",
    "models": "jaxdyn.training.listing",
}

#: the help of ``--data-dir``, on every command that reads MNIST (the experiments, and the commands
#: whose module sets ``READS_DATA = True``)
DATA_DIR_HELP = ("folder with the four MNIST .gz files, for this run (default: $JAXDYN_DATA_DIR if set, else "
                 "jaxdyn.datasets.loading's default source)")


class CommandError(RuntimeError):
    """A command failed at run time and says why in full: ``main`` prints its message as the
    ``error:`` line and exits with code 1."""


def _summary(modname: str, name: str = "") -> str:
    """The first paragraph of a module's docstring as plain text on one line, read without
    importing the module (nor its package)."""
    path = Path(__file__).parent.parent.joinpath(*modname.split(".")[1:]).with_suffix(".py")
    if not path.exists():
        return "(not available)"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(plain(doc.strip().split("\n\n")[0]).split())
    prefix = f"python -m jaxdyn {name}: "
    if name and first.startswith(prefix):  # "python -m jaxdyn train: train one model ..."
        first = first[len(prefix)].upper() + first[len(prefix) + 1:]
    return first if len(first) <= 110 else first[:109] + "…"


def _parse_seq(kind):
    def parse(s: str):
        try:
            return tuple(kind(v.strip()) for v in s.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {s!r}") from None
    return parse


def _parse_json(s: str):
    """JSON, or a bare word (``--train quick``) as that string."""
    try:
        return json.loads(s)
    except ValueError:
        if s.replace("-", "_").isidentifier():
            return s
        raise argparse.ArgumentTypeError(f"expected JSON, got {s!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, config_cls, presets=None) -> None:
    """One flag per field of ``config_cls`` (except ``scale``), default ``None`` = the preset; with
    ``presets`` (an experiment's ``SCALES``) each help ends with the quick and full values."""
    hints = typing.get_type_hints(config_cls)
    values = resolved_presets(config_cls, presets) if presets is not None else {}
    for f in dataclasses.fields(config_cls):
        if f.name == "scale":
            continue
        t = hints[f.name]
        args = typing.get_args(t)
        if typing.get_origin(t) is typing.Union and type(None) in args:  # Optional[X]
            t = next(a for a in args if a is not type(None))
        as_json = not (t is bool or t in (int, float, str) or typing.get_origin(t) is tuple)
        note = preset_note({s: v[f.name] for s, v in values.items() if f.name in v}, as_json=as_json)
        help_ = (f.metadata.get("help", "") + (f" ({note})" if note else "")).replace("%", "%%")
        flag = "--" + f.name.replace("_", "-")
        if t is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(t) is tuple:
            kind = typing.get_args(t)[0]
            parser.add_argument(flag, type=_parse_seq(kind), default=None, metavar=f"{kind.__name__},...", help=help_)
        elif t in (int, float, str):
            parser.add_argument(flag, type=t, default=None, help=help_)
        else:
            parser.add_argument(flag, type=_parse_json, default=None, metavar="JSON", help=help_)


def add_scale_arguments(p: argparse.ArgumentParser) -> None:
    """``--quick`` (default) / ``--full``, and the hidden ``--scale tiny`` of the tests."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="scale", action="store_const", const="quick",
                   help="CI scale: narrow networks, few samples, for 2 CPU cores (default)")
    g.add_argument("--full", dest="scale", action="store_const", const="full",
                   help="the paper's scale (meant for a GPU)")
    g.add_argument("--scale", dest="scale", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    p.set_defaults(scale="quick")


def add_data_argument(p: argparse.ArgumentParser) -> None:
    """``--data-dir``: the same flag, with the same meaning, on every command that reads MNIST."""
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)


def _add_common(p: argparse.ArgumentParser, name: str) -> None:
    add_scale_arguments(p)
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default results/{name})")
    p.add_argument("--force", action="store_true", help="recompute and replace results already in --out")
    p.add_argument("--figures-dir", type=Path, default=None,
                   help="also copy the PNGs and Markdown tables here (nothing is written outside --out without it)")
    add_data_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (none for the top-level help). No parser
    takes abbreviated flags (``--n-sample`` is not ``--n-samples``)."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxdyn", allow_abbrev=False, formatter_class=HelpFormatter,
        description="Dynamics of multi-step attacks and adversarial training (Cheng et al., AAAI 2024).")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, modname in {**EXPERIMENTS, **COMMANDS}.items():
        kw = dict(help=_summary(modname, name), allow_abbrev=False, formatter_class=HelpFormatter)
        if name != command:
            sub.add_parser(name, **kw)
            continue
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, description=kw["help"], **kw)
        if name in EXPERIMENTS:
            _add_common(p, name)
            add_config_arguments(p, mod.Config, mod.SCALES)
        else:
            p.add_argument("--out", type=Path, default=None, help=f"output directory (default results/{name})")
            if getattr(mod, "READS_DATA", False):
                add_data_argument(p)
            mod.add_arguments(p)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but an unknown flag is reported by the command's parser with the
    closest flag it has (argparse's one ``error:`` line, exit code 2)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
        owner = subs.choices.get(args.command, parser)
        flags = [o for a in owner._actions for o in a.option_strings if o.startswith("--")]  # noqa: SLF001
        hint = next((suggest(e, flags) for e in extra if e.startswith("-") and suggest(e, flags)), "")
        owner.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def _check_data_dir(d: Path | None) -> None:
    """``--data-dir`` names a folder with the four MNIST files (``ValueError`` before any work)."""
    from jaxdyn.datasets.loading import MNIST_MD5  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)

    if d is None:
        return
    if not d.is_dir():
        raise ValueError(f"--data-dir {d}: no such folder")
    missing = [f for f in MNIST_MD5 if not (d / f).is_file()]
    if missing:
        raise ValueError(f"--data-dir {d} lacks {', '.join(missing)} (it needs the four official MNIST .gz files)")


@contextlib.contextmanager
def _quiet_libraries():
    """While a command runs: absl's warnings (tensorflow-datasets logs some before an error we
    report ourselves) and Python's deprecation warnings (for developers, not for a command's user)
    are silenced; errors are not. ``JAXDYN_DEBUG=1`` keeps everything."""
    if os.environ.get("JAXDYN_DEBUG"):
        yield
        return
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        absl.setLevel(level)


@contextlib.contextmanager
def _data_dir(d: Path | None):
    """``--data-dir`` for this run: ``JAXDYN_DATA_DIR``, which every loader of jaxdyn reads (restored after)."""
    old = os.environ.get("JAXDYN_DATA_DIR")
    if d is not None:
        os.environ["JAXDYN_DATA_DIR"] = str(d.expanduser().resolve())
    try:
        yield
    finally:
        if d is not None:
            if old is None:
                os.environ.pop("JAXDYN_DATA_DIR", None)
            else:
                os.environ["JAXDYN_DATA_DIR"] = old


def _run_experiment(name: str, args) -> dict:
    from jaxdyn.experiments import load  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)
    from jaxdyn.experiments.runner import execute  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)

    exp = load(name)
    fields = {f.name for f in dataclasses.fields(exp.Config)} - {"scale"}
    cfg = exp.config(args.scale, **{k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    rec = execute(exp, cfg, args.out, progress=not args.no_progress, force=args.force, figures_dir=args.figures_dir)
    for c in rec["claims"]:
        print(f"  {c['verdict']:>14}: {c['claim']}")
    return rec


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _run_command(args) -> bool:
    """Run the command: an experiment holds its ``--out`` inside :func:`jaxdyn.experiments.runner.execute`
    (after its config is checked); another command is checked, then holds ``--out`` while it runs.
    ``False`` for a command that writes nothing (``models``)."""
    if args.command in EXPERIMENTS:
        _run_experiment(args.command, args)
        return True
    from jaxdyn._internal.results import to_json_tree, write_json_atomic  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)
    from jaxdyn._internal.runlock import hold  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)

    mod = importlib.import_module(COMMANDS[args.command])
    if hasattr(mod, "check"):  # bad input fails before --out is created
        mod.check(args)
    if not getattr(mod, "WRITES_OUT", True):  # `models`: prints, writes nothing
        mod.run(args)
        return False
    with hold(args.out):  # one folder, one run: a second run into a held --out is refused at once
        results = mod.run(args)
        if results is not None:
            write_json_atomic(args.out / "config.json", to_json_tree(vars(args)))
            write_json_atomic(args.out / getattr(mod, "RESULT_NAME", "results.json"), results)
    return True


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in {**EXPERIMENTS, **COMMANDS} else None)
    args = _parse(parser, argv)
    if args.command is None:
        parser.error(f"name a command: {', '.join({**EXPERIMENTS, **COMMANDS})} (--help says what each does)")
    args.out = Path(args.out if args.out is not None else Path("results") / args.command)
    import jax  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)

    x64 = jax.config.jax_enable_x64  # experiments switch float64 on; the caller's setting is restored
    from jaxdyn._internal.results import WriteError  # noqa: PLC0415 (lazy: `python -m jaxdyn --help` imports neither jax nor the experiments)

    data_dir = getattr(args, "data_dir", None)
    try:
        with _quiet_libraries(), _data_dir(data_dir):
            _check_data_dir(data_dir)
            wrote = _run_command(args)
    except WriteError as e:  # a full disk, an unwritable file: what was written before is intact
        print(f"error: {_one_line(e)} (free space or fix the file, then run the same command again to resume)",
              file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:  # bad input or missing data: a message, no traceback
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except CommandError as e:  # a failure the command explains in full
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; finished pieces are kept in {args.out} — run the same command again to resume",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — a failure at run time: one line, the traceback on request
        if os.environ.get("JAXDYN_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {_one_line(e)} (a failure at run time; finished pieces are kept in "
              f"{args.out}, the same command resumes; JAXDYN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        jax.config.update("jax_enable_x64", x64)
    if wrote:
        print(f"results written to {args.out.resolve()}")
    return 0
