"""Command line: ``python -m jaxdyn <command> [--help]``.

Every experiment of :data:`jaxdyn.experiments.EXPERIMENTS` is a command whose flags are its
``Config`` fields (``--n-samples 16``, ``--betas 1e-3,1e-1``; a field's ``metadata["help"]`` is
its help), plus the scale (``--quick``, default; ``--full``), ``--out``, ``--force``,
``--figures-dir`` and ``--no-progress``. Two more commands are not experiments: ``train`` and
``reproduce``. The top-level ``--help`` imports neither jax nor any experiment (the one-line
help of each command is read from its module's docstring).

Errors are one ``error:`` line: exit code 2 for bad input (an ``--out`` held by another live
run included: :mod:`jaxdyn.runlock`), 1 for a failure at run time (a full disk or an unwritable
file included: :class:`jaxdyn.results.WriteError`; set ``JAXDYN_DEBUG=1`` for the traceback of
other failures), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import os
import sys
import typing
from pathlib import Path

from jaxdyn.experiments import EXPERIMENTS

#: commands that are not experiments: module with ``add_arguments(parser)`` and ``run(args)``
COMMANDS: dict[str, str] = {
    "train": "jaxdyn.training.command",
    "reproduce": "jaxdyn.experiments.reproduce",
}


def _summary(modname: str) -> str:
    """The first line of a module's docstring, read without importing it (nor its package)."""
    path = Path(__file__).parent.joinpath(*modname.split(".")[1:]).with_suffix(".py")
    if not path.exists():
        return "(not available)"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())  # the first paragraph, on one line
    return first if len(first) <= 110 else first[:109] + "…"


def _parse_seq(kind):
    def parse(s: str):
        try:
            return tuple(kind(v.strip()) for v in s.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {s!r}") from None
    return parse


def _parse_json(s: str):
    try:
        return json.loads(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected JSON, got {s!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One flag per field of ``config_cls`` (except ``scale``), default ``None`` = the preset."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name == "scale":
            continue
        t = hints[f.name]
        args = typing.get_args(t)
        if typing.get_origin(t) is typing.Union and type(None) in args:  # Optional[X]
            t = next(a for a in args if a is not type(None))
        help_ = f.metadata.get("help", "") + " (default: the scale's preset)"
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
    g.add_argument("--full", dest="scale", action="store_const", const="full", help="the paper's scale (meant for a GPU)")
    g.add_argument("--scale", dest="scale", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    p.set_defaults(scale="quick")


def _add_common(p: argparse.ArgumentParser, name: str) -> None:
    add_scale_arguments(p)
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default results/{name})")
    p.add_argument("--force", action="store_true", help="recompute and replace results already in --out")
    p.add_argument("--figures-dir", type=Path, default=None,
                   help="also copy the PNGs and Markdown tables here (nothing is written outside --out without it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (none for the top-level help)."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxdyn",
        description="Dynamics of multi-step attacks and adversarial training (Cheng et al., AAAI 2024).")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, modname in {**EXPERIMENTS, **COMMANDS}.items():
        if name != command:
            sub.add_parser(name, help=_summary(modname))
            continue
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=_summary(modname), description=_summary(modname))
        if name in EXPERIMENTS:
            _add_common(p, name)
            add_config_arguments(p, mod.Config)
        else:
            p.add_argument("--out", type=Path, default=None, help=f"output directory (default results/{name})")
            mod.add_arguments(p)
    return parser


def _run_experiment(name: str, args) -> dict:
    from jaxdyn.experiments import load
    from jaxdyn.experiments.runner import execute

    exp = load(name)
    fields = {f.name for f in dataclasses.fields(exp.Config)} - {"scale"}
    cfg = exp.config(args.scale, **{k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    rec = execute(exp, cfg, args.out, progress=not args.no_progress, force=args.force, figures_dir=args.figures_dir)
    for c in rec["claims"]:
        print(f"  {c['verdict']:>14}: {c['claim']}")
    return rec


def _run_command(args) -> None:
    if args.command in EXPERIMENTS:
        _run_experiment(args.command, args)
        return
    from jaxdyn.results import to_json_tree, write_json_atomic

    mod = importlib.import_module(COMMANDS[args.command])
    results = mod.run(args)
    if results is not None:
        write_json_atomic(args.out / "config.json", to_json_tree(vars(args)))
        write_json_atomic(args.out / getattr(mod, "RESULT_NAME", "results.json"), results)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in {**EXPERIMENTS, **COMMANDS} else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.out = Path(args.out if args.out is not None else Path("results") / args.command)
    import jax

    x64 = jax.config.jax_enable_x64  # experiments switch float64 on; the caller's setting is restored
    from jaxdyn.results import WriteError
    from jaxdyn.runlock import hold

    try:
        with hold(args.out):  # one folder, one run: a second run into a held --out is refused at once
            _run_command(args)
    except WriteError as e:  # a full disk, an unwritable file: what was written before is intact
        print(f"error: {e} (free space or fix the file, then run the same command again to resume)", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:  # bad input or missing data: a message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; finished pieces are kept in {args.out} — run the same command again to resume",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — a failure at run time: one line, the traceback on request
        if os.environ.get("JAXDYN_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (a failure at run time; finished pieces are kept in {args.out}, "
              "the same command resumes; JAXDYN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        jax.config.update("jax_enable_x64", x64)
    print(f"results written to {args.out.resolve()}")
    return 0
