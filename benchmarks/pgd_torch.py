"""Benchmark 3: PGD-40 ℓ∞ (ε = 0.3, α = 0.01) throughput, jaxdyn vs torchattacks.

The same architecture and weights on both sides: the flax parameters of a zoo model (``mlp3``,
``cnn3``) are converted to a PyTorch ``nn.Sequential`` (conv kernels HWIO -> OIHW, and the dense
layer after the convs re-ordered from NHWC to NCHW flattening); the logits of both are compared
before anything is timed. Both run in float32 in the same process, PyTorch with one thread
(``torch.set_num_threads(1)``), so under ``taskset -c 0`` both get the same single core. Where this
PyTorch has CUDA (``--torch-device auto``, the default), the PyTorch side runs on the GPU
(synchronised before each clock read), as jaxdyn does there; ``torch_device`` in the JSON says which.

* **jaxdyn**: ``jit(vmap(attacks.pgd))`` (per-example attack as one ``lax.scan``; ε, α traced).
* **torchattacks**: ``torchattacks.PGD(model, eps, alpha, steps, random_start)`` on NCHW tensors.

Agreement: without random start PGD is deterministic, so both must produce (nearly) the same
adversarial images; the script reports the adversarial accuracy of each side, the fraction of
digits whose adversarial prediction agrees and the largest pixel difference. With random start
(the timed setting) the two differ only by their random numbers. Target: ≥ 1.0× on CPU.

Needs the ``bench`` extra: ``pip install -e '.[bench]'`` (torch, torchattacks). Without
torchattacks (the device host) it uses ``benchmarks.torch_bridge.TorchPGD``, a copy of its loop, and the JSON
says so (``torch_attack``).

    taskset -c 0 python -m benchmarks.pgd_torch
"""

from __future__ import annotations

import inspect
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import multistep as attacks

from jaxdyn import training
from jaxdyn.core import models

from jaxdyn._internal import sharding

from benchmarks import common, timing, torch_bridge
from benchmarks.torch_bridge import nchw, to_torch


HAS_UNROLL = "unroll" in inspect.signature(attacks.pgd).parameters


def pgd_fn(model, steps, random_start, unroll=1):
    kw = dict(unroll=unroll) if HAS_UNROLL else {}

    def one(variables, x, y, key, eps, alpha):
        return x + attacks.pgd(models.logits_fn(model, variables), x, y, eps=eps, alpha=alpha,
                               steps=steps, random_start=random_start, key=key, **kw)

    return one


def accuracy_jax(model, variables, x, y):
    return float(np.mean(np.argmax(np.asarray(model.apply(variables, jnp.asarray(x))), -1) == np.asarray(y)))


