"""Benchmark 6: PGD-ℓ∞ adversarial training, jaxdyn's train step vs PyTorch + torchattacks.

Setting (the adversarial preset of the full-scale figures, ``presets.FIG5_ADV["full"]``): MNIST,
batch 128, ε = 0.3, ``--inner-steps`` PGD steps (7 and 10) of size α = 2.5 ε / steps
(``TrainConfig``'s default, Madry et al.'s rule: 0.107 for 7 steps, 0.075 for 10), random start,
clip to [0, 1]; ε and α ramped up linearly over the first 30 % of the steps
(``eps_warmup = 0.3``); Adam, learning rate 1e-3 decayed to 0 on a cosine over the run.

* **jaxdyn**: the jit-compiled, state-donating step of ``jaxdyn.training.make_train_step`` (the
  one ``jaxdyn.training.train`` uses), compiled ahead of time; host batches gathered with NumPy
  and passed in, as ``train`` does.
* **PyTorch**: the same architecture with the same initial weights (``benchmarks.torch_bridge.to_torch``),
  ``torchattacks.PGD`` (its ε, α set per step to the same ramp), ``torch.optim.Adam`` with the
  same cosine schedule (``LambdaLR``), ``F.cross_entropy``; one thread.

Both sides train on the same data in the same order (a seeded permutation of a fixed subset of
the training set) for ``--steps`` steps. Every step is timed (process CPU time on CPU, wall time
on GPU; ``benchmarks.timing.primary_key``); the first ``--warmup`` steps of each run are excluded,
and the figure is the median step time of all runs -> images/s. ``--repeats`` runs per side use
seeds ``seed, seed+1, ...`` (initial weights, data order, attack noise): the spread between
seeds is the noise against which the accuracies of the two sides must agree. Both trained models
are evaluated by the same code (jaxdyn's ``accuracy`` and ``robust_accuracy``, PGD-``--eval-steps``
ℓ∞ ε = 0.3 α = 0.01 on a fixed test subset; the PyTorch weights are copied back with
``benchmarks.torch_bridge.from_torch``).

``--profile`` (default on, off with ``--no-profile``) times the parts of jaxdyn's step, each
compiled on its own: the attack alone (unrolled, as the train step runs it, and as a
``lax.scan`` / XLA while loop), the update alone (a standard training step), the whole step with
and without state donation, and the host side (batch gather and transfer).

Needs the ``bench`` extra for the PyTorch side (``pip install torch`` and
``pip install --no-deps torchattacks``); without it (or with ``--no-torch``) only jaxdyn is timed
and the JSON says so. On a GPU, PyTorch runs on CUDA when it has it and on the CPU otherwise
(recorded as ``torch_device``; its CPU figures are then not a like-for-like comparison).

    taskset -c 0 python -m benchmarks.adv_training
    python -m benchmarks.adv_training --steps 200 --repeats 3 --models mlp3 cnn3 cnn3@2  # GPU size
"""

from __future__ import annotations

import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import training
from jaxdyn.core import models
from jaxdyn.training import presets

from benchmarks import common, timing, torch_bridge
from benchmarks.adv_training_loops import batch_order, profile_jaxdyn, schedule, train_jaxdyn, train_torch


def parse_model(spec: str):
    """``"cnn3"`` -> ``("cnn3", 1.0)``; ``"cnn3@2"`` -> ``("cnn3", 2.0)`` (a width multiplier)."""
    name, _, w = spec.partition("@")
    if name not in models.model_names():
        raise SystemExit(f"unknown model {name!r} in --models {spec!r}")
    width = float(w) if w else 1.0
    if not width > 0:
        raise SystemExit(f"width must be > 0 in --models {spec!r}")
    return name, width


