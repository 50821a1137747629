"""The prepared device run: one command that times jaxdyn on a GPU within a budget.

On a machine with a CUDA GPU and JAX (no internet, no tensorflow-datasets needed) it runs, each
as a subprocess with its own timeout, one after the other:

1. ``env``: the device (``jax.devices()``), versions, ``nvidia-smi``, and whether importing
   jaxdyn's training and experiments pulled in tensorflow-datasets (it must not);
2. the five benchmarks of docs/performance.md and ``benchmarks.adv_training`` (if the file exists;
   ``not present`` otherwise) at GPU sizes (:data:`benchmarks.device.plan.BENCH_GPU`);
3. a timed slice of ``reproduce --full``: one network of each table/figure preset trained at full
   width (the ``full`` preset of :mod:`jaxdyn.training.presets`, only ``n_train`` cut to
   ``--train-steps`` batches and one epoch), then evaluated exactly as the full run does (clean
   accuracy on the test set, PGD-40 robust accuracy on ``n_eval_robust`` digits); steps/s after
   compilation is extrapolated to the preset's full step count (:data:`benchmarks.device.plan.SLICES`);
4. one timed piece of every ``reproduce`` stage (:data:`benchmarks.device.plan.EXP_PIECES`, items
   ``exp_<stage>_<model>``): the stage's real ``run`` (``runner.execute``) at the full scale's
   settings, on one network (the SLICES model of its preset, trained for ``--train-steps`` batches
   in the scratch cache, no robust evaluation) and a cut digit count (whole chunks: Table 1 on 250
   of 1000 digits, as before); each records ``projected_full_scale_measure_s`` = measured time ×
   digits × networks of the full stage, with its scaling rule and what it ignores (compilation paid
   once, ...) in the JSON.

At the end :mod:`benchmarks.projection` turns the folder into the projection of
``reproduce --full`` on this device (``projection.md``, ``projection.json``): training per preset
and each stage's measurement, in hours.

The plan is :mod:`benchmarks.device.plan`, the scheduler :mod:`benchmarks.device.run`, the item
bodies :mod:`benchmarks.device.items`, the summary :mod:`benchmarks.device.report`.
Each item writes its JSON into ``--out`` (``<item>.json``, its log in ``logs/``), then the
summary ``device_check.json`` and ``device_check.md`` (device, nvidia-smi, versions, each
item's status, time and key numbers). A failure or timeout of one item never stops the others;
an item starts only with at least ``min_s`` of the global ``--budget-s`` left and its timeout is
cut to what is left, so the whole never exceeds the budget (skipped items say so).
``--tiny`` runs the same code path on the CPU in a few minutes (each benchmark's ``--tiny``, the
slices at the tiny presets). Trained models go to a scratch cache (``--work-dir``, default
``<out>/_work``, removed at the end), never to the user's model cache, so every training is timed.

    python -m benchmarks.device --data-dir .device_data/mnist            # on the GPU machine
    taskset -c 0 python -m benchmarks.device --tiny --out /tmp/dc       # the CPU smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from benchmarks import projection
from benchmarks.device.plan import MNIST_DIR, REPO, plan
from benchmarks.device.report import write_summary
from benchmarks.device.run import run_items


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "results" / "device_check")
    p.add_argument("--tiny", action="store_true", help="tiny sizes on any backend (the CPU smoke test)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="global wall-clock budget (default 540 s = 9 min; 1800 s with --tiny)")
    p.add_argument("--data-dir", default=os.environ.get("JAXDYN_DATA_DIR") or str(MNIST_DIR),
                   help="MNIST folder (default $JAXDYN_DATA_DIR, else the files built into jaxdyn)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="scratch for the trained slices (default <out>/_work; removed at the end)")
    p.add_argument("--train-steps", type=int, default=200, help="training steps of each slice")
    p.add_argument("--only", nargs="+", default=None, help="run only these items (names as in the summary)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    for hidden in ("--_env", "--_train", "--_experiment", "--_scale", "--_json"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 1800.0 if args.tiny else 540.0
    if not args.budget_s > 0 or args.train_steps < 2:
        p.error("--budget-s must be > 0 and --train-steps ≥ 2")
    if args.data_dir:
        args.data_dir = Path(args.data_dir).expanduser().resolve()
        if not args.data_dir.is_dir():
            p.error(f"--data-dir {args.data_dir} is not a folder")
        os.environ["JAXDYN_DATA_DIR"] = str(args.data_dir)
    args.out = args.out.expanduser().resolve()
    work = (args.work_dir or args.out / "_work").expanduser().resolve()
    if args._env or args._train or args._experiment:  # an item's body, in its own subprocess
        from benchmarks.device import items as bodies  # noqa: PLC0415 (imports jax: only the item processes do)

        if args._env:
            bodies.env_item(Path(args._env))
        elif args._train:
            bodies.train_item(args._train, args._scale, args.train_steps, work, Path(args._json))
        else:
            bodies.experiment_item(args._experiment, args._scale, args.train_steps, work, Path(args._json))
        return 0
    args.work_dir = work
    try:
        items = plan(args)
    except ValueError as e:
        p.error(str(e))
    if args.dry_run:
        for it in items:
            print(f"{it['name']:24s} timeout {it['timeout_s']:4.0f} s  {it['skip'] or ' '.join(it['argv'][1:])}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    pypath = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    env = dict(os.environ, JAXDYN_CACHE_DIR=str(work / "cache"), MPLBACKEND="Agg", TQDM_DISABLE="1",
               PYTHONPATH=pypath)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a terminated check kills its running item
    t0 = time.monotonic()
    try:
        records = run_items(items, args.out, budget_s=args.budget_s, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = write_summary(args.out, records, args, time.monotonic() - t0)
    try:  # the projection of reproduce --full from what was measured; never fails the check
        projection.write(args.out)
        print(f"[device_check] projection in {args.out / 'projection.md'}")
    except Exception as e:  # noqa: BLE001
        print(f"[device_check] projection failed: {type(e).__name__}: {e}")
    print(f"[device_check] {sum(r['status'] == 'ok' for r in records)}/{len(records)} items ok in "
          f"{summary['wall_s']:.0f} s; summary in {args.out / 'device_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