def main(argv=None):
    p = common.parser("bench_pgd_torch", __doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp3", "cnn3"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--agree-eps", type=float, default=0.05,
                   help="a second, smaller ε for the agreement check (non-trivial adversarial accuracy)")
    p.add_argument("--weights", choices=["trained", "random"], default="trained",
                   help="trained: jaxdyn.training.load_or_train(quick_config) (cached, trained if missing); "
                        "random: init")
    p.add_argument("--torch-device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where PyTorch runs (auto: CUDA when this PyTorch has it, else the CPU)")
    args = p.parse_args(argv)
    width = 1.0
    if args.tiny:
        args.models, args.batch, args.steps, args.repeats, args.weights = ["mlp3", "cnn3"], 8, 3, 1, "random"
        width = 0.125
    try:
        import torch  # noqa: PLC0415 (the bench extra: optional)
    except ImportError as e:
        sys.exit(f"bench_pgd_torch needs the bench extra (pip install -e '.[bench]'): {e}")
    try:
        import torchattacks  # noqa: PLC0415 (the bench extra: optional)
        pgd_cls, attack_name, ta_version = torchattacks.PGD, "torchattacks.PGD", torchattacks.__version__
    except ImportError:  # the device host: torch without torchattacks; the JSON says so
        pgd_cls, attack_name, ta_version = torch_bridge.TorchPGD, "TorchPGD (copy of torchattacks.PGD's loop)", None
    precision = torch_bridge.full_fp32(torch)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    has_cuda = torch.cuda.is_available()
    device = args.torch_device if args.torch_device != "auto" else ("cuda" if has_cuda else "cpu")
    if device == "cuda" and not has_cuda:
        sys.exit("--torch-device cuda but this PyTorch has no CUDA")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch_note = None
    if jax.default_backend() != "cpu" and device == "cpu":
        torch_note = (f"jaxdyn ran on {jax.default_backend()}, PyTorch on the CPU with one thread: the ratio is not "
                      "like for like")
        print(f"[bench] {torch_note}")
    x, y, source = common.load_digits(args.batch, seed=args.seed, dtype="float32")
    results = dict(
        benchmark=f"PGD-{args.steps} linf eps={args.eps} alpha={args.alpha}: jaxdyn vs torchattacks",
        machine=common.machine_info(dict(torch=torch.__version__, torchattacks=ta_version,
                                     torch_threads=torch.get_num_threads())),
        config=vars(args) | dict(width=width, data=source), models={}, torch_attack=attack_name, precision=precision,
        torch_device=device, torch_note=torch_note)
    rows = []
    for name in args.models:
        if args.weights == "trained":
            model, variables, tinfo = training.load_or_train(name, **training.quick_config(name))
            variables = models.cast(variables, jnp.float32)
            minfo = dict(model=name, width=tinfo["config"]["width"], params=models.param_count(variables),
                         weights="trained (jaxdyn.training.quick_config)", dtype="float32",
                         test_accuracy=tinfo.get("test_accuracy"), robust_accuracy=tinfo.get("robust_accuracy"))
        else:
            model, variables, minfo = common.init_model(name, dtype=jnp.float32, seed=args.seed, width=width)
        tmodel = to_torch(model, variables).to(device)
        # -- same function on both sides, before timing anything
        z_jax = np.asarray(model.apply(variables, jnp.asarray(x)))
        with torch.no_grad():
            z_torch = tmodel(nchw(x).to(device)).cpu().numpy()
        logit_err = float(np.max(np.abs(z_jax - z_torch)) / max(np.max(np.abs(z_jax)), 1e-30))
        if not logit_err < 1e-4:  # float32, different summation orders: ~1e-6 expected
            raise RuntimeError(f"{name}: PyTorch copy disagrees with the flax model (rel {logit_err:.1e})")
        clean_acc = accuracy_jax(model, variables, x, y)
        print(f"[{name}] {minfo['params']} params, batch {args.batch}, clean accuracy {clean_acc:.3f}, "
              f"logits agree to {logit_err:.1e}")

        xt, yt = nchw(x).to(device), torch.from_numpy(np.asarray(y, np.int64)).to(device)
        keys = jax.random.split(jax.random.key(args.seed), args.batch)
        def run_jax(random_start, unroll, eps, repeats):
            g = sharding.shard_batch(pgd_fn(model, args.steps, random_start, unroll),
                                     in_axes=(None, 0, 0, 0, None, None))
            placed, _ = g.place(variables, x, y, keys, eps, args.alpha)
            t, xa = timing.compile_and_time(g, *placed, repeats=repeats, warmup=repeats > 1)
            return t, np.asarray(xa)

        def run_torch(random_start, eps, repeats):
            atk = pgd_cls(tmodel, eps=eps, alpha=args.alpha, steps=args.steps, random_start=random_start)
            torch.manual_seed(args.seed)
            def call():
                out = atk(xt, yt)
                sync()
                return out

            t, xa = timing.time_torch(call, repeats)
            return t, xa.cpu().numpy().transpose(0, 2, 3, 1)

        def predict_both(xa_j, xa_t):
            pj = np.argmax(np.asarray(model.apply(variables, jnp.asarray(xa_j))), -1)
            with torch.no_grad():
                pt = tmodel(nchw(xa_t).to(device)).cpu().numpy().argmax(-1)
            return pj, pt

        # -- timed: PGD with random start, as used in practice
        t_j, xa_j = run_jax(True, 1, args.eps, args.repeats)
        t_t, xa_t = run_torch(True, args.eps, args.repeats)
        pj, pt = predict_both(xa_j, xa_t)
        timed_res = dict(
            jaxdyn=t_j, torchattacks=t_t, timing=timing.primary_key(),
            jaxdyn_images_per_s=args.batch / timing.t_(t_j), torch_images_per_s=args.batch / timing.t_(t_t),
            speedup=timing.t_(t_t) / timing.t_(t_j), speedup_wall=t_t["median_s"] / t_j["median_s"],
            adv_accuracy_jaxdyn=float(np.mean(pj == y)), adv_accuracy_torch=float(np.mean(pt == y)),
            max_linf_perturbation_jaxdyn=float(np.max(np.abs(xa_j - x))),
            max_linf_perturbation_torch=float(np.max(np.abs(xa_t - x))),
        )
        if HAS_UNROLL:  # the same attack with the scan fully unrolled (no XLA while loop)
            t_u, xa_u = run_jax(True, True, args.eps, args.repeats)
            timed_res.update(jaxdyn_unrolled=t_u, jaxdyn_unrolled_images_per_s=args.batch / timing.t_(t_u),
                             speedup_unrolled=timing.t_(t_t) / timing.t_(t_u),
                             speedup_unrolled_wall=t_t["median_s"] / t_u["median_s"],
                             unrolled_vs_scan_max_abs_diff=float(np.max(np.abs(xa_u - xa_j))))
        # -- agreement: deterministic start (no random numbers), at ε and at a smaller ε where the
        #    adversarial accuracy is not trivially 0
        agree = {}
        for eps in (args.eps, args.agree_eps):
            _, xa_j = run_jax(False, 1, eps, 1)
            _, xa_t = run_torch(False, eps, 1)
            pj, pt = predict_both(xa_j, xa_t)
            agree[f"eps={eps:g}"] = dict(
                eps=eps, adv_accuracy_jaxdyn=float(np.mean(pj == y)), adv_accuracy_torch=float(np.mean(pt == y)),
                prediction_agreement=float(np.mean(pj == pt)),
                max_abs_pixel_diff=float(np.max(np.abs(xa_j - xa_t))),
                frac_pixels_diff_gt_1e_4=float(np.mean(np.abs(xa_j - xa_t) > 1e-4)))
        results["models"][name] = dict(model=minfo, batch=args.batch, clean_accuracy=clean_acc,
                                       logit_rel_diff=logit_err, random_start=timed_res,
                                       deterministic_start=agree, target_speedup=1.0,
                                       met=bool(timed_res["speedup"] >= 1.0))
        r = timed_res
        a0, a1 = agree[f"eps={args.eps:g}"], agree[f"eps={args.agree_eps:g}"]
        rows.append(dict(model=name, **{
            "jaxdyn img/s": f"{r['jaxdyn_images_per_s']:.0f}", "torch img/s": f"{r['torch_images_per_s']:.0f}",
            "ratio": f"{r['speedup']:.2f}x", "(wall)": f"{r['speedup_wall']:.2f}x",
            "unrolled img/s": f"{r['jaxdyn_unrolled_images_per_s']:.0f}" if HAS_UNROLL else "-",
            "unrolled ratio": f"{r['speedup_unrolled']:.2f}x" if HAS_UNROLL else "-",
            "adv acc jax/torch": f"{r['adv_accuracy_jaxdyn']:.3f} / {r['adv_accuracy_torch']:.3f}",
            f"no-rand ε={args.agree_eps:g} acc jax/torch":
                f"{a1['adv_accuracy_jaxdyn']:.3f} / {a1['adv_accuracy_torch']:.3f}",
            "pred agree (no rand)": f"{min(a0['prediction_agreement'], a1['prediction_agreement']):.3f}",
            "jax compile": f"{r['jaxdyn']['compile_s']:.1f} s"}))
    return timing.finish(args.out, rows, results, note="(median); ratio = jaxdyn images/s over torchattacks images/s")


if __name__ == "__main__":
    main()
