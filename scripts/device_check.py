"""The prepared device run: one command that times jaxdyn on a GPU within a budget.

On a machine with a CUDA GPU and JAX (no internet, no tensorflow-datasets needed) it runs, each
as a subprocess with its own timeout, one after the other:

1. ``env``: the device (``jax.devices()``), versions, ``nvidia-smi``, and whether importing
   jaxdyn's training and experiments pulled in tensorflow-datasets (it must not);
2. the five benchmarks of docs/performance.md and ``bench_adv_training.py`` (if the file exists;
   ``not present`` otherwise) at GPU sizes (:data:`BENCH_GPU`);
3. a timed slice of ``reproduce --full``: one network of each table/figure preset trained at full
   width (the ``full`` preset of :mod:`jaxdyn.training.presets`, only ``n_train`` cut to
   ``--train-steps`` batches and one epoch), then evaluated exactly as the full run does (clean
   accuracy on the test set, PGD-40 robust accuracy on ``n_eval_robust`` digits); steps/s after
   compilation is extrapolated to the preset's full step count (:data:`SLICES`);
4. one timed piece of every ``reproduce`` stage (:data:`EXP_PIECES`, items ``exp_<stage>_<model>``):
   the stage's real ``run`` (``runner.execute``) at the full scale's settings, on one network (the
   SLICES model of its preset, trained for ``--train-steps`` batches in the scratch cache, no robust
   evaluation) and a cut digit count (whole chunks: Table 1 on 250 of 1000 digits, as before); each
   records ``projected_full_scale_measure_s`` = measured time × digits × networks of the full stage,
   with its scaling rule and what it ignores (compilation paid once, ...) in the JSON.

At the end :mod:`_projection` (``scripts/_projection.py``) turns the folder into the projection of
``reproduce --full`` on this device (``projection.md``, ``projection.json``): training per preset
and each stage's measurement, in hours.

Each item writes its JSON into ``--out`` (``<item>.json``, its log in ``logs/``), then the
summary ``device_check.json`` and ``device_check.md`` (device, nvidia-smi, versions, each
item's status, time and key numbers). A failure or timeout of one item never stops the others;
an item starts only with at least ``min_s`` of the global ``--budget-s`` left and its timeout is
cut to what is left, so the whole never exceeds the budget (skipped items say so).
``--tiny`` runs the same code path on the CPU in a few minutes (each benchmark's ``--tiny``, the
slices at the tiny presets). Trained models go to a scratch cache (``--work-dir``, default
``<out>/_work``, removed at the end), never to the user's model cache, so every training is timed.

    python scripts/device_check.py --data-dir .device_data/mnist            # on the GPU machine
    taskset -c 0 python scripts/device_check.py --tiny --out /tmp/dc       # the CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
if str(REPO) not in sys.path:  # the item bodies import jaxdyn from this checkout
    sys.path.insert(0, str(REPO))
MNIST_DIR = REPO / "jaxdyn" / "datasets" / "mnist"  # jaxdyn.datasets.loading.MNIST_DIR, without importing jaxdyn here

#: the benchmarks at GPU sizes: (script, args, timeout s). Sizes are picked so that the whole
#: check fits about 8 minutes on one H100 with compilation; every item has its own timeout.
BENCH_GPU = [
    ("bench_theorem2", ["--batch", "1024", "--ref-batch", "64", "--chunk", "16", "--repeats", "3"], 70),
    ("bench_logit_attack", ["--batch", "256", "--steps", "1000", "--repeats", "3"], 50),
    # PyTorch on CUDA when it has it (else the host CPU, one thread); torchattacks or its copy TorchPGD
    ("bench_pgd_torch", ["--batch", "128", "--steps", "40", "--weights", "random", "--repeats", "3"], 240),
    ("bench_hessian", ["--batches", "1", "16", "256", "1024", "--autodiff-max-batch", "64",
                       "--mem-limit-gb", "40", "--budget-s", "4", "--repeats", "3"], 70),
    ("bench_compile", ["--batch", "256", "--betas", "0.5", "1", "2", "4", "--budget-s", "4", "--repeats", "3"], 60),
    # the configuration measured on the H200 (docs/performance.md): ~90 s there
    ("bench_adv_training", ["--steps", "40", "--warmup", "4", "--batch", "128", "--models", "mlp3", "cnn3", "cnn3@2",
                            "--inner-steps", "7", "10", "--repeats", "1", "--n-test", "2000", "--n-robust", "200",
                            "--eval-steps", "20", "--no-profile"], 150),
]

#: one network of each table/figure preset: key -> (preset, model, binary, adv)
SLICES = {
    "table1_cnn3": ("table", "cnn3", None, None),  # Tables 1, Appendix D, κ sweep (10 classes)
    "table2_cnn3_adv": ("table", "cnn3", (3, 5), "pgd-linf"),  # Table 2 (binary, PGD-ℓ∞)
    "fig2_fig5_alexnet": ("figure-vanilla", "alexnet", None, None),  # Figs. 2 and 5, standard
    "fig3_fig4_vgg11_adv": ("fig3-adv", "vgg11", None, None),  # Figs. 3-4 (binary, PGD-ℓ∞)
    "fig5_alexnet_adv": ("fig5-adv", "alexnet", None, None),  # Fig. 5 adversarial
}
TRAIN_TIMEOUT_S, TRAIN_CAP_S = 50, 8.0
TINY_WIDTH = 1 / 16


# ----------------------------------------------------------------------------- the plan


def plan(args) -> list[dict]:
    """The items, in order: ``{name, argv, timeout_s, min_s, json, skip}``."""
    py, out = sys.executable, args.out
    items = [dict(name="env", argv=[py, str(HERE), "--_env", str(out / "env.json")], timeout_s=60, min_s=5)]
    for script, gpu_args, timeout in BENCH_GPU:
        path = REPO / "scripts" / f"{script}.py"
        size = ["--tiny"] if args.tiny else gpu_args
        items.append(dict(name=script, argv=[py, str(path), *size, "--out", str(out / f"{script}.json")],
                          timeout_s=timeout, min_s=15, skip=None if path.exists() else "not present"))
    no_data = None if args.data_dir else "skipped: no MNIST (--data-dir / JAXDYN_DATA_DIR unset)"
    scale = "tiny" if args.tiny else "full"
    for key in SLICES:
        items.append(dict(name=f"train_{key}", timeout_s=TRAIN_TIMEOUT_S, min_s=20, skip=no_data, argv=[
            py, str(HERE), "--_train", key, "--_scale", scale, "--train-steps", str(args.train_steps),
            "--_json", str(out / f"train_{key}.json"), "--work-dir", str(args.work_dir)]))
    for stage, (_, _, timeout) in EXP_PIECES.items():
        name = exp_item_name(stage)
        items.append(dict(name=name, timeout_s=timeout, min_s=30, skip=no_data, argv=[
            py, str(HERE), "--_experiment", stage, "--_scale", scale, "--train-steps", str(args.train_steps),
            "--_json", str(out / f"{name}.json"), "--work-dir", str(args.work_dir)]))
    for it in items:
        it.setdefault("skip", None)
        it.setdefault("json", str(out / f"{it['name']}.json"))
        if args.tiny:  # one shared CPU core: compile dominates (an experiment piece trains and runs a stage)
            it["timeout_s"] = max(it["timeout_s"], 900 if it["name"].startswith("exp_") else 300)
    if args.only:
        unknown = sorted(set(args.only) - {it["name"] for it in items})
        if unknown:
            raise ValueError(f"--only: unknown items {unknown}; items: {', '.join(it['name'] for it in items)}")
        items = [it for it in items if it["name"] in args.only]
    return items


# ----------------------------------------------------------------------------- the runner


def run_items(items: list[dict], out: Path, *, budget_s: float, env: dict | None = None,
              reserve_s: float = 5.0, clock=time.monotonic) -> list[dict]:
    """Run each item as a subprocess (own process group, killed on timeout), never past
    ``budget_s`` in total; returns one record per item (``status`` ok / failed / timeout /
    skipped ... / not present)."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = clock()
    records = []
    for it in items:
        rec = dict(name=it["name"], argv=[str(a) for a in it["argv"]], json=it["json"], time_s=0.0)
        Path(it["json"]).unlink(missing_ok=True)  # a JSON left by an earlier run must not pass for this one
        left = budget_s - (clock() - t0) - reserve_s
        if it.get("skip"):
            rec["status"] = it["skip"]
        elif left < it["min_s"]:
            rec["status"] = f"skipped: budget spent ({max(left, 0):.0f} s left of {budget_s:.0f} s)"
        else:
            timeout = min(it["timeout_s"], left)
            rec.update(_run_one(it, logs / f"{it['name']}.log", timeout, env))
            rec["timeout_s"] = round(timeout, 1)
        rec["key_numbers"] = key_numbers(_read(it["json"])) if rec["status"] == "ok" else {}
        print(f"[device_check] {rec['name']:24s} {rec['status']:40.40s} {rec['time_s']:7.1f} s", flush=True)
        records.append(rec)
    return records


