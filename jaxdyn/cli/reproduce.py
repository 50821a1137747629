"""``python -m jaxdyn reproduce``: the command line of :func:`jaxdyn.experiments.reproduce.reproduce`."""

from __future__ import annotations

from pathlib import Path

from jaxdyn._internal.results import write_json_atomic
from jaxdyn.cli.app import CommandError, add_scale_arguments
from jaxdyn.cli.text import SHOWN_SCALES, preset_note
from jaxdyn.experiments import REPRODUCE, load
from jaxdyn.experiments.reproduce import RESULT_NAME, TABLE_STAGES, parse_seeds, reproduce
from jaxdyn.experiments._common import TABLE_MODELS

__all__ = ["READS_DATA", "add_arguments", "run"]

#: the command reads MNIST: the command line gives it ``--data-dir``
READS_DATA = True


def _table_models_note() -> str:
    """The networks each scale's preset gives the table stages, e.g. ``"quick: mlp3,cnn3,rescnn3, full: all"``."""

    per_scale = {}
    for scale in SHOWN_SCALES:
        models = {tuple(load(st).SCALES[scale]["models"]) for st in TABLE_STAGES}
        if len(models) != 1:  # the stages disagree: name each
            return "; ".join(f"{st}: " + preset_note({sc: load(st).SCALES[sc]["models"] for sc in SHOWN_SCALES})
                             for st in TABLE_STAGES)
        (m,) = models
        per_scale[scale] = "all" if set(m) == set(TABLE_MODELS) else m
    return preset_note(per_scale)


def add_arguments(parser) -> None:
    add_scale_arguments(parser)
    parser.add_argument("--force", action="store_true", help="recompute stages whose results exist")
    parser.add_argument("--figures-dir", type=Path, default=None,
                        help="copy the PNGs, Markdown tables and REPORT.md here (the README shows figures/)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of the stages (default: all, {','.join(REPRODUCE)})")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild REPORT.md (and --figures-dir) from the stored stage results")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds: independently trained networks per architecture in every stage "
                             "(default: each stage's preset for the scale)")
    parser.add_argument("--table-models", default=None,
                        help=f"networks of {', '.join(TABLE_STAGES)}: 'all' (the ten) or a comma list "
                             f"(default: the scale's, {_table_models_note()})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> dict:
    only = None if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    res = reproduce(scale=args.scale, out=args.out, seeds=parse_seeds(args.seeds), progress=not args.no_progress,
                    force=args.force, figures_dir=args.figures_dir, only=only, report_only=args.report_only,
                    table_models=args.table_models)
    failed = [s for s, r in res["stages"].items() if r["status"] != "ok"]
    print(f"REPORT: {res['report']} ({res['total_s'] / 60:.1f} min)")
    for v in res["verdicts"]:
        print(f"  [{v['stage']}] {v['verdict']:>14}: {v['claim']}")
    if failed:
        write_json_atomic(Path(args.out) / RESULT_NAME, res)
        raise CommandError(f"stage(s) not run or failed: {', '.join(failed)} (their errors are in REPORT.md and "
                           f"<stage>/error.txt in {args.out}; the same command reruns only those)")
    return res
