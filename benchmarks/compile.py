"""Benchmark 5: compile time vs run time of the attack scan, and a β sweep that
compiles once.

1. For ``m`` in ``--steps``: the batched raw attack (``attacks.attack``, free gating, the attack
   of the κ experiments) compiled ahead of time and run. ``lax.scan`` compiles its body once, so
   the compile time should not grow with ``m`` while the run time grows linearly.
2. A β sweep through one ``jax.jit`` function with β traced: a Python counter inside the traced
   function counts traces and ``jit``'s cache size counts executables; both must stay at 1
   (the script fails otherwise). For contrast the same sweep with β static
   (``static_argnames``) compiles once per β.

    taskset -c 0 python -m benchmarks.compile
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import multistep as attacks



from jaxdyn.core import models

from jaxdyn._internal import sharding

from benchmarks import common, timing
def attack_fn(model, steps, counter=None):
    def one(variables, x, y, beta):
        if counter is not None:
            counter[0] += 1  # runs once per trace, never at run time
        r = attacks.attack(models.logits_fn(model, variables), x, y, steps=steps, beta=beta)
        return r.delta, r.hbar_z

    return one


def main(argv=None):
    p = common.parser("bench_compile", __doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp3", "cnn3"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--betas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    p.add_argument("--sweep-steps", type=int, default=100, help="m of the β sweep")
    p.add_argument("--budget-s", type=float, default=30.0, help="stop repeating a configuration after this")
    p.set_defaults(repeats=3)
    args = p.parse_args(argv)
    width = 1.0
    if args.tiny:
        args.models, args.batch, args.steps, args.betas, args.sweep_steps, args.repeats = (
            ["mlp3"], 4, [5, 20], [0.5, 1.0, 2.0], 5, 1)
        width = 0.125
    # β as Python floats: an int among them (e.g. a default ``1``) is a different abstract type
    # (weak int32 vs weak float) and retraces -- this benchmark's own check caught exactly that.
    args.betas = [float(b) for b in args.betas]
    common.enable_x64()
    x, y, source = common.load_digits(args.batch, seed=args.seed, dtype="float64")
    results = dict(benchmark="attack scan: compile time vs run time; β sweep compiles once",
                   machine=common.machine_info(), config=vars(args) | dict(width=width, data=source), models={})
    rows = []
    for name in args.models:
        model, variables, minfo = common.init_model(name, dtype=jnp.float64, seed=args.seed, width=width)
        print(f"[{name}] {minfo['params']} params, batch {args.batch}")
        res = results["models"][name] = dict(model=minfo, by_steps=[], sweep={})
        # 1. compile vs run along m
        for m in args.steps:
            g = sharding.shard_batch(attack_fn(model, m), in_axes=(None, 0, 0, None))
            placed, _ = g.place(variables, x, y, 1.0)
            t, _ = timing.compile_and_time(g, *placed, repeats=args.repeats, budget_s=args.budget_s)
            res["by_steps"].append(dict(steps=m, **t))
            ck = "compile_cpu_s" if timing.primary_key() == "cpu_median_s" else "compile_s"
            rows.append({"model": name, "m": m, "compile": timing.fmt_s(t[ck]),
                         "run": timing.fmt_s(timing.t_(t)), "run/step": timing.fmt_s(timing.t_(t) / m),
                         "compile/run": f"{t[ck] / timing.t_(t):.2f}"})
            print(f"  m={m:5d}  compile {timing.fmt_s(t[ck])}  run {timing.fmt_s(timing.t_(t))}")
        # 2. β sweep, β traced: one trace, one executable
        counter = [0]
        run = jax.jit(jax.vmap(attack_fn(model, args.sweep_steps, counter), in_axes=(None, 0, 0, None)))
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        calls, calls_cpu = [], []
        for beta in args.betas:
            t, c, _ = timing.timed_cpu(run, variables, xj, yj, beta)
            calls.append(t)
            calls_cpu.append(c)
        traces, cache = counter[0], run._cache_size()
        # contrast: β static, one compile per value
        counter_s = [0]

        def static_one(variables, x, y, beta):
            return jax.vmap(attack_fn(model, args.sweep_steps, counter_s), in_axes=(None, 0, 0, None))(
                variables, x, y, beta)

        run_s = jax.jit(static_one, static_argnames="beta")
        calls_s, calls_s_cpu = [], []
        for beta in args.betas:
            t, c, _ = timing.timed_cpu(lambda: run_s(variables, xj, yj, beta=beta))
            calls_s.append(t)
            calls_s_cpu.append(c)
        res["sweep"] = dict(
            steps=args.sweep_steps, betas=args.betas, traced=dict(
                traces=traces, executables=cache, call_s=calls, call_cpu_s=calls_cpu, first_call_s=calls[0],
                later_calls_median_s=float(np.median(calls[1:])) if len(calls) > 1 else None,
                total_s=sum(calls), total_cpu_s=sum(calls_cpu)),
            static=dict(traces=counter_s[0], executables=run_s._cache_size(), call_s=calls_s,
                        call_cpu_s=calls_s_cpu, total_s=sum(calls_s), total_cpu_s=sum(calls_s_cpu)),
            compiles_once=bool(traces == 1 and cache == 1),
        )
        print(f"  β sweep ({len(args.betas)} values, m={args.sweep_steps}): traced β -> {traces} trace(s), "
              f"{cache} executable(s), {timing.fmt_s(sum(calls_cpu))} CPU total; static β -> {counter_s[0]} traces, "
              f"{timing.fmt_s(sum(calls_s_cpu))} CPU total")
        if traces != 1 or cache != 1:
            raise SystemExit(f"{name}: the β sweep retraced ({traces} traces, {cache} executables)")
    return timing.finish(args.out, rows, results, note="(median; compile likewise)")


if __name__ == "__main__":
    main()
