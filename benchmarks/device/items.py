"""The bodies of the device check's items, each run in its own subprocess
(``python -m benchmarks.device --_env/--_train/--_experiment ...``): the environment record, a timed
training slice of a full preset, and one timed piece of a ``reproduce`` stage.

jaxdyn is imported inside each body, after the body has set jax's configuration (an experiment
piece turns x64 on first, as ``reproduce`` does), so its imports stay where they were."""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

import jax

from benchmarks.device.plan import EXP_IGNORES, EXP_SCALING, SLICES, TRAIN_CAP_S, experiment_config, slice_plan
from benchmarks.device.report import write_text

__all__ = ["env_item", "train_item", "experiment_item", "sum_key", "COMPILE_EVENTS", "compile_clock"]


def env_item(path: Path) -> None:
    for mod in ("jaxdyn.training", "jaxdyn.experiments.reproduce", "jaxdyn.cli.app"):  # what reproduce imports
        importlib.import_module(mod)

    devs = jax.devices()
    versions = dict(python=platform.python_version(), jax=jax.__version__)
    for mod in ("jaxlib", "flax", "optax", "numpy", "scipy", "torch", "torchattacks"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 -- optional
            versions[mod] = None
    write_text(path, json.dumps(dict(backend=jax.default_backend(), devices=[str(d) for d in devs],
                                 device_kind=devs[0].device_kind, versions=versions,
                                 tfds_imported="tensorflow_datasets" in sys.modules), indent=2))


def train_item(key: str, scale: str, steps: int, work: Path, path: Path) -> None:
    """Train one slice of a full preset and time it; see the module docstring."""
    from jaxdyn import training  # noqa: PLC0415 (after jax's config)

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
    write_text(path, json.dumps(res, indent=2, default=str))


def _eval_timing(cfg):
    """``(info, epoch_end_s)`` of the full run's evaluation on freshly initialised weights (its cost
    does not depend on them), for a slice stopped by the time cap: accuracies are dropped."""
    from jaxdyn.core import models  # noqa: PLC0415 (after jax's config)
    from jaxdyn.training import evaluation, loop  # noqa: PLC0415 (after jax's config)

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


def sum_key(node, key: str) -> float:
    """The sum of every ``key`` leaf in a results tree (``train_or_load`` of each network and training)."""
    if isinstance(node, dict):
        return sum(float(v) if k == key and isinstance(v, (int, float)) else sum_key(v, key) for k, v in node.items())
    if isinstance(node, list):
        return sum(sum_key(v, key) for v in node)
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


#: JAX's compile-phase events (tracing, lowering, XLA compile), summed by :func:`compile_clock`
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def compile_clock() -> dict:
    """``{"experiment": s, "training": s}``, filled as this process compiles: the seconds of JAX's
    compile events, those inside ``jaxdyn.training.load_or_train`` (training a network, or Fig. 5's
    tracker) apart. Both are paid once per network in the full run, so the projection does not
    scale them with the digits."""
    import jaxdyn.training as training  # noqa: PLC0415 (after jax's config)

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


def experiment_item(stage: str, scale: str, steps: int, work: Path, path: Path) -> None:
    """One stage of ``reproduce`` at the full scale's settings on one network and a cut digit
    count (:data:`EXP_PIECES`), run by its real ``run`` (``runner.execute``); its measurement time
    (run time less the networks' training or loading) is extrapolated to the full stage."""
    jax.config.update("jax_enable_x64", True)
    from jaxdyn.experiments import runner  # noqa: PLC0415 (after jax's config)

    mod, cfg, f = experiment_config(stage, scale, steps)
    comp = compile_clock()
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
    train_s = sum_key(res, "train_or_load")
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
        scaling=("compile_s + (experiment_time_s − compile_s) × digit_factor"
                 + (" + tracker_s" if stage == "fig5" else "")
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
    write_text(path, json.dumps(out, indent=2, default=str))
