"""Benchmark 1: Theorem 2's δ̂ for a batch of MNIST digits, C×C path vs n×n path.

* **C×C path** (jaxdyn): ``theory.predict`` — one input Jacobian ``J: [C, n]`` (C backward passes)
  and one ``(C+1)×(C+1)`` matrix exponential per digit, ``δ̂ = β Jᵀ φ(β H_z J Jᵀ) g_z``.
* **n×n path** (the naive way): ``jax.hessian`` of the loss in the input (``[n, n]``, ``n = 784``)
  and ``eigh``, then Eq. (6) summed over the eigenpairs (``theory.theorem2_eig``).

Both use ``H̄_z = H_z(x)`` (for a ReLU network ``jax.hessian`` gives exactly ``Jᵀ H_z J``), in
float64. The n×n path runs in chunks of ``--chunk`` digits (its dense Hessians would not fit in
memory for a whole batch of a CNN) and, because it is slow, on the first ``--ref-batch`` digits of
the batch; its per-digit cost does not depend on the batch beyond the chunk, so the speed-up is
the ratio of per-digit times. Target: ≥ 50× faster, max relative difference ≤ 1e-5.

    taskset -c 0 python -m benchmarks.theorem2            # mlp3 and cnn3, 256 digits
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdyn.core import losses

from jaxdyn.core import models

from jaxdyn._internal import sharding

from jaxdyn.core import theory
from jaxdyn.core.hessian import input_hessian

from benchmarks import common, timing


def cc_fn(model):
    def one(variables, x, y, beta):
        return theory.predict(models.logits_fn(model, variables), x, y, beta=beta).delta_hat

    return one


def nn_fn(model):
    def one(variables, x, y, beta):
        f = models.logits_fn(model, variables)
        g_x = jax.grad(lambda t: losses.loss(f(t), y))(x).ravel()
        H = input_hessian(f, x, y)
        return theory.theorem2_eig(g_x, H, beta).delta.reshape(x.shape)

    return one


def top_lambda(model):
    """``λ_max(H_x)`` from the C×C eigenproblem (context for the β regime): with
    ``H_z = P Pᵀ`` and ``B = Pᵀ J``, the non-zero eigenvalues of ``H_x = Bᵀ B`` are those of
    ``B Bᵀ``."""

    def one(variables, x, y):
        f = models.logits_fn(model, variables)
        J = jax.jacrev(f)(x).reshape(-1, x.size)
        s, U = jnp.linalg.eigh(losses.hessian_z(f(x), y))
        B = (U * jnp.sqrt(jnp.clip(s, 0.0))[None, :]).T @ J
        return jnp.linalg.eigvalsh(B @ B.T)[-1]

    return one


def main(argv=None):
    p = common.parser("bench_theorem2", __doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp3", "cnn3"])
    p.add_argument("--batch", type=int, default=256, help="digits (C×C path)")
    p.add_argument("--ref-batch", type=int, default=32,
                   help="digits of the batch also run through the slow n×n path (0: all)")
    p.add_argument("--chunk", type=int, default=4, help="digits per chunk of the n×n path (memory)")
    p.add_argument("--ref-repeats", type=int, default=2, help="timed runs of the n×n path")
    p.add_argument("--beta", type=float, default=1.0, help="total strength β of Theorem 2")
    args = p.parse_args(argv)
    if args.tiny:
        args.models, args.batch, args.ref_batch, args.repeats, args.ref_repeats = ["mlp3"], 8, 2, 1, 1
        width = 0.125
    else:
        width = 1.0
    ref_batch = args.batch if args.ref_batch <= 0 else min(args.ref_batch, args.batch)
    common.enable_x64()
    x_all, y_all, source = common.load_digits(args.batch, seed=args.seed, dtype="float64")
    results = dict(benchmark="theorem2 δ̂: C×C path vs jax.hessian + eigh (n×n)",
                   machine=common.machine_info(), config=vars(args) | dict(width=width, data=source),
                   models={})
    rows = []
    for name in args.models:
        model, variables, minfo = common.init_model(name, dtype=jnp.float64, seed=args.seed, width=width)
        print(f"[{name}] {minfo['params']} params, batch {args.batch}, n×n reference on {ref_batch}")
        cc = sharding.shard_batch(cc_fn(model), in_axes=(None, 0, 0, None))
        nn = sharding.shard_batch(nn_fn(model), in_axes=(None, 0, 0, None), chunk_size=args.chunk)
        placed_cc, _ = cc.place(variables, x_all, y_all, args.beta)
        placed_nn, _ = nn.place(variables, x_all[:ref_batch], y_all[:ref_batch], args.beta)
        t_cc, d_cc = timing.compile_and_time(cc, *placed_cc, repeats=args.repeats)
        t_nn, d_nn = timing.compile_and_time(nn, *placed_nn, repeats=args.ref_repeats,
                                         warmup=False)
        err = common.rel_err_max(d_cc[:ref_batch], d_nn)
        lam = jax.jit(jax.vmap(top_lambda(model), in_axes=(None, 0, 0)))(variables, x_all[:ref_batch],
                                                                         y_all[:ref_batch])
        per_cc, per_nn = timing.t_(t_cc) / args.batch, timing.t_(t_nn) / ref_batch
        speedup = per_nn / per_cc
        speedup_wall = (t_nn["median_s"] / ref_batch) / (t_cc["median_s"] / args.batch)
        results["models"][name] = dict(
            model=minfo, batch=args.batch, ref_batch=ref_batch, beta=args.beta,
            beta_lambda_max_median=float(args.beta * jnp.median(lam)), timing=timing.primary_key(),
            cc=t_cc, nn=t_nn, per_digit_cc_s=per_cc, per_digit_nn_s=per_nn, speedup=speedup,
            speedup_wall=speedup_wall, max_rel_diff=err, target_speedup=50.0, target_rel_diff=1e-5,
            met=bool(speedup >= 50.0 and err <= 1e-5),
        )
        rows.append(dict(model=name, **{
            f"C×C ({args.batch})": timing.fmt_s(timing.t_(t_cc)), "C×C /digit": timing.fmt_s(per_cc),
            f"n×n ({ref_batch})": timing.fmt_s(timing.t_(t_nn)), "n×n /digit": timing.fmt_s(per_nn),
            "speed-up": f"{speedup:.0f}x", "(wall)": f"{speedup_wall:.0f}x", "max rel diff": f"{err:.1e}",
            "compile C×C / n×n": f"{t_cc['compile_s']:.1f} s / {t_nn['compile_s']:.1f} s"}))
    return timing.finish(args.out, rows, results, note="(median)")


if __name__ == "__main__":
    main()
