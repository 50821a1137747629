"""What Figures 3 and 4 share: the binary, adversarially trained networks and the digits they
measure (one config, so both figures measure the same networks on the same digits); the
measurement itself is :func:`jaxdyn.analyses.influence_measure.binary_influence`."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from jaxdyn.analyses.influence_measure import binary_influence, first_layer_size
from jaxdyn.analyses.influence_ranks import digit_resamples, pooled_over_seeds, rho_rows
from jaxdyn.analyses.verdicts import Interval, combine, side_verdict
from jaxdyn.experiments._common.core import (FIGURE_ADV_BINARY, NetworksConfig, by_piece, correct_subset, fixed_digits,
                                             load_model, train_summary)
from jaxdyn.experiments._common.core import help_field as _help
from jaxdyn.experiments._common.fields import check_keys
from jaxdyn.experiments.claims import ACCURACY_FLOOR, RANK_RULE, ClaimText, rank_family, render

__all__ = ["BinaryInfluenceConfig", "BINARY_INFLUENCE_SCALES", "binary_influence_runs", "rho_claim",
           "rank_claim"]


@dataclasses.dataclass(frozen=True)
class BinaryInfluenceConfig(NetworksConfig):
    """The knobs Figs. 3 and 4 share (their ``Config`` adds its own after these): binary (3 vs 5)
    networks, ℓ∞-PGD adversarially trained (``train`` has ``binary``), ``n_samples`` correctly
    classified training digits each."""

    width: float = _help("width multiplier of the networks")
    widths: Any = _help("per-model width overriding --width (JSON dict)")
    steps: int = _help("steps m of the raw attack (α = β/m)")
    A0: float = _help("β is set so that the median clean-input A = β H_z ||g̃_x||² is A0")
    eta: float = _help("learning rate η of Δg̃_x = -η Δg_W g̃_h (scales φ only)")
    chunk: Optional[int] = _help("samples per compiled call (bounds memory; none: all at once)")
    accuracy_floor: float = _help("test accuracy below which a network counts as collapsed: its tests are "
                                  "'not testable' (claims only)")

    def check(self) -> None:
        """``ValueError`` for a bad value of the shared knobs."""
        for k in ("width", "n_samples", "steps", "A0", "eta", "chunk"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ValueError(f"{k} must be > 0, got {v}")
        if not 0 <= self.accuracy_floor < 1:
            raise ValueError(f"accuracy_floor must lie in [0, 1), got {self.accuracy_floor}")
        if not (isinstance(self.widths, dict) and isinstance(self.train, dict) and "binary" in self.train):
            raise ValueError("widths must be a dict, and train a dict of load_or_train arguments with 'binary'")
        check_keys("widths", self.widths, self.models)  # a width for a network not measured is a typo
        for k, w in self.widths.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                raise ValueError(f"widths: the width of {k} must be a number > 0, got {w!r}")


_BINARY_BASE = dict(models=("alexnet", "vgg11", "resnet50"), A0=1.0, eta=1e-3, seeds=(0, 1, 2, 3, 4),
                    accuracy_floor=ACCURACY_FLOOR)
#: the presets of :class:`BinaryInfluenceConfig` per scale: Figs. 3 and 4 measure the same networks
#: on the same digits
BINARY_INFLUENCE_SCALES = {
    "tiny": dict(_BINARY_BASE, seeds=(0,), models=("cnn3",), width=1 / 16, widths={}, n_samples=12, steps=5,
                 chunk=None, train=FIGURE_ADV_BINARY["tiny"]),
    # quick: ResNet-18 stands in for ResNet-50 (the full scale keeps ResNet-50): on one CPU core the
    # ResNet-50's training and compiles alone took ~7 min, and at width 0.0625 it reached 0.71 test
    # accuracy against ResNet-18's 0.92 at width 0.125 (docs/performance.md, "reproduce --quick")
    "quick": dict(_BINARY_BASE, seeds=(0, 1), models=("alexnet", "vgg11", "resnet18"), width=0.125, widths={},
                  n_samples=60, steps=20, chunk=None, train=FIGURE_ADV_BINARY["quick"]),
    "full": dict(_BINARY_BASE, width=1.0, widths={}, n_samples=1000, steps=100, chunk=50,
                 train=FIGURE_ADV_BINARY["full"]),
}


def binary_influence_runs(cfg: BinaryInfluenceConfig, entry: Callable, *, progress: bool, desc: str, out=None,
                          betas_A0: Sequence[float] = ()) -> dict:
    """Figs. 3-4's measurement, network by network and seed by seed: train or load (cached) each of
    ``cfg.models`` at each of ``cfg.seeds`` (independently trained networks), take ``cfg.n_samples``
    correctly classified training digits of the binary task from that seed's own seeded pool (so
    seeds replicate networks *and* digits) and measure them
    (:func:`jaxdyn.analyses.influence_measure.binary_influence`).

    Returns ``{name: [entry(name, meta, runs) for each seed]}`` in the order of ``cfg.seeds``;
    ``meta`` has ``seed, width, test_accuracy, robust_accuracy, train, n_samples, first_layer,
    time_s``. With ``out``, each (network, seed) entry is a piece of the run
    (:class:`~jaxdyn.experiments.runner.Pieces`: stored when done, reused when the run resumes)."""
    pools: dict = {}

    def one(key):
        name, seed = key.rsplit("@", 1)
        seed = int(seed)
        if seed not in pools:
            pools[seed] = fixed_digits(max(3 * cfg.n_samples, 100), seed=seed + 1, binary=cfg.train["binary"],
                                       split="train")
        x_pool, y_pool = pools[seed]
        width = cfg.widths.get(name, cfg.width)
        t0 = time.perf_counter()
        model, variables, info = load_model(name, cfg.train, seed=seed, seeds=cfg.seeds, overrides=dict(width=width),
                                            progress=progress)
        t1 = time.perf_counter()
        xs, ys, _ = correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
        layer, runs = binary_influence(model, variables, xs, ys, A0=cfg.A0, steps=cfg.steps, eta=cfg.eta,
                                       chunk=cfg.chunk, betas_A0=betas_A0)
        meta = dict(seed=seed, width=width, dgw_dim=first_layer_size(model, variables),
                    test_accuracy=info.get("test_accuracy"), robust_accuracy=info.get("robust_accuracy"),
                    train=train_summary(info), n_samples=int(len(xs)), first_layer=layer,
                    time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        return entry(name, meta, runs)

    keys = [f"{m}@{s}" for m in cfg.models for s in cfg.seeds]
    done = by_piece(one, keys, out=out, progress=progress, desc=desc)
    return {m: [done[f"{m}@{s}"] for s in cfg.seeds] for m in cfg.models}



def _interval(value: float, boot: np.ndarray, level: float, n_seeds: int = 1, n_digits: int = 1) -> Interval:
    """The percentile interval of the finite resamples (a resample whose ρ is undefined, e.g. a
    constant resampled column, is dropped; none finite: NaN, which reads as not testable)."""
    boot = np.asarray(boot, float)
    fin = boot[np.isfinite(boot)]
    lo, hi = np.quantile(fin, [(1 - level) / 2, (1 + level) / 2]) if fin.size else (np.nan, np.nan)
    return Interval(float(value), float(lo), float(hi), level, n_seeds, n_digits, len(boot))


def _above(value: float, boot: np.ndarray, level: float) -> str:
    return str(side_verdict(_interval(value, boot, level), 0.0, claim="above"))


def rho_claim(nets: dict, select: Callable, tests: Sequence, *, floor: float, offset: Callable = lambda d, lb: 0.0,
              alpha: float = 0.05, n_resamples: int = 4000, seed: int = 0, min_digits: int = 5) -> dict:
    """The verdict fields of a Figs. 3-4 claim "these ranks rise together" (threshold 0, claim above).

    ``nets``: ``{architecture: [entry per seed]}``; ``select(entry)``: the claim's per-digit columns
    of one network (``{name: [n]}``; digits with a non-finite value are dropped); ``tests``:
    ``[(label, kind, column names)]`` (:func:`jaxdyn.analyses.influence_ranks.rho_rows`);
    ``offset(entry, label)``: subtracted from that network's ρ (a null model's median; 0 by default).

    Per (architecture, test) the statistic is the mean over seeds of ρ - offset and its interval the
    hierarchical bootstrap (networks, then digits, ρ recomputed) at level 1 - α/k, Bonferroni over
    the k testable intervals so that all of them hold together at 1 - α: holds above 0, does not
    hold below, inconclusive across. A network below ``floor`` (test accuracy) or with fewer than
    ``min_digits`` digits is not testable, never refuted. The claim's verdict combines the k
    verdicts (:func:`jaxdyn.analyses.verdicts.combine`); its ``statistic`` is the mean over the k
    tests, with a 1 - α interval from the same resamples; ``per_seed`` applies the same rule to the
    networks of each seed alone (digits resampled). Returns ``{verdict, statistic, per_seed, tests,
    untestable}``."""
    seeds = sorted({int(d.get("seed", 0)) for ds in nets.values() for d in ds})
    nets_info, rho = {}, {}  # (network, seed) -> {testable, n, acc}; (network, seed, test) -> (value, [B])
    for a, (m, ds) in enumerate(nets.items()):
        for d in ds:
            s, acc = int(d.get("seed", 0)), d.get("test_accuracy")
            cols = {k: np.asarray(v, float) for k, v in select(d).items()}
            ok = np.all([np.isfinite(v) for v in cols.values()], axis=0)
            n = int(ok.sum())
            nets_info[m, s] = dict(testable=(acc is None or not acc < floor) and n >= min_digits, n=n, acc=acc)
            if not nets_info[m, s]["testable"]:
                continue
            idx = digit_resamples(n, n_resamples=n_resamples, seed=seed + 1009 * a + s)
            for label, kind, names in tests:
                xs, off = tuple(cols[k][ok] for k in names), float(offset(d, label))
                rho[m, s, label] = (float(rho_rows(kind, xs)) - off, rho_rows(kind, tuple(x[idx] for x in xs)) - off)
    rows, boots = [], []
    for a, m in enumerate(nets):
        live = [s for s in seeds if nets_info.get((m, s), {}).get("testable")]
        for label, _, _ in tests:
            row = dict(network=m, test=label, n_seeds=len(live), seeds=live,
                       n_digits=sum(nets_info[m, s]["n"] for s in live))
            rows.append(row)
            if live:
                value, boot = pooled_over_seeds(np.array([rho[m, s, label][0] for s in live]),
                                                np.stack([rho[m, s, label][1] for s in live]), seed=seed + a)
                row["value"] = value
                boots.append(boot)
    live_rows = [r for r in rows if "value" in r]
    level = 1 - alpha / max(len(live_rows), 1)
    for r, boot in zip(live_rows, boots):
        r.update(ci=_interval(r["value"], boot, level).ci, level=level, verdict=_above(r["value"], boot, level))
    for r in rows:
        r.setdefault("verdict", "not testable")
    used = [v for v in nets_info.values() if v["testable"]]
    iv = _interval(float(np.mean([r["value"] for r in live_rows])) if live_rows else np.nan,
                   np.mean(boots, 0) if boots else np.array([]), 1 - alpha,
                   len({s for r in live_rows for s in r["seeds"]}), sum(v["n"] for v in used))
    per_seed = []
    for s in seeds:
        here = [(m, lb) for m in nets for lb, _, _ in tests if (m, s, lb) in rho]
        vals = [rho[m, s, lb][0] for m, lb in here]
        mean_boot = np.mean([rho[m, s, lb][1] for m, lb in here], 0) if here else np.array([])
        per_seed.append(dict(seed=s, value=float(np.mean(vals)) if vals else float("nan"),
                             ci=_interval(0.0, mean_boot, 1 - alpha).ci,
                             n_digits=sum(v["n"] for (m, t), v in nets_info.items() if t == s and v["testable"]),
                             verdict=str(combine([_above(*rho[m, s, lb], level) for m, lb in here]))))
    low = [f"{m} seed {s} ({v['acc']:.3g})" for (m, s), v in nets_info.items() if v["acc"] is not None
           and v["acc"] < floor]
    few = [f"{m} seed {s} ({v['n']} digits)" for (m, s), v in nets_info.items() if v["n"] < min_digits]
    untestable = "; ".join(x for x in (f"below the accuracy floor {floor}: {', '.join(low)}" if low else "",
                                       f"fewer than {min_digits} digits: {', '.join(few)}" if few else "") if x)
    return dict(verdict=str(combine([r["verdict"] for r in rows])), tests=rows, untestable=untestable, level=level,
                statistic=dict(name="ρ, mean over the claim's tests (each: mean over seeds of one network's ρ)",
                               value=iv.value, ci=iv.ci, level=iv.level, n_digits=iv.n_digits, n_seeds=iv.n_seeds,
                               n_resamples=n_resamples, threshold=0.0, side="above", n_tests=len(rows),
                               tests=rows),
                per_seed=per_seed)


def _row_text(r: dict) -> str:
    if "value" not in r:
        return f"{r['network']} {r['test']}"
    return (f"{r['network']} {r['test']} {r['value']:.3g} [{r['ci'][0]:.3g}, {r['ci'][1]:.3g}] ({r['n_seeds']} seeds, "
            f"{r['n_digits']} digits)")


def rank_claim(text: ClaimText, values: dict, nets: dict, select: Callable, tests: Sequence, pvalues: Callable, *,
               floor: float, null: str = "", seed: int = 0, **kw) -> dict:
    """One rendered Figs. 3-4 claim: the verdict of :func:`rho_claim` (intervals over seeds and
    digits), beside it the Holm family of per-network p-values (``pvalues(entry)`` -> ``[(label,
    {"rho", "p", ...})]`` for every network and seed, :func:`jaxdyn.experiments.claims.rank_family`)
    in ``statistic.holm``, the rule (``{rank_rule}`` in ``text``) and, unless it holds, the cause:
    every test's value and interval by verdict, the networks not testable, the Holm counts."""
    f = rho_claim(nets, select, tests, floor=floor, seed=seed, **kw)
    fam = [(f"{m} seed {d.get('seed', 0)}", lb, r) for m, ds in nets.items() for d in ds for lb, r in pvalues(d)]
    accs = {f"{m} seed {d.get('seed', 0)}": d.get("test_accuracy") for m, ds in nets.items() for d in ds}
    h = rank_family(fam, accuracies=accs, floor=floor, name="tests holding after Holm", seed=seed,
                    n_digits=f["statistic"]["n_digits"])["statistic"]
    holm = {k: h[k] for k in ("value", "n_tests", "n_does_not_hold", "n_inconclusive", "n_not_testable")}
    rule = RANK_RULE.format(null=null, k=sum("ci" in r for r in f["tests"]), alpha=0.05, level=f["level"],
                            B=f["statistic"]["n_resamples"], floor=floor,
                            extra=f" ({f['untestable']})" if f["untestable"] else "")
    cause = None
    if f["verdict"] != "holds":
        by = {v: [_row_text(r) for r in f["tests"] if r["verdict"] == v] for v in
              ("does not hold", "inconclusive", "holds", "not testable")}
        cause = "; ".join([f"{v}: {', '.join(ts)}" for v, ts in by.items() if ts] + [f["untestable"]] * bool(
            f["untestable"]) + [f"Holm over the per-network p-values ({holm['n_tests']} tests, networks × seeds × "
                                f"tests): {holm['value']} hold, {holm['n_does_not_hold']} do not"])
    return render(text, dict(values, rank_rule=rule), verdict=f["verdict"], statistic=dict(f["statistic"], holm=holm),
                  per_seed=f["per_seed"], cause=cause)