def _run_one(it: dict, log: Path, timeout: float, env: dict | None) -> dict:
    t = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(it["argv"], stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the item and its children only
            proc.wait()
            rc = None
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave no orphan behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    dt = time.monotonic() - t
    if rc is None:
        status = f"timeout after {timeout:.0f} s"
    elif rc != 0:
        status = f"failed (exit {rc}): {_last_line(log)}"
    elif not Path(it["json"]).exists():
        status = "failed: no JSON written"
    else:
        status = "ok"
    return dict(status=status, rc=rc, time_s=round(dt, 2), log=str(log))


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _read(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


#: key patterns of the headline numbers, most important first (the summary table shows the first)
_KEYS = ("speedup", "ratio", "per_s", "projected", "accuracy", "kappa", "met", "max_rel_diff", "device_kind",
         "backend", "tfds", "startup_s", "epoch_end_s", "eval_time_s", "traces", "executables", "compile_s", "time_s", "median_s")


def key_numbers(res, prefix: str = "", limit: int = 40) -> dict:
    """The headline leaves of a result JSON: keys naming a speed-up, ratio, throughput, accuracy,
    projection or κ (``models.cnn3.speedup`` style paths), at most ``limit``."""
    found: dict = {}

    def walk(node, path, depth):
        if depth > 7:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                p = f"{path}.{k}" if path else str(k)
                if isinstance(v, (dict, list)):
                    walk(v, p, depth + 1)
                elif any(s in str(k) for s in _KEYS) and isinstance(v, (int, float, str, bool)) \
                        and not str(k).endswith("runs_s"):
                    found[p] = v
        elif isinstance(node, list) and node and isinstance(node[0], dict) and len(node) <= 16:
            for i, v in enumerate(node):
                walk(v, f"{path}[{v.get('model', v.get('batch', v.get('steps', i)))}]", depth + 1)

    if isinstance(res, dict):
        walk({k: v for k, v in res.items() if k not in ("machine", "config", "argv")}, prefix, 0)
    rank = {p: min(i for i, s in enumerate(_KEYS) if s in p.rsplit(".", 1)[-1]) for p in found}
    return {p: found[p] for p in sorted(found, key=lambda p: rank[p])[:limit]}  # stable: file order within a rank


# ----------------------------------------------------------------------------- summary


def nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run([exe], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {e}"


def write_summary(out: Path, records: list[dict], args, wall_s: float) -> dict:
    env = _read(out / "env.json") or {}
    summary = dict(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), tiny=bool(args.tiny),
        budget_s=args.budget_s, wall_s=round(wall_s, 1), data_dir=str(args.data_dir) if args.data_dir else None,
        train_steps=args.train_steps, device=env.get("device_kind"), devices=env.get("devices"),
        backend=env.get("backend"), versions=env.get("versions"), tfds_imported=env.get("tfds_imported"),
        nvidia_smi=nvidia_smi(), items=records)
    _write(out / "device_check.json", json.dumps(summary, indent=2, default=str))
    _write(out / "device_check.md", markdown(summary))
    return summary


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(s: dict) -> str:
    lines = [f"# Device check ({'tiny, CPU smoke run' if s['tiny'] else 'GPU sizes'})", "",
             f"Date {s['date']}; device **{s['device']}** ({s['backend']}, {len(s['devices'] or [])} device(s)); "
             f"budget {s['budget_s']:.0f} s, wall {s['wall_s']:.0f} s; train slices {s['train_steps']} steps; "
             f"MNIST: {s['data_dir'] or 'none (benchmarks on random images)'}.", "",
             f"Versions: {json.dumps(s['versions'])}. tensorflow-datasets imported: {s['tfds_imported']}.", "",
             "| item | status | time (s) | key numbers |", "|---|---|---|---|"]
    for r in s["items"]:
        kn = "; ".join(f"{k} = {_fmt(v)}" for k, v in list(r["key_numbers"].items())[:14])
        lines.append(f"| {r['name']} | {r['status'].replace('|', '/')} | {r['time_s']:.1f} | {kn} |")
    if s["nvidia_smi"]:
        lines += ["", "```", s["nvidia_smi"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- item bodies


def _env_item(path: Path) -> None:
    import platform

    import jax

    import importlib

    for mod in ("jaxdyn.training", "jaxdyn.experiments.reproduce", "jaxdyn.cli.app"):  # what reproduce imports
        importlib.import_module(mod)

    devs = jax.devices()
    versions = dict(python=platform.python_version(), jax=jax.__version__)
    for mod in ("jaxlib", "flax", "optax", "numpy", "scipy", "torch", "torchattacks"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 -- optional
            versions[mod] = None
    _write(path, json.dumps(dict(backend=jax.default_backend(), devices=[str(d) for d in devs],
                                 device_kind=devs[0].device_kind, versions=versions,
                                 tfds_imported="tensorflow_datasets" in sys.modules), indent=2))


def slice_plan(key: str, scale: str, steps: int):
    """``(preset kwargs, steps of the slice, steps of the full preset)`` of slice ``key``: the
    slice trains the preset's config on ``n × batch_size`` examples for one epoch."""
    from jaxdyn.datasets import loading as data
    from jaxdyn.training import presets

    preset, model, binary, adv = SLICES[key]
    width = TINY_WIDTH if scale == "tiny" else 1.0
    kw = presets.get(preset, model=model, scale=scale, binary=binary, adv=adv, width=width)
    B = kw["batch_size"]
    xtr, ytr = data.load_mnist("train")
    if kw.get("binary") is not None:
        xtr, ytr = data.binary_task(xtr, ytr, kw["binary"])
    n_full = len(xtr) if kw.get("n_train") is None else min(kw["n_train"], len(xtr))
    return kw, max(2, min(steps, n_full // B)), kw.get("epochs", 1) * (n_full // B)


def _train_item(key: str, scale: str, steps: int, work: Path, path: Path) -> None:
    """Train one slice of a full preset and time it; see the module docstring."""
    import jax

    from jaxdyn import training

    kw, n, full_steps = slice_plan(key, scale, steps)
    preset, model, binary, _ = SLICES[key]
    width, B = kw["width"], kw["batch_size"]
    cfg = training.TrainConfig(model=model, **dict(kw, n_train=n * B, epochs=1))
    run_dir = work / "cache" / cfg.run_name()
    warm = 1 if n <= 6 else 5
    marks: dict = {}

    def cb(step, state, loss):
        if step in (1, warm, n) or step % 25 == 0:
            jax.block_until_ready(loss)
            marks[step] = time.perf_counter()
            if step > warm and marks[step] - marks[warm] > TRAIN_CAP_S:
                raise training.TrainingInterrupted(f"time cap {TRAIN_CAP_S} s at step {step}")

    t0 = time.perf_counter()
    info, interrupted = {}, None
    try:
        _, _, info = training.train(cfg, run_dir, progress=False, ckpt_every=None, callback=cb)
    except training.TrainingInterrupted as e:
        interrupted = str(e)
    t_end = time.perf_counter()
    last = max(marks)
    rate = (last - warm) / (marks[last] - marks[warm]) if last > warm else None
    startup = marks[1] - t0
    if interrupted:  # time the final evaluation and the epoch-end accuracy on the initial weights
        info, epoch_end = _eval_timing(cfg)
    else:
        epoch_end = max(0.0, t_end - marks[last] - info["eval_time_s"])
    eval_s = info.get("eval_time_s")
    res = dict(
        slice=key, preset=preset, scale=scale, model=model, binary=binary, adv=kw.get("adv"),
        config=cfg.to_dict(), steps_planned=n, steps_done=last, interrupted=interrupted,
        startup_s=startup, steps_per_s=rate, images_per_s=rate * B if rate else None,
        epoch_end_s=epoch_end, eval_time_s=eval_s, test_accuracy=info.get("test_accuracy"),
        robust_accuracy=info.get("robust_accuracy"), param_count=info.get("param_count"),
        eval_note=info.get("eval_note"),
        full_preset=dict(kw, width=width), full_steps=full_steps,
        projected_full_train_s=(startup + full_steps / rate + kw.get("epochs", 1) * (epoch_end or 0.0)
                                + (eval_s or 0.0)) if rate else None,
        projection=("startup (data, init, compile, step 1) + full_steps / steps_per_s + epochs × epoch-end "
                    "(test accuracy, checkpoint) + final evaluation (clean + PGD-40 robust)"),
        tfds_imported="tensorflow_datasets" in sys.modules, device=jax.devices()[0].device_kind)
    _write(path, json.dumps(res, indent=2, default=str))


def _eval_timing(cfg):
    """``(info, epoch_end_s)`` of the full run's evaluation on freshly initialised weights (its cost
    does not depend on them), for a slice stopped by the time cap: accuracies are dropped."""
    import jax

    from jaxdyn.core import models
    from jaxdyn.training import evaluation, loop

    _, _, xte, yte = loop.load_data(cfg)
    model = models.get_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width)
    variables = models.init_variables(model, jax.random.key(cfg.seed))
    info = evaluation.evaluate(cfg, model, variables, xte, yte, jax.random.key(1),
                               dict(train_time_s=0.0, epoch_times_s=[]), False)
    t = time.perf_counter()
    evaluation.accuracy(model, variables, xte, yte)  # compiled already: the epoch-end test accuracy
    epoch_end = time.perf_counter() - t
    return dict(eval_time_s=info["eval_time_s"], param_count=info["param_count"],
                eval_note="timed on initial weights (slice stopped by the time cap): no accuracies"), epoch_end


#: one timed piece of each ``reproduce`` stage at the full scale's settings (:func:`_experiment_item`):
#: stage -> (the SLICES whose network(s) it measures, digits of the piece at full scale, timeout s).
#: The digit counts are whole compiled chunks where the stage has chunks (Tables, Appendix: 250;
#: Figs. 3-4: 50; Fig. 5: 16 rows), so the per-chunk cost is the full run's; Fig. 2 vmaps all its
#: digits at once (no chunk), so scaling it by digits is an upper bound on a GPU. Order: a piece
#: that trains a network before the one that loads it (the appendix trains Table 1's cnn3, Fig. 5
#: the AlexNet of Fig. 2, Fig. 3 the VGG-11 of Fig. 4), and Table 1 last: the first device run
#: (2026-11-26, H200) measured it, so when the budget runs out it is the one skipped and the
#: projection can take it from that run (``_projection.py --from``).
EXP_PIECES = {
    "table2": (("table2_cnn3_adv",), 250, 90),
    "appendix": (("table1_cnn3",), 250, 90),
    "fig5": (("fig2_fig5_alexnet", "fig5_alexnet_adv"), 32, 300),  # two trainings with the tracker (150 s: timed out on the H200)
    "fig2": (("fig2_fig5_alexnet",), 25, 90),
    "fig3": (("fig3_fig4_vgg11_adv",), 100, 90),
    "fig4": (("fig3_fig4_vgg11_adv",), 100, 90),
    "table1": (("table1_cnn3",), 250, 120),
}
#: what each stage's cost scales with beyond digits × networks, and what the extrapolation ignores
EXP_SCALING = {
    "table1": "digits (1 chunk of 250 → 4 chunks; κ(m), regime grid and ODE per digit) × networks",
    "table2": "digits (1 chunk of 250 → 4 chunks; A_targets sweep and Eq. 11 per digit) × networks",
    "appendix": "digits (1 chunk of 250 → 4 chunks; PGD variants and raw-β grid per digit) × networks",
    "fig5": "digits (2 chunks of 16 rows → 16; instability rows, Theorem 6) × networks, plus the sharpness "
            "tracker (11 points per training, fixed, measured whole: not scaled)",
    "fig2": "digits (25 → 100, linear; one vmapped call per attack, so an upper bound on a GPU) × networks",
    "fig3": "digits (2 chunks of 50 → 20; two A0 strengths) × networks",
    "fig4": "digits (2 chunks of 50 → 20) × networks",
}
EXP_IGNORES = ("compilation is counted once per network (JAX's compile events, compile_s), not scaled; "
               "fixed per-network work scaled with the digits (correct-digit search, Fig. 5's 60k-digit matched-loss "
               "pool); a network's own cost (the others are assumed to cost as the measured one: pass "
               "scripts/_projection.py --weight to use measured ratios); the regime grid's size, which depends on "
               "the network; training (timed by the train_* slices)")


def exp_item_name(stage: str) -> str:
    """``exp_<stage>_<model>`` (``exp_table1_cnn3`` as before)."""
    return f"exp_{stage}_{SLICES[EXP_PIECES[stage][0][0]][1]}"


def _sum_key(node, key: str) -> float:
    """The sum of every ``key`` leaf in a results tree (``train_or_load`` of each network and training)."""
    if isinstance(node, dict):
        return sum(float(v) if k == key and isinstance(v, (int, float)) else _sum_key(v, key) for k, v in node.items())
    if isinstance(node, list):
        return sum(_sum_key(v, key) for v in node)
    return 0.0


def _find(node, key: str, depth: int = 0) -> list:
    if depth > 6:
        return []
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key and not isinstance(v, (dict, list))] + \
            [x for v in node.values() for x in _find(v, key, depth + 1)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key, depth + 1)]
    return []


#: JAX's compile-phase events (tracing, lowering, XLA compile), summed by :func:`_compile_clock`
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def _compile_clock() -> dict:
    """``{"experiment": s, "training": s}``, filled as this process compiles: the seconds of JAX's
    compile events, those inside ``jaxdyn.training.load_or_train`` (training a network, or Fig. 5's
    tracker) apart. Both are paid once per network in the full run, so the projection does not
    scale them with the digits."""
    import jax

    import jaxdyn.training as training

    clock = dict(experiment=0.0, training=0.0, _in=0)

    def listen(event, duration, **_):
        if event in COMPILE_EVENTS:
            clock["training" if clock["_in"] else "experiment"] += float(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    inner = training.load_or_train

    def load_or_train(*a, **k):
        clock["_in"] += 1
        try:
            return inner(*a, **k)
        finally:
            clock["_in"] -= 1

    training.load_or_train = load_or_train  # what experiments._common.load_model calls
    return clock


def experiment_config(stage: str, scale: str, steps: int):
    """``(module, config, piece facts)`` of the timed piece of ``stage``: the stage's own config at
    ``scale`` on the SLICES network(s) (trained on ``steps`` batches, one epoch, no robust evaluation)
    and the piece's digit count (the tiny scale keeps its own)."""
    from jaxdyn.experiments import load

    mod = load(stage)
    keys, n_full_piece, _ = EXP_PIECES[stage]
    model = SLICES[keys[0]][1]
    preset = mod.SCALES[scale]  # the scale's own settings (at "full": the paper's)
    n_scale = preset["n_samples"]
    n = min(n_full_piece, n_scale) if scale == "full" else n_scale

    def brief(key, base):
        kw, n_steps, _ = slice_plan(key, scale, steps)
        return dict(base or {}, n_train=n_steps * kw["batch_size"], epochs=1, n_eval_robust=0)

    over = dict(models=(model,), n_samples=n)
    if "train_overrides" in preset:  # the tables: the preset stays, the overrides cut it
        over["train_overrides"] = brief(keys[0], preset["train_overrides"])
        train = over["train_overrides"]
    else:
        over["train"] = train = brief(keys[0], preset["train"])
        if stage == "fig5":
            over["adv_train"] = brief(keys[1], preset["adv_train"])
    cfg = mod.config(scale, **over)
    facts = dict(model=model, slices=list(keys), n_samples=n, n_samples_full_scale=n_scale,
                 networks_full_scale=list(preset["models"]), train=train, adv_train=over.get("adv_train"))
    return mod, cfg, facts


def _experiment_item(stage: str, scale: str, steps: int, work: Path, path: Path) -> None:
    """One stage of ``reproduce`` at the full scale's settings on one network and a cut digit
    count (:data:`EXP_PIECES`), run by its real ``run`` (``runner.execute``); its measurement time
    (run time less the networks' training or loading) is extrapolated to the full stage."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxdyn.experiments import runner

    mod, cfg, f = experiment_config(stage, scale, steps)
    comp = _compile_clock()
    tracker: list = []
    if stage == "fig5":  # time the sharpness tracker: a fixed cost of the stage, not of the digits
        base = mod.SharpnessTracker

        class Timed(base):
            def start(self, *a, **k):
                t = time.perf_counter()
                super().start(*a, **k)
                tracker.append(time.perf_counter() - t)

            def callback(self, *a, **k):
                t = time.perf_counter()
                super().callback(*a, **k)
                tracker.append(time.perf_counter() - t)

        mod.SharpnessTracker = Timed
    t0 = time.perf_counter()
    rec = runner.execute(mod, cfg, work / f"exp_{stage}", progress=False)
    wall = time.perf_counter() - t0
    res = rec["results"]
    tracker_s = float(sum(tracker))
    train_s = _sum_key(res, "train_or_load")
    measure = rec["runtime_s"] - train_s  # the stage's own work on this network (incl. its compiles)
    compile_s = min(comp["experiment"], measure)  # paid once per network, whatever the digit count
    digits = f["n_samples_full_scale"] / f["n_samples"]
    n_nets = len(f["networks_full_scale"])
    per_net = compile_s + (measure - compile_s) * digits + tracker_s
    out = dict(
        experiment=stage, scale=scale, model=f["model"], slices=f["slices"], n_samples=f["n_samples"],
        n_samples_full_scale=f["n_samples_full_scale"], networks_full_scale=f["networks_full_scale"],
        train_overrides=f["train"], adv_train_overrides=f["adv_train"], wall_s=wall, runtime_s=rec["runtime_s"],
        train_or_load_s=train_s - tracker_s, tracker_s=tracker_s if stage == "fig5" else None,
        experiment_time_s=measure, compile_s=compile_s, compile_in_training_s=comp["training"],
        digit_factor=digits, network_factor=n_nets,
        projected_per_network_s=per_net, projected_full_scale_measure_s=per_net * n_nets,
        scaling=("compile_s + (experiment_time_s − compile_s) × digit_factor" + (" + tracker_s" if stage == "fig5" else "")
                 + " per network, × network_factor (networks_full_scale, each assumed to cost as this one); "
                 + EXP_SCALING[stage]),
        ignores=EXP_IGNORES,
        test_accuracy=(_find(res, "test_accuracy") or [None])[0],
        claims={c["id"]: c["verdict"] for c in rec["claims"]},
        tfds_imported="tensorflow_datasets" in sys.modules, device=jax.devices()[0].device_kind)
    if stage == "table1":  # the numbers the first device run reported
        row = res["rows"][0] if res.get("rows") else {}
        out.update(kappa=row.get("kappa"), kappa_first_order=row.get("kappa_first_order"), steps=row.get("steps"),
                   beta=row.get("beta"), dtype=row.get("dtype"))
    _write(path, json.dumps(out, indent=2, default=str))


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/device_check.py", description=__doc__.split("\n\n")[0])
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
    if args._env:
        _env_item(Path(args._env))
        return 0
    if args._train:
        _train_item(args._train, args._scale, args.train_steps, work, Path(args._json))
        return 0
    if args._experiment:
        _experiment_item(args._experiment, args._scale, args.train_steps, work, Path(args._json))
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
        sys.path.insert(0, str(HERE.parent))
        import _projection

        _projection.write(args.out)
        print(f"[device_check] projection in {args.out / 'projection.md'}")
    except Exception as e:  # noqa: BLE001
        print(f"[device_check] projection failed: {type(e).__name__}: {e}")
    print(f"[device_check] {sum(r['status'] == 'ok' for r in records)}/{len(records)} items ok in "
          f"{summary['wall_s']:.0f} s; summary in {args.out / 'device_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
