"""Command line: ``python -m jaxdyn <command> [--help]``.

Each command lives in a module that defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> dict``. The dict is written as ``<out>/<RESULT_NAME>`` (default ``results.json``)
beside ``config.json``; the output directory is printed. Modules are imported lazily so that
``--help`` is fast and a command's heavy imports do not slow the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

COMMANDS: dict[str, str] = {
    "kappa-sweep": "jaxdyn.experiments.kappa_sweep",
    "train": "jaxdyn.training.command",
    "table1": "jaxdyn.experiments.table1",
    "table2": "jaxdyn.experiments.table2",
    "appendix": "jaxdyn.experiments.appendix",
    "figures": "jaxdyn.experiments.figures",
    "fig2": "jaxdyn.experiments.fig2",
    "fig3": "jaxdyn.experiments.fig3",
    "fig4": "jaxdyn.experiments.fig4",
    "fig5": "jaxdyn.experiments.fig5",
    "reproduce": "jaxdyn.experiments.reproduce",
}


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, default=_jsonable)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _available() -> dict[str, str]:
    out = {}
    for name, mod in COMMANDS.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = mod
    return out


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="python -m jaxdyn",
        description="Dynamics of multi-step attacks and adversarial training (Cheng et al., AAAI 2024).",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    modules = {}
    for name, modname in _available().items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--out", type=Path, default=None, help=f"output directory (default results/{name})")
        mod.add_arguments(p)
        modules[name] = mod
    return parser, modules


def main(argv=None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    mod = modules[args.command]
    out = args.out if args.out is not None else Path("results") / args.command
    args.out = Path(out)
    args.out.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    try:
        results = mod.run(args)
    except (ValueError, FileNotFoundError) as e:  # bad input or missing data: a message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    # config and results are written together at the end, so a failed run leaves neither
    write_json_atomic(args.out / "config.json", config)
    if results is not None:
        write_json_atomic(args.out / getattr(mod, "RESULT_NAME", "results.json"), results)
    print(f"results written to {args.out.resolve()}")
    return 0
