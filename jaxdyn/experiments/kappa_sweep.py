"""κ(β): how well Theorem 2 predicts a real m-step raw attack, over a grid of strengths β.

For each β: δ* from an m-step raw gradient attack (A1) with ``α = β/m`` under frozen gating (A2,
default) on a fixed set of MNIST test digits; δ̂ from Theorem 2 with ``H̄_z`` taken from δ*'s
own trajectory; ``κ = E‖δ* − δ̂‖ / E‖δ*‖``. Beside it: κ of Theorem 1 at the same m (which
removes the O(1/m) part), and κ of the first-order baseline ``β g_x`` (no curvature).

Everything runs in float64 unless ``--dtype float32``; the β grid is swept through one compiled
function (β is traced).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELP = "κ(β) sweep: Theorem 2 vs an m-step raw attack on MNIST (frozen gating by default)"
RESULT_NAME = "kappa_sweep.json"
DEFAULT_BETAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mlp3", help="model name (default mlp3, trained at the quick scale)")
    p.add_argument("--betas", type=lambda s: [float(v) for v in s.split(",")], default=list(DEFAULT_BETAS),
                   help="comma-separated β grid (default 1e-4 … 1)")
    p.add_argument("--steps", type=int, default=1000, help="attack steps m (α = β/m); default 1000")
    p.add_argument("--n-samples", type=int, default=50, help="number of test digits (default 50)")
    p.add_argument("--gating", choices=("frozen", "free"), default="frozen", help="A2 on (frozen) or off")
    p.add_argument("--path", choices=("network", "logit"), default="network",
                   help="run the frozen attack through the network (default) or in logit space "
                        "(identical under frozen gating, much faster)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figures-dir", default="figures",
                   help="where to copy kappa_vs_beta.png (default figures/; '' to skip)")


def sweep(model, variables, xs, ys, *, betas, steps, gating="frozen", path="network", progress=True):
    """κ, κ (Theorem 1, same m) and κ (first order) for each β.

    Args:
      model, variables: a Flax model and its (already cast) variables.
      xs: ``[B, 28, 28, 1]`` digits; ys: ``[B]`` labels.
      betas: iterable of β > 0; steps: m.
    Returns:
      list of dicts with ``beta, kappa, kappa_theorem1, kappa_first_order, success_rate,
      mean_delta_norm`` (floats).
    """
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from jaxdyn import attacks, metrics, theory
    from jaxdyn._checks import check_batch, check_positive, check_steps
    from jaxdyn.models import logits_fn

    check_batch(xs, ys)
    check_steps(steps)
    for b in betas:
        check_positive("beta", b)
    if path == "logit" and gating != "frozen":
        raise ValueError("the logit-space path exists only under frozen gating")

    @jax.jit
    def one_beta(variables, xs, ys, beta):
        f = logits_fn(model, variables)

        def per_example(x, y):
            if path == "logit":
                r = attacks.logit_space_attack(f, x, y, beta=beta, steps=steps)
            else:
                r = attacks.attack(f, x, y, beta=beta, steps=steps, norm="raw", gating=gating)
            p2 = theory.predict(f, x, y, r.hbar_z, beta=beta)
            p1 = theory.predict(f, x, y, r.hbar_z, beta=beta, steps=steps)
            return r.delta, p2["delta_hat"], p1["delta_hat"], p2["g_x"], r.success_step

        d, d2, d1, gx, succ = jax.vmap(per_example)(xs, ys)
        return dict(
            kappa=metrics.kappa(d, d2),
            kappa_theorem1=metrics.kappa(d, d1),
            kappa_first_order=metrics.kappa_first_order(d, gx, beta),
            success_rate=jnp.mean((succ >= 0).astype(d.dtype)),
            mean_delta_norm=jnp.mean(metrics.per_sample_norm(d)),
        )

    dtype = jax.tree.leaves(variables)[0].dtype
    rows = []
    for beta in tqdm(list(betas), desc="κ(β)", disable=not progress):
        t0 = time.perf_counter()
        out = jax.device_get(one_beta(variables, xs, ys, jnp.asarray(beta, dtype)))
        rows.append(dict(beta=float(beta), **{k: float(v) for k, v in out.items()},
                         seconds=time.perf_counter() - t0))
    return rows


def plot(result: dict, path: Path) -> None:
    """Log-log plot of κ, κ (Theorem 1) and κ (first order) against β, from the result JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    b = np.array([r["beta"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(b, [r["kappa"] for r in rows], "o-", label="κ: Theorem 2 (infinite steps)")
    ax.loglog(b, [r["kappa_theorem1"] for r in rows], "s--", label=f"Theorem 1 (m = {rows[0]['steps']})")
    ax.loglog(b, [r["kappa_first_order"] for r in rows], "^:", label="first order β g_x")
    # β² guide through Theorem 1's first point: the error of the averaged H̄_z is O(β²)
    ref = rows[0]["kappa_theorem1"] * (b / b[0]) ** 2
    ax.loglog(b, ref, color="gray", lw=0.8, alpha=0.6, label="∝ β²")
    ax.set_xlabel("attack strength β = α m")
    ax.set_ylabel("relative error  E‖δ*−δ̂‖ / E‖δ*‖")
    r0 = rows[0]
    ax.set_title(f"{r0['model']} (test acc {r0['test_accuracy']:.3f}), {r0['gating']} gating,\n"
                 f"{r0['n_samples']} digits, {r0['dtype']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run(args) -> dict:
    import shutil

    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from jaxdyn import data, models, training

    from jaxdyn._checks import check_positive, check_steps

    if args.n_samples < 1:
        raise ValueError(f"--n-samples must be >= 1, got {args.n_samples}")
    check_steps(args.steps)
    for b in args.betas:
        check_positive("beta", b)
    if args.model not in models.model_names():
        raise ValueError(f"unknown model {args.model!r}; known models: {', '.join(models.model_names())}")
    model, variables, info = training.load_or_train(args.model, **training.quick_config(args.model, seed=args.seed))
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    variables = models.cast(variables, dtype)
    xte, yte = data.load_mnist("test")
    xs, ys = data.subset(xte, yte, args.n_samples, seed=args.seed)
    xs = jnp.asarray(xs, dtype)
    ys = jnp.asarray(ys, jnp.int32)
    rows = sweep(model, variables, xs, ys, betas=args.betas, steps=args.steps, gating=args.gating,
                 path=args.path)
    meta = dict(model=args.model, steps=args.steps, n_samples=int(xs.shape[0]), dtype=args.dtype,
                test_accuracy=float(info["test_accuracy"]), gating=args.gating, path=args.path)
    result = dict(rows=[dict(meta, **r) for r in rows], model_info={k: info[k] for k in ("param_count", "config") if k in info})
    plot(result, args.out / "kappa_vs_beta.png")
    if args.figures_dir:
        Path(args.figures_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "kappa_vs_beta.png", Path(args.figures_dir) / "kappa_vs_beta.png")
    for r in result["rows"]:
        print(f"β={r['beta']:<8.1e} κ={r['kappa']:.3e}  κ(Thm1)={r['kappa_theorem1']:.3e}  "
              f"κ(first order)={r['kappa_first_order']:.3e}  success={r['success_rate']:.2f}")
    return result
