"""Benchmark 7: the batch attacks ``jaxdyn.pgd_batch`` and ``jaxdyn.apgd`` against
torchattacks' ``PGD`` and ``APGD`` on the same weights: speed, per-example agreement, robust accuracy.

The flax parameters are converted to a PyTorch ``nn.Sequential`` (``benchmarks.torch_bridge.to_torch``) and
the logits of both are compared before anything is timed; both run in float32 in one process,
PyTorch with one thread, so under ``taskset -c 0`` both get the same single core.

* PGD-40 ℓ∞ (ε, α = 0.01, random start): ``jd.pgd_batch`` vs ``torchattacks.PGD``;
* APGD-CE and APGD-DLR ℓ∞ (100 iterations, one restart): ``jd.apgd`` vs ``torchattacks.APGD``.

The two sides draw different random starts, so per example they agree only in what they find:
the script reports each side's robust accuracy (correct at ``x`` and at the adversarial point),
the fraction of examples on which both succeed or both fail, and examples/s (the first call,
which compiles, is excluded and reported as ``first_run_s``). Default weights: the quick PGD-trained
mlp3 (``quick_config(adv="pgd-linf")``, from the model cache, trained if missing) and the quick
standard mlp3; ``--tiny`` uses random weights (the smoke test).

    pip install torch==2.13.0 && pip install --no-deps torchattacks
    taskset -c 0 python -m benchmarks.apgd_torch
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd
from jaxdyn import training
from jaxdyn.core import models

from benchmarks import common, timing, torch_bridge
from benchmarks.torch_bridge import nchw, to_torch
from benchmarks.timing import time_torch as time_calls  # first call (compiles) excluded, then timed calls


def load_weights(which: str, seed: int):
    kw = training.quick_config("mlp3", adv="pgd-linf" if which == "pgd-trained" else None, seed=seed)
    model, variables, info = training.load_or_train("mlp3", **kw)
    return model, models.cast(variables, jnp.float32), dict(
        weights=f"quick mlp3, {which}", test_accuracy=info.get("test_accuracy"),
        robust_accuracy_pgd40=info.get("robust_accuracy"), run_dir=str(info.get("run_dir", "")))


def main(argv=None):
    p = common.parser("bench_apgd_torch", __doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs="+", default=["pgd-trained", "standard"], choices=["pgd-trained", "standard"])
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--pgd-steps", type=int, default=40)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--apgd-steps", type=int, default=100)
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.pgd_steps, args.apgd_steps, args.repeats = 8, 3, 5, 1
    try:
        import torch  # noqa: PLC0415 (the bench extra: optional)
        import torchattacks  # noqa: PLC0415 (the bench extra: optional)
    except ImportError as e:
        sys.exit(f"bench_apgd_torch needs torch and torchattacks (pip install torch==2.13.0; "
                 f"pip install --no-deps torchattacks): {e}")
    precision = torch_bridge.full_fp32(torch)
    torch.set_num_threads(1)
    x, y, source = common.load_digits(args.batch, seed=args.seed, dtype="float32")
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.int32)
    results = dict(benchmark="batch PGD and APGD: jaxdyn vs torchattacks on the same weights",
                   machine=common.machine_info(dict(torch=torch.__version__, torchattacks=torchattacks.__version__)),
                   config=vars(args) | dict(data=source), precision=precision, weights={})
    rows = []
    key = jax.random.key(args.seed)
    for which in (["random"] if args.tiny else args.weights):
        if which == "random":
            model, variables, minfo = common.init_model("mlp3", dtype=jnp.float32, seed=args.seed, width=0.125)
        else:
            model, variables, minfo = load_weights(which, args.seed)
        tmodel = to_torch(model, variables).eval()
        z_jax = np.asarray(model.apply(variables, x))
        with torch.no_grad():
            z_torch = tmodel(nchw(np.asarray(x))).numpy()
        logit_err = float(np.max(np.abs(z_jax - z_torch)) / max(np.max(np.abs(z_jax)), 1e-30))
        if not logit_err < 1e-4:
            raise RuntimeError(f"{which}: PyTorch copy disagrees with the flax model (rel {logit_err:.1e})")
        yn = np.asarray(y)
        clean = z_jax.argmax(-1) == yn
        xt, yt = nchw(np.asarray(x)), torch.from_numpy(yn.astype(np.int64))

        def correct_jax(xa):
            return np.asarray(model.apply(variables, jnp.asarray(xa))).argmax(-1) == yn

        attacks_ = {
            f"PGD-{args.pgd_steps}": (
                lambda: jd.pgd_batch(model, x, y, eps=args.eps, alpha=args.alpha, steps=args.pgd_steps, key=key,
                                     variables=variables).x_adv,
                torchattacks.PGD(tmodel, eps=args.eps, alpha=args.alpha, steps=args.pgd_steps, random_start=True)),
        }
        for loss in ("ce", "dlr"):
            attacks_[f"APGD-{loss.upper()}"] = (
                lambda loss=loss: jd.apgd(model, x, y, eps=args.eps, loss=loss, steps=args.apgd_steps, key=key,
                                          variables=variables).x_adv,
                torchattacks.APGD(tmodel, norm="Linf", eps=args.eps, steps=args.apgd_steps, n_restarts=1,
                                  loss=loss, seed=args.seed))
        wres = dict(model=minfo, logit_rel_diff=logit_err, clean_accuracy=float(clean.mean()), attacks={})
        robust_j_all, robust_t_all = clean.copy(), clean.copy()
        for name, (jfn, tatk) in attacks_.items():
            tj, xa_j = time_calls(lambda: jax.block_until_ready(jfn()), args.repeats)
            torch.manual_seed(args.seed)
            tt, xa_t = time_calls(lambda: tatk(xt, yt), args.repeats)
            xa_t = xa_t.detach().numpy().transpose(0, 2, 3, 1)
            ok_j, ok_t = clean & correct_jax(xa_j), clean & correct_jax(xa_t)
            if name.startswith("APGD"):
                robust_j_all &= ok_j
                robust_t_all &= ok_t
            a = dict(jaxdyn=tj, torchattacks=tt, timing=timing.primary_key(),
                     jaxdyn_images_per_s=args.batch / timing.t_(tj), torch_images_per_s=args.batch / timing.t_(tt),
                     speedup=timing.t_(tt) / timing.t_(tj), robust_accuracy_jaxdyn=float(ok_j.mean()),
                     robust_accuracy_torch=float(ok_t.mean()), agreement=float(np.mean(ok_j == ok_t)),
                     max_linf_jaxdyn=float(np.max(np.abs(np.asarray(xa_j) - np.asarray(x)))),
                     max_linf_torch=float(np.max(np.abs(xa_t - np.asarray(x)))))
            wres["attacks"][name] = a
            rows.append({"weights": which, "attack": name, "jaxdyn img/s": f"{a['jaxdyn_images_per_s']:.0f}",
                         "torch img/s": f"{a['torch_images_per_s']:.0f}", "ratio": f"{a['speedup']:.2f}x",
                         "robust acc jax/torch":
                             f"{a['robust_accuracy_jaxdyn']:.3f} / {a['robust_accuracy_torch']:.3f}",
                         "agree": f"{a['agreement']:.3f}",
                         "jax first call": f"{tj['first_run_s']:.1f} s"})
        wres["apgd_worst_case"] = dict(jaxdyn=float(robust_j_all.mean()), torch=float(robust_t_all.mean()),
                                       agreement=float(np.mean(robust_j_all == robust_t_all)))
        rows.append({"weights": which, "attack": "APGD CE+DLR worst case", "jaxdyn img/s": "", "torch img/s": "",
                     "ratio": "", "robust acc jax/torch": f"{robust_j_all.mean():.3f} / {robust_t_all.mean():.3f}",
                     "agree": f"{np.mean(robust_j_all == robust_t_all):.3f}", "jax first call": ""})
        results["weights"][which] = wres
    return timing.finish(args.out, rows, results,
                         note="(median, first call excluded); ratio = jaxdyn img/s over torch's")


if __name__ == "__main__":
    main()
