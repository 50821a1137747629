"""Benchmark 8: the seeds of one architecture trained one after another vs together (one vmapped
program, :func:`jaxdyn.training.ensemble.train_ensemble`), process CPU seconds, compile and run apart.

* **sequential**: :func:`jaxdyn.training.train` for seeds ``0 … K-1`` in one process. The train step
  is compiled by the first seed only (``cached_step``), so compile = CPU(seed 0) − mean CPU(other
  seeds) and run = the rest.
* **ensemble**: ``train_ensemble`` for seeds ``0 … K-1`` (cold: compile and run), then for seeds
  ``K … 2K-1`` (warm: run only; the same shapes); compile = cold − warm.

Both paths start from empty compilation caches and train the tables' preset at ``--scale`` (the
tables' quick networks by default); the CPU time includes loading the data and the clean test
accuracy of every epoch (the same in both). The number of XLA compilations is counted too.

    taskset -c 0 python -m benchmarks.ensemble [--models mlp3,cnn3] [--n-seeds 3]
"""

from __future__ import annotations

import tempfile
import time

import jax
from jax import monitoring

from jaxdyn.training import TrainConfig, evaluation, presets, step, train
from jaxdyn.training import ensemble as ens

from benchmarks import common, timing

_COMPILES: list = []
_LISTENING: list = []  # registered once per process (main() may run several times, as in the tests)


def _listen(event, duration, **_):
    if "backend_compile" in event:
        _COMPILES.append(duration)


def _cold():
    """Empty compilation caches (jax's and the training package's own)."""
    jax.clear_caches()
    for fn in (step.cached_step, step.init_state_fn, evaluation.correct_fn, ens.ensemble_step):
        fn.cache_clear()


def _cpu(fn):
    n0, c0 = len(_COMPILES), time.process_time()
    out = fn()
    return time.process_time() - c0, len(_COMPILES) - n0, out


def _config(name, scale, seed, trainer="solo"):
    return TrainConfig(model=name, trainer=trainer, **presets.get("table", model=name, scale=scale, seed=seed))


def bench_model(name: str, scale: str, k: int, tmp: str) -> dict:
    _cold()
    seq = [_cpu(lambda s=s: train(_config(name, scale, s), f"{tmp}/{name}-solo{s}", progress=False))
           for s in range(k)]
    cpu = [c for c, _, _ in seq]
    warm = sum(cpu[1:]) / (k - 1) if k > 1 else cpu[0]
    s_compile = max(cpu[0] - warm, 0.0)
    sequential = dict(cpu_per_seed_s=cpu, compiles_per_seed=[n for _, n, _ in seq], compile_cpu_s=s_compile,
                      run_cpu_s=sum(cpu) - s_compile, total_cpu_s=sum(cpu),
                      test_accuracy=[out[2]["test_accuracy"] for _, _, out in seq])
    _cold()

    def together(seeds):
        return ens.train_ensemble([_config(name, scale, s, "ensemble") for s in seeds],
                                  [f"{tmp}/{name}-ens{s}" for s in seeds], progress=False)

    cold_cpu, cold_n, outs = _cpu(lambda: together(range(k)))
    warm_cpu, warm_n, _ = _cpu(lambda: together(range(k, 2 * k)))
    e_compile = max(cold_cpu - warm_cpu, 0.0)
    ensemble = dict(cold_cpu_s=cold_cpu, warm_cpu_s=warm_cpu, compiles=[cold_n, warm_n], compile_cpu_s=e_compile,
                    run_cpu_s=warm_cpu, total_cpu_s=cold_cpu,
                    test_accuracy=[info["test_accuracy"] for _, _, info in outs])
    return dict(sequential=sequential, ensemble=ensemble)


def main(argv=None):
    p = common.parser("bench_ensemble", __doc__.splitlines()[0])
    p.add_argument("--models", default="mlp3,cnn3", help="comma-separated model names")
    p.add_argument("--n-seeds", type=int, default=3, help="seeds per architecture (K)")
    p.add_argument("--scale", default="quick", choices=("tiny", "quick", "full"), help="the tables' preset")
    args = p.parse_args(argv)
    models, k, scale = args.models.split(","), args.n_seeds, args.scale
    if args.tiny:
        models, k, scale = ["mlp3"], 2, "tiny"
    if not _LISTENING:
        monitoring.register_event_duration_secs_listener(_listen)
        _LISTENING.append(True)
    results = dict(machine=common.machine_info(), scale=scale, n_seeds=k, models={})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            r = results["models"][name] = bench_model(name, scale, k, tmp)
            s, e = r["sequential"], r["ensemble"]
            rows.append({"model": name, "K": k,
                         "compile seq/ens": f"{timing.fmt_s(s['compile_cpu_s'])} / {timing.fmt_s(e['compile_cpu_s'])}",
                         "run seq/ens": f"{timing.fmt_s(s['run_cpu_s'])} / {timing.fmt_s(e['run_cpu_s'])}",
                         "total seq/ens": f"{timing.fmt_s(s['total_cpu_s'])} / {timing.fmt_s(e['total_cpu_s'])}",
                         "ratio total": f"{s['total_cpu_s'] / max(e['total_cpu_s'], 1e-9):.2f}x",
                         "ratio run": f"{s['run_cpu_s'] / max(e['run_cpu_s'], 1e-9):.2f}x",
                         "compiles seq/ens": f"{sum(s['compiles_per_seed'])} / {e['compiles'][0]}"})
    return timing.finish(args.out, rows, results, note="(process CPU seconds; ratio = sequential / ensemble)")


if __name__ == "__main__":
    main()