def agreement(jax_vals, torch_vals, n: int, *, k: float = 3.0) -> dict:
    """Do two sides' accuracies (one per seed) agree within noise?

    The noise of one side's mean is the larger of the seed-to-seed standard error and the
    binomial standard error of an accuracy on ``n`` examples; the two sides agree when their
    means differ by at most ``k`` times the standard error of the difference. Returns the means,
    the difference, the noise and ``holds`` (a verdict that can fail: see the tests)."""
    a, b = np.asarray(jax_vals, float), np.asarray(torch_vals, float)
    if a.size == 0 or b.size == 0 or n < 1:
        raise ValueError("agreement needs at least one value per side and n >= 1")

    def se(v):
        seeds = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
        p = float(np.clip(np.mean(v), 0.0, 1.0))
        binom = math.sqrt(max(p * (1 - p), 1.0 / n) / (n * v.size))
        return max(seeds, binom)

    noise = math.hypot(se(a), se(b))
    diff = float(np.mean(a) - np.mean(b))
    return dict(jaxdyn_mean=float(np.mean(a)), torch_mean=float(np.mean(b)), jaxdyn=a.tolist(), torch=b.tolist(),
                diff=diff, noise_se=noise, k=k, holds=bool(abs(diff) <= k * noise),
                verdict="holds" if abs(diff) <= k * noise else "does not hold")


