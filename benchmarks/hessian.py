"""Benchmark 4: per-sample ``H_z`` and ``H_x`` throughput vs batch size, and memory.

Paths, each ``vmap``-ed over the batch (float64, zoo models with random-init weights):

* ``H_z closed``: forward pass + closed-form ``H_z`` (``diag(p) - p pᵀ``), ``[B, C, C]``;
* ``H_z autodiff``: forward pass + ``jax.hessian`` of the loss in the logits, ``[B, C, C]``;
* ``H_x = JᵀH_zJ``: input Jacobian (C backward passes) and the product, ``[B, n, n]``;
* ``H_x jax.hessian``: ``jax.hessian`` of the loss in the input (``n`` forward-over-reverse
  passes), ``[B, n, n]`` — the slow reference, only up to ``--autodiff-max-batch``.

Memory is XLA's plan for the compiled program (arguments + outputs + temporaries, from
``compiled.memory_analysis()``), read before running: a configuration whose plan exceeds
``--mem-limit-gb`` is reported and skipped. How cost grows is the per-sample time along the batch.

    taskset -c 0 python -m benchmarks.hessian
"""

from __future__ import annotations

import time

import jax.numpy as jnp

from jaxdyn.core import losses

from jaxdyn.core import models

from jaxdyn._internal import sharding
from jaxdyn.core.hessian import hessian_z_autodiff, input_hessian, input_hessian_structured

from benchmarks import common, timing


def paths(model):
    def hz_closed(v, x, y):
        return losses.hessian_z(models.logits_fn(model, v)(x), y)

    def hz_autodiff(v, x, y):
        return hessian_z_autodiff(models.logits_fn(model, v)(x), y)

    def hx_structured(v, x, y):
        return input_hessian_structured(models.logits_fn(model, v), x, y)

    def hx_autodiff(v, x, y):
        return input_hessian(models.logits_fn(model, v), x, y)

    return {"H_z closed": hz_closed, "H_z autodiff": hz_autodiff,
            "H_x = JᵀH_zJ": hx_structured, "H_x jax.hessian": hx_autodiff}


def main(argv=None):
    p = common.parser("bench_hessian", __doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp3", "cnn3"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--autodiff-max-batch", type=int, default=16,
                   help="largest batch for the jax.hessian H_x reference (it costs n passes per sample)")
    p.add_argument("--mem-limit-gb", type=float, default=8.0, help="skip configurations XLA plans above this")
    p.add_argument("--budget-s", type=float, default=20.0, help="stop repeating a configuration after this")
    args = p.parse_args(argv)
    width = 1.0
    if args.tiny:
        args.models, args.batches, args.autodiff_max_batch, args.repeats = ["mlp3"], [1, 4], 1, 1
        width = 0.125
    common.enable_x64()
    x_all, y_all, source = common.load_digits(max(args.batches), seed=args.seed, dtype="float64")
    results = dict(benchmark="per-sample H_z and H_x throughput vs batch size", machine=common.machine_info(),
                   config=vars(args) | dict(width=width, data=source), models={})
    rows = []
    for name in args.models:
        model, variables, minfo = common.init_model(name, dtype=jnp.float64, seed=args.seed, width=width)
        print(f"[{name}] {minfo['params']} params")
        res = results["models"][name] = dict(model=minfo, paths={})
        for pname, fn in paths(model).items():
            g = sharding.shard_batch(fn, in_axes=(None, 0, 0))
            res["paths"][pname] = []
            for B in args.batches:
                if pname == "H_x jax.hessian" and B > args.autodiff_max_batch:
                    continue
                placed, _ = g.place(variables, x_all[:B], y_all[:B])
                t0 = time.perf_counter()
                compiled = g.lower(*placed).compile()
                compile_s = time.perf_counter() - t0
                mem = timing.memory_stats(compiled)
                entry = dict(batch=B, compile_s=compile_s, memory=mem)
                if mem is not None and mem["peak_estimate"] > args.mem_limit_gb * 2**30:
                    entry["skipped"] = f"XLA plans {mem['peak_estimate'] / 2**30:.1f} GiB > --mem-limit-gb"
                    print(f"  {pname:16s} B={B:4d}  skipped: {entry['skipped']}")
                    res["paths"][pname].append(entry)
                    continue
                slow = pname == "H_x jax.hessian"
                t, _ = timing.time_compiled(compiled, *placed, repeats=args.repeats, warmup=not slow,
                                        budget_s=args.budget_s)
                entry.update(t, per_sample_s=timing.t_(t) / B, samples_per_s=B / timing.t_(t),
                             timing=timing.primary_key())
                res["paths"][pname].append(entry)
                peak = f"{mem['peak_estimate'] / 2**20:.1f} MiB" if mem else "-"
                print(f"  {pname:16s} B={B:4d}  {timing.fmt_s(timing.t_(t)):>10s}  "
                      f"{timing.fmt_s(entry['per_sample_s']):>10s}/sample  {entry['samples_per_s']:10.1f}/s  "
                      f"peak {peak}")
                rows.append({"model": name, "path": pname, "B": B, "time": timing.fmt_s(timing.t_(t)),
                             "per sample": timing.fmt_s(entry["per_sample_s"]),
                             "samples/s": f"{entry['samples_per_s']:.1f}", "XLA peak": peak})
    return timing.finish(args.out, rows, results, note="(median)")


if __name__ == "__main__":
    main()
