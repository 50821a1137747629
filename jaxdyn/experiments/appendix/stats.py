"""Appendix D/J's statistics: per-digit values over the networks (one per architecture and seed), a
median with its hierarchical bootstrap interval (:func:`jaxdyn.analyses.verdicts.decide`), the same
rule beside at a second threshold, per-network verdicts, and the regime map of a claim tested over
an ε grid (Bonferroni over the grid)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from jaxdyn.analyses.verdicts import Interval, combine, decide, side_verdict
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ACCURACY_FLOOR

__all__ = ["ALPHA", "MIN_DIGITS", "MIN_NET_DIGITS", "networks", "test", "family", "regime"]

#: family-wise error of every claim: a claim tested at k points (ε of the grid, attacks) uses
#: intervals at level ``1 - ALPHA / k`` (Bonferroni; Holm's step-down needs p-values an interval does not give)
ALPHA = 0.05
#: a test needs this many digits (pooled over the networks): with fewer, a percentile interval of the
#: median is set by one or two digits (with one, it is a point) and the test is not testable
MIN_DIGITS = 10
#: a network's own verdict (``per_seed``) needs this many digits, else it is not testable
MIN_NET_DIGITS = 4


def networks(results: dict) -> list[tuple]:
    """``[(label, seed, row, testable)]``, one per network of the results (``"mlp3 s1"``); a network
    below the accuracy floor has collapsed: the claims about trained networks are not testable on it."""
    out = []
    for r in results["rows"]:
        acc = r.get("test_accuracy")
        ok = not (acc is not None and np.isfinite(acc) and acc < ACCURACY_FLOOR)
        out.append((f"{r['model']} s{r.get('seed', 0)}", int(r.get("seed", 0)), r, ok))
    return out


def test(name: str, nets: Sequence[tuple], values: Callable, threshold: float, *, beside: float, level: float = 0.95,
         claim: str = "below") -> dict:
    """The claim "the median over digits of ``values(row)`` (per digit, one array per network) lies
    ``claim`` ``threshold``" on the testable networks: :func:`~jaxdyn.analyses.verdicts.decide`'s
    ``{verdict, statistic, per_seed}``; ``statistic["beside"]`` the verdict of the same interval at
    ``beside`` (e.g. a factor ×2); ``per_seed`` rows carry ``network`` and list collapsed networks as
    not testable. Not testable with fewer than :data:`MIN_DIGITS` finite values in all (a network's
    own row with fewer than :data:`MIN_NET_DIGITS`)."""
    use = [(lbl, s, np.asarray(values(r), np.float64).ravel()) for lbl, s, r, ok in nets if ok]
    n = sum(int(np.isfinite(g).sum()) for _, _, g in use)
    d = decide(name, [g for _, _, g in use], threshold, claim=claim, seeds=list(range(len(use))), level=level,
               testable=n >= MIN_DIGITS)
    for r in d["per_seed"]:
        if r["n_digits"] < MIN_NET_DIGITS:
            r["verdict"] = "not testable"
    st = d["statistic"]
    iv = Interval(st["value"], st["ci"][0], st["ci"][1], level, st["n_seeds"], st["n_digits"], st["n_resamples"])
    st["beside"] = dict(threshold=float(beside), verdict=str(side_verdict(iv, beside, claim=claim)))
    rows = [dict(r, seed=use[r["seed"]][1], network=use[r["seed"]][0]) for r in d["per_seed"]]
    rows += [dict(seed=s, network=lbl, value=None, ci=None, n_digits=0, verdict="not testable",
                  why=f"test accuracy {C.fmt(r.get('test_accuracy'), 3)} below the floor {ACCURACY_FLOOR}")
             for lbl, s, r, ok in nets if not ok]
    return dict(d, per_seed=rows)


def family(tests: Sequence[dict], key: int | None = None) -> dict:
    """One claim from several tests (each from :func:`test` at the family's level): the verdict
    :func:`~jaxdyn.analyses.verdicts.combine`; the statistic of test ``key`` (default: the last
    testable test — tests ordered by increasing strength, the hardest one measured), with every
    test's ``{value, ci, n_digits, verdict}`` under ``tests``; per network, the combination of its
    verdicts and its value in test ``key``."""
    if key is None:
        key = max([i for i, t in enumerate(tests) if t["verdict"] != "not testable"] or [len(tests) - 1])
    stat = dict(tests[key]["statistic"], tests=[dict(label=t.get("label"), value=t["statistic"]["value"],
                                                     ci=t["statistic"]["ci"], n_digits=t["statistic"]["n_digits"],
                                                     verdict=t["verdict"], beside=t["statistic"]["beside"])
                                                for t in tests])
    names = [r["network"] for r in tests[key]["per_seed"]]
    per = []
    for n in names:
        rs = [next(r for r in t["per_seed"] if r["network"] == n) for t in tests]
        per.append(dict(rs[key], verdict=str(combine([r["verdict"] for r in rs]))))
    return dict(verdict=str(combine([t["verdict"] for t in tests])), statistic=stat, per_seed=per)


def regime(tests: Sequence[dict], points: Sequence[float], *, what: str = "ε") -> dict:
    """The regime map of a claim "ratio < 1" tested at increasing ``points``: ``{"upto", "factor",
    "n_networks", "of", "text"}`` — the largest point up to which every test holds (``None`` when the
    first does not), ``factor`` = 1 / the largest median ratio there, and the networks whose own
    verdict holds at every point up to it."""
    n = 0
    while n < len(tests) and tests[n]["verdict"] == "holds":
        n += 1
    nets = {r["network"] for t in tests for r in t["per_seed"] if r["verdict"] != "not testable"}
    if n == 0:
        first = tests[0] if tests else None
        why = f"{first['verdict']} at {what} = {points[0]:g}" if first else "no test"
        return dict(upto=None, factor=None, n_networks=0, of=len(nets),
                    text=f"beats g_x at no {what} of the grid ({why})")
    held = tests[:n]
    factor = 1.0 / max(t["statistic"]["value"] for t in held)
    ok = {r["network"] for r in held[0]["per_seed"]}
    for t in held:
        ok &= {r["network"] for r in t["per_seed"] if r["verdict"] == "holds"}
    upto = points[n - 1]
    rest = "" if n == len(tests) else f"; beyond: {tests[n]['verdict']} at {what} = {points[n]:g}"
    return dict(upto=upto, factor=factor, n_networks=len(ok), of=len(nets),
                text=f"beats g_x by ×{factor:.3g} (median) up to {what} = {upto:g} on {len(ok)} of {len(nets)} "
                     f"networks{rest}")
