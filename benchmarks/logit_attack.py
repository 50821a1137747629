"""Benchmark 2: the frozen-gating (A2) raw attack with m steps, in logit space vs a
scan through the network.

* **logit space** (jaxdyn): ``attacks.logit_space_attack`` — one input Jacobian ``J: [C, n]``
  (C backward passes), then ``m`` steps of ``u <- u + α G g_z(z_0 + u)`` with ``G = J Jᵀ``
  (``O(C²)`` each).
* **scan through the network**: ``attacks.attack(..., gating="frozen")`` — ``m`` steps of a
  forward (``jvp``) and backward pass through the linearised network.

Both give the same perturbation up to rounding (checked: max relative difference of ``δ`` and of
``H̄_z``). To explain the ratio, the script also times the Jacobian alone: the logit path costs
about one Jacobian (≈ C backward passes), the scan about ``m`` forward+backward passes, so the
ideal ratio is about ``m · t_step / t_jacobian``. Target: ≥ 20×.

    taskset -c 0 python -m benchmarks.logit_attack
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxdyn.attacks import multistep as attacks

from jaxdyn.core import models

from jaxdyn._internal import sharding
from jaxdyn.core.gating import input_jacobian

from benchmarks import common, timing


def logit_fn(model, steps):
    def one(variables, x, y, beta):
        r = attacks.logit_space_attack(models.logits_fn(model, variables), x, y, steps=steps, beta=beta)
        return r.delta, r.hbar_z

    return one


def scan_fn(model, steps):
    def one(variables, x, y, beta):
        r = attacks.attack(models.logits_fn(model, variables), x, y, steps=steps, beta=beta, gating="frozen")
        return r.delta, r.hbar_z

    return one


def jac_fn(model):
    def one(variables, x):
        return input_jacobian(models.logits_fn(model, variables), x)

    return one


def main(argv=None):
    p = common.parser("bench_logit_attack", __doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp3", "cnn3"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000, help="attack steps m")
    p.add_argument("--beta", type=float, default=1.0, help="total strength β (α = β/m)")
    p.add_argument("--scan-repeats", type=int, default=2, help="timed runs of the (slow) scan path")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = p.parse_args(argv)
    width = 1.0
    if args.tiny:
        args.models, args.batch, args.steps, args.repeats, args.scan_repeats = ["mlp3"], 4, 50, 1, 1
        width = 0.125
    if args.dtype == "float64":
        common.enable_x64()
    dt = jnp.dtype(args.dtype)
    x, y, source = common.load_digits(args.batch, seed=args.seed, dtype=dt.name)
    results = dict(benchmark=f"frozen-gating raw attack, m={args.steps}: logit space vs scan through the network",
                   machine=common.machine_info(), config=vars(args) | dict(width=width, data=source), models={})
    rows = []
    for name in args.models:
        model, variables, minfo = common.init_model(name, dtype=dt, seed=args.seed, width=width)
        print(f"[{name}] {minfo['params']} params, batch {args.batch}, m = {args.steps}, {dt.name}")
        lg = sharding.shard_batch(logit_fn(model, args.steps), in_axes=(None, 0, 0, None))
        sc = sharding.shard_batch(scan_fn(model, args.steps), in_axes=(None, 0, 0, None))
        jc = sharding.shard_batch(jac_fn(model), in_axes=(None, 0))
        placed, _ = lg.place(variables, x, y, args.beta)
        t_lg, (d_lg, h_lg) = timing.compile_and_time(lg, *placed, repeats=args.repeats)
        t_jc, _ = timing.compile_and_time(jc, *placed[:2], repeats=args.repeats)
        t_sc, (d_sc, h_sc) = timing.compile_and_time(sc, *placed, repeats=args.scan_repeats, warmup=False)
        speedup = timing.t_(t_sc) / timing.t_(t_lg)
        speedup_wall = t_sc["median_s"] / t_lg["median_s"]
        t_step = timing.t_(t_sc) / args.steps
        ideal = args.steps * t_step / timing.t_(t_jc)
        err_d = common.rel_err_max(d_lg, d_sc)
        err_h = common.rel_err_max(h_lg, h_sc)
        results["models"][name] = dict(
            model=minfo, batch=args.batch, steps=args.steps, beta=args.beta, timing=timing.primary_key(),
            logit=t_lg, scan=t_sc, jacobian=t_jc, scan_step_s=t_step, speedup=speedup,
            speedup_wall=speedup_wall, ideal_speedup_m_step_over_jacobian=ideal,
            jacobian_share_of_logit_path=timing.t_(t_jc) / timing.t_(t_lg),
            logit_step_s=(timing.t_(t_lg) - timing.t_(t_jc)) / args.steps,
            max_rel_diff_delta=err_d, max_rel_diff_hbar_z=err_h, target_speedup=20.0,
            met=bool(speedup >= 20.0),
        )
        rows.append(dict(model=name, **{
            "logit": timing.fmt_s(timing.t_(t_lg)), "scan": timing.fmt_s(timing.t_(t_sc)),
            "speed-up": f"{speedup:.0f}x", "(wall)": f"{speedup_wall:.0f}x", "Jacobian": timing.fmt_s(timing.t_(t_jc)),
            "scan step": timing.fmt_s(t_step), "m·step/Jacobian": f"{ideal:.0f}x",
            "rel diff δ / H̄_z": f"{err_d:.1e} / {err_h:.1e}",
            "compile logit / scan": f"{t_lg['compile_s']:.1f} s / {t_sc['compile_s']:.1f} s"}))
    return timing.finish(args.out, rows, results, note="(median)")


if __name__ == "__main__":
    main()
