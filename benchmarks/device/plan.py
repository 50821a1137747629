"""What the device check runs (:mod:`benchmarks.device`): the benchmarks at GPU sizes, the training
slices of each table/figure preset, one timed piece of every ``reproduce`` stage, their budgets and
timeouts, and the plan of items built from the command line.

Importing this module imports no jax (the runner process stays off the accelerator); the two
helpers that read jaxdyn's presets (:func:`slice_plan`, :func:`experiment_config`) import it lazily.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO / "jaxdyn" / "datasets" / "mnist"  # jaxdyn.datasets.loading.MNIST_DIR, without importing jaxdyn here
#: the command of the device check; its items run as ``python -m`` subprocesses from the repository root
DEVICE = "benchmarks.device"

#: the benchmarks at GPU sizes: (item, args, timeout s); item ``bench_x`` runs ``python -m benchmarks.x``.
#: Sizes are picked so that the whole check fits about 8 minutes on one H100 with compilation; every
#: item has its own timeout.
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


#: one timed piece of each ``reproduce`` stage at the full scale's settings (:func:`experiment_item`):
#: stage -> (the SLICES whose network(s) it measures, digits of the piece at full scale, timeout s).
#: The digit counts are whole compiled chunks where the stage has chunks (Tables, Appendix: 250;
#: Figs. 3-4: 50; Fig. 5: 16 rows), so the per-chunk cost is the full run's; Fig. 2 vmaps all its
#: digits at once (no chunk), so scaling it by digits is an upper bound on a GPU. Order: a piece
#: that trains a network before the one that loads it (the appendix trains Table 1's cnn3, Fig. 5
#: the AlexNet of Fig. 2, Fig. 3 the VGG-11 of Fig. 4), and Table 1 last: the first device run
#: (2026-11-26, H200) measured it, so when the budget runs out it is the one skipped and the
#: projection can take it from that run (``python -m benchmarks.projection --from``).
EXP_PIECES = {
    "table2": (("table2_cnn3_adv",), 250, 90),
    "appendix": (("table1_cnn3",), 250, 90),
    # two trainings with the tracker (150 s: timed out on the H200)
    "fig5": (("fig2_fig5_alexnet", "fig5_alexnet_adv"), 32, 300),
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
               "python -m benchmarks.projection --weight to use measured ratios); the regime grid's size, which "
               "depends on the network; training (timed by the train_* slices)")


def exp_item_name(stage: str) -> str:
    """``exp_<stage>_<model>`` (``exp_table1_cnn3`` as before)."""
    return f"exp_{stage}_{SLICES[EXP_PIECES[stage][0][0]][1]}"


def bench_module(item: str) -> str:
    """The module of benchmark item ``item``: ``bench_theorem2`` -> ``benchmarks.theorem2``."""
    return "benchmarks." + item.removeprefix("bench_")


def plan(args) -> list[dict]:
    """The items, in order: ``{name, argv, timeout_s, min_s, json, skip}``."""
    py, out = sys.executable, args.out
    items = [dict(name="env", argv=[py, "-m", DEVICE, "--_env", str(out / "env.json")], timeout_s=60, min_s=5)]
    for script, gpu_args, timeout in BENCH_GPU:
        module = bench_module(script)
        path = REPO / Path(*module.split(".")).with_suffix(".py")
        size = ["--tiny"] if args.tiny else gpu_args
        items.append(dict(name=script, argv=[py, "-m", module, *size, "--out", str(out / f"{script}.json")],
                          timeout_s=timeout, min_s=15, skip=None if path.exists() else "not present"))
    no_data = None if args.data_dir else "skipped: no MNIST (--data-dir / JAXDYN_DATA_DIR unset)"
    scale = "tiny" if args.tiny else "full"
    for key in SLICES:
        items.append(dict(name=f"train_{key}", timeout_s=TRAIN_TIMEOUT_S, min_s=20, skip=no_data, argv=[
            py, "-m", DEVICE, "--_train", key, "--_scale", scale, "--train-steps", str(args.train_steps),
            "--_json", str(out / f"train_{key}.json"), "--work-dir", str(args.work_dir)]))
    for stage, (_, _, timeout) in EXP_PIECES.items():
        name = exp_item_name(stage)
        items.append(dict(name=name, timeout_s=timeout, min_s=30, skip=no_data, argv=[
            py, "-m", DEVICE, "--_experiment", stage, "--_scale", scale, "--train-steps", str(args.train_steps),
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


def slice_plan(key: str, scale: str, steps: int):
    """``(preset kwargs, steps of the slice, steps of the full preset)`` of slice ``key``: the
    slice trains the preset's config on ``n × batch_size`` examples for one epoch."""
    from jaxdyn.datasets import loading as data  # noqa: PLC0415 (imports jax; the runner imports this module without)
    from jaxdyn.training import presets  # noqa: PLC0415 (imports jax; the runner imports this module without)

    preset, model, binary, adv = SLICES[key]
    width = TINY_WIDTH if scale == "tiny" else 1.0
    kw = presets.get(preset, model=model, scale=scale, binary=binary, adv=adv, width=width)
    B = kw["batch_size"]
    xtr, ytr = data.load_mnist("train")
    if kw.get("binary") is not None:
        xtr, ytr = data.binary_task(xtr, ytr, kw["binary"])
    n_full = len(xtr) if kw.get("n_train") is None else min(kw["n_train"], len(xtr))
    return kw, max(2, min(steps, n_full // B)), kw.get("epochs", 1) * (n_full // B)


def experiment_config(stage: str, scale: str, steps: int):
    """``(module, config, piece facts)`` of the timed piece of ``stage``: the stage's own config at
    ``scale`` on the SLICES network(s) (trained on ``steps`` batches, one epoch, no robust evaluation)
    and the piece's digit count (the tiny scale keeps its own)."""
    from jaxdyn.experiments import load  # noqa: PLC0415 (imports jax; the runner imports this module without)

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