def main(argv=None):
    p = common.parser("bench_adv_training", __doc__.split("\n\n")[0])
    p.set_defaults(repeats=2)
    p.add_argument("--models", nargs="+", default=["mlp3", "cnn3", "cnn3@2"],
                   help="zoo models, NAME or NAME@WIDTH (width multiplier), e.g. cnn3@2")
    p.add_argument("--inner-steps", type=int, nargs="+", default=[7, 10], help="PGD steps of the training attack")
    p.add_argument("--steps", type=int, default=40, help="training steps per run (each one timed)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--warmup", type=int, default=2, help="first steps of each run not timed")
    p.add_argument("--n-train", type=int, default=None,
                   help="fixed training subset the batches are drawn from (default steps*batch, at most 60000)")
    p.add_argument("--n-test", type=int, default=2000, help="test digits for clean accuracy")
    p.add_argument("--n-robust", type=int, default=500, help="test digits for robust accuracy")
    p.add_argument("--eval-steps", type=int, default=20, help="PGD steps of the robust evaluation (ε 0.3, α 0.01)")
    p.add_argument("--no-torch", action="store_true", help="time jaxdyn only")
    p.add_argument("--torch-device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--profile", action=__import__("argparse").BooleanOptionalAction, default=True,
                   help="time the parts of jaxdyn's step (attack / update / donation / host)")
    args = p.parse_args(argv)
    if args.tiny:
        if args.models == p.get_default("models"):
            args.models = ["mlp3@0.125", "cnn3@0.125"]
        args.inner_steps, args.steps, args.batch, args.warmup = [2], 4, 16, 1
        args.n_test, args.n_robust, args.eval_steps, args.repeats = 64, 32, 2, min(args.repeats, 2)
    for name in ("steps", "batch", "repeats", "n_test", "n_robust", "eval_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup >= args.steps:
        raise SystemExit(f"--warmup ({args.warmup}) must be below --steps ({args.steps})")
    specs = [parse_model(m) for m in args.models]

    torch = pgd_cls = None
    versions, torch_note, torch_attack = {}, None, None
    if not args.no_torch:
        try:
            import torch  # noqa: PLC0415 (the bench extra: optional)
            versions = dict(torch=torch.__version__)
        except ImportError as e:
            torch, torch_note = None, f"PyTorch side skipped: the bench extra is not installed ({e})"
        if torch is not None:
            try:
                import torchattacks  # noqa: PLC0415 (the bench extra: optional)
                pgd_cls, torch_attack = torchattacks.PGD, "torchattacks.PGD"
                versions["torchattacks"] = torchattacks.__version__
            except ImportError:
                pgd_cls = torch_bridge.TorchPGD
                torch_attack = "TorchPGD (copy of torchattacks.PGD's loop; torchattacks not installed)"
                torch_note = "torchattacks is not installed: the PyTorch side uses the script's copy of its PGD loop"
    else:
        torch_note = "PyTorch side skipped (--no-torch)"
    device = None
    if torch is not None:
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        has_cuda = torch.cuda.is_available()
        device = args.torch_device if args.torch_device != "auto" else ("cuda" if has_cuda else "cpu")
        if device == "cuda" and not has_cuda:
            raise SystemExit("--torch-device cuda but this PyTorch has no CUDA")
        versions["torch_threads"] = torch.get_num_threads()
        if jax.default_backend() != "cpu" and device == "cpu":
            torch_note = ((torch_note + "; ") if torch_note else "") + (
                f"jaxdyn ran on {jax.default_backend()}, PyTorch on the CPU (no CUDA in this torch): "
                "the ratio is not like for like")
    precision = torch_bridge.full_fp32(torch)  # TF32 off on both sides: same arithmetic, logits comparable
    if torch_note:
        print(f"[bench] {torch_note}")

    n_train = args.n_train or min(60_000, args.steps * args.batch)
    xtr, ytr, src_tr = common.load_digits(n_train, seed=args.seed, split="train")
    xte, yte, src_te = common.load_digits(args.n_test, seed=0, split="test")
    xr, yr = xte[:args.n_robust], yte[:args.n_robust]
    fig = presets.FIG5_ADV["full"]
    seeds = [args.seed + r for r in range(args.repeats)]
    results = dict(
        benchmark=f"PGD-linf adversarial training, eps={args.eps}, batch {args.batch}: jaxdyn train step vs "
                  "PyTorch + torchattacks",
        machine=common.machine_info(versions), torch_device=device, precision=precision, torch_note=torch_note,
        torch_attack=torch_attack,
        config=vars(args) | dict(n_train=n_train, data=[src_tr, src_te], optimizer=fig.get("optimizer", "adam"),
                                 lr=fig["lr"], schedule=fig["schedule"], eps_warmup=fig["eps_warmup"],
                                 alpha_rule="2.5 * eps / inner_steps", seeds=seeds,
                                 robust_eval=dict(eps=0.3, alpha=0.01, steps=args.eval_steps, n=len(xr))),
        runs={})
    rows = []
    if torch is not None:
        xtr_t, ytr_t = torch_bridge.nchw(xtr), torch.from_numpy(np.asarray(ytr, np.int64))
    for name, width in specs:
        label = name if width == 1.0 else f"{name}@{width:g}"
        model = models.get_model(name, width=width)
        for inner in args.inner_steps:
            cfg = training.TrainConfig(model=name, width=width, adv="pgd-linf", eps=args.eps, adv_steps=inner,
                                       eps_warmup=fig["eps_warmup"], batch_size=args.batch, lr=fig["lr"],
                                       schedule=fig["schedule"])
            tx = training.make_optimizer(cfg, total_steps=args.steps)
            eps_s, alpha_s = schedule(args.steps, cfg.eps, cfg.adv_alpha, cfg.eps_warmup)
            res = dict(model=label, params=None, inner_steps=inner, alpha=cfg.adv_alpha, seeds={})
            acc = {k: [] for k in ("jax_clean", "jax_robust", "torch_clean", "torch_robust")}
            tj, tt = [], []
            for seed in seeds:
                order = batch_order(n_train, args.steps, args.batch, seed)
                v, init, t_j, comp, loss_j = train_jaxdyn(model, cfg, tx, xtr, ytr, order, eps_s, alpha_s, seed,
                                                          args.warmup)
                res["params"] = models.param_count(v)
                ev = lambda v: (training.accuracy(model, v, xte, yte),  # noqa: E731
                                training.robust_accuracy(model, v, xr, yr, eps=0.3, alpha=0.01,
                                                         steps=args.eval_steps, key=jax.random.key(1)))
                cj, rj = ev(v)
                acc["jax_clean"].append(cj)
                acc["jax_robust"].append(rj)
                tj.append(t_j)
                entry = dict(jaxdyn=dict(timing=t_j, compile_s=comp, last_loss=loss_j, clean=cj, robust=rj))
                if torch is not None:
                    tmodel = torch_bridge.to_torch(model, init).to(device)
                    z0 = np.asarray(model.apply(init, jnp.asarray(xte[:64])))
                    with torch.no_grad():
                        zt = tmodel(torch_bridge.nchw(xte[:64]).to(device)).cpu().numpy()
                    logit_err = float(np.max(np.abs(z0 - zt)) / max(np.max(np.abs(z0)), 1e-30))
                    if not logit_err < 1e-4:
                        raise RuntimeError(f"{label}: PyTorch copy disagrees with the flax model (rel {logit_err:.1e})")
                    t_t, loss_t = train_torch(tmodel, xtr_t, ytr_t, order, eps_s, alpha_s, inner, cfg.lr, seed,
                                              args.warmup, device, pgd_cls)
                    ct, rt = ev(torch_bridge.from_torch(model, tmodel.cpu(), init))
                    acc["torch_clean"].append(ct)
                    acc["torch_robust"].append(rt)
                    tt.append(t_t)
                    entry["torch"] = dict(timing=t_t, last_loss=loss_t, clean=ct, robust=rt,
                                          init_logit_rel_diff=logit_err)
                res["seeds"][seed] = entry
                print(f"[{label} PGD-{inner} seed {seed}] jaxdyn {timing.fmt_s(timing.t_(t_j))}/step "
                      f"clean {cj:.3f} robust {rj:.3f}"
                      + (f" | torch {timing.fmt_s(timing.t_(t_t))}/step clean {ct:.3f} robust {rt:.3f}"
                         if torch is not None else ""), flush=True)
            key = timing.primary_key().replace("median_s", "runs_s")
            med_j = statistics.median([r for t in tj for r in t[key]])
            res.update(timing=timing.primary_key(), jaxdyn_step_s=med_j, jaxdyn_images_per_s=args.batch / med_j,
                       jaxdyn_step_wall_s=statistics.median([r for t in tj for r in t["runs_s"]]))
            row = {"model": label, "params": res["params"], "inner": inner,
                   "jaxdyn img/s": f"{res['jaxdyn_images_per_s']:.0f}"}
            if torch is not None:
                med_t = statistics.median([r for t in tt for r in t[key]])
                wall_t = statistics.median([r for t in tt for r in t["runs_s"]])
                res.update(torch_step_s=med_t, torch_images_per_s=args.batch / med_t, torch_step_wall_s=wall_t,
                           speedup=med_t / med_j, speedup_wall=wall_t / res["jaxdyn_step_wall_s"],
                           clean=agreement(acc["jax_clean"], acc["torch_clean"], len(xte)),
                           robust=agreement(acc["jax_robust"], acc["torch_robust"], len(xr)),
                           target_speedup=1.25, met=bool(med_t / med_j >= 1.25))
                row.update({"torch img/s": f"{res['torch_images_per_s']:.0f}", "ratio": f"{res['speedup']:.2f}x",
                            "(wall)": f"{res['speedup_wall']:.2f}x",
                            "clean jax/torch": f"{res['clean']['jaxdyn_mean']:.3f} / "
                                               f"{res['clean']['torch_mean']:.3f}",
                            "robust jax/torch": f"{res['robust']['jaxdyn_mean']:.3f} / "
                                                f"{res['robust']['torch_mean']:.3f}",
                            "agree": f"{res['clean']['verdict']}/{res['robust']['verdict']}"})
            if args.profile:
                prof = profile_jaxdyn(model, init, cfg, tx, xtr[:args.batch], ytr[:args.batch], cfg.eps,
                                      cfg.adv_alpha, max(3, args.repeats))
                res["profile"] = prof
                row["attack/update/step ms"] = "/".join(f"{timing.t_(prof[k]) * 1e3:.0f}" for k in (
                    "attack_train_step", "update_only", "step_donated"))
                row["scan attack ms"] = f"{timing.t_(prof['attack_scan']) * 1e3:.0f}"
            results["runs"][f"{label}/pgd{inner}"] = res
            rows.append(row)
    return timing.finish(args.out, rows, results,
                     note="(median per step); ratio = jaxdyn images/s over PyTorch images/s")


if __name__ == "__main__":
    main()
