"""Claims: what the paper says, what was measured, and the rule that turns one into a verdict.

A claim is data: each experiment's ``claims(results)`` returns a
list of :func:`claim` dicts, computed next to the rule that decides them; ``claims.json`` holds
them; ``REPORT.md`` renders them and decides nothing. Every verdict rule here has a test that
shows it can return ``"does not hold"`` (``tests/test_claims.py``).

Fields of a claim:

* ``id``: stable, machine-readable (``"table1.kappa_small"``);
* ``claim``: the statement tested, in words; ``paper``: what the paper reports for it;
* ``protocol``: how it was measured (model, β, m, dtype, sample counts, accuracies);
* ``measured``: the numbers the verdict rests on (text);
* ``baselines``: the same numbers for the baselines (first order, no curvature, ...), text or ``""``;
* ``controls``: the control / null model that could make the claim fail, text or ``""``;
* ``rule``: the rule, stated so a reader can recompute the verdict;
* ``verdict``: one of :data:`VERDICTS`.

Claims as data (:mod:`jaxdyn.analyses.verdicts`, ``docs/statistics.md``), required of every claim and
validated:

* ``statistic``: ``{name, value, ci: [lo, hi], level, n_digits, n_seeds, n_resamples}``
  (:func:`jaxdyn.analyses.verdicts.statistic_record`);
* ``per_seed``: ``[{seed, value, ci, n_digits, verdict}]`` (:func:`jaxdyn.analyses.verdicts.per_seed`);
* ``cause``: the measured reason a verdict is not "holds" (required then, once ``statistic`` is given).
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any, Mapping, Sequence

from jaxdyn.analyses.verdicts import combine, holm_verdicts

__all__ = ["VERDICTS", "ClaimText", "render", "claim", "could_not_read", "range_verdict", "count_verdict",
           "rank_verdict", "rank_tests",
           "family_statistic", "family_cause", "accuracy_floor_note", "rank_family", "RANK_RULE",
           "ACCURACY_FLOOR"]

VERDICTS = ("holds", "holds partly", "does not hold", "inconclusive", "not testable")
FIELDS = ("id", "claim", "paper", "protocol", "measured", "baselines", "controls", "rule", "verdict")
STATISTIC_FIELDS = ("name", "value", "ci", "n_digits", "n_seeds")
#: the default test-accuracy floor of a trained MNIST network: below it the network has collapsed (a
#: linear classifier reaches ~0.92, chance is 0.1; the adversarially trained VGG-11 of Fig. 5 at quick
#: scale reached 0.52) and a claim about trained networks is "not testable" on it, never "does not hold"
ACCURACY_FLOOR = 0.8


def claim(id: str, claim: str, *, paper: str, protocol: str, measured: str, rule: str, verdict: str,
          baselines: str = "", controls: str = "", statistic: dict | None = None, per_seed: list | None = None,
          cause: str | None = None) -> dict:
    """One claim (see the module docstring); ``ValueError`` for a verdict outside :data:`VERDICTS`, a
    ``statistic`` without its fields, or a verdict other than "holds" with a ``statistic`` but no ``cause``."""
    verdict = str(verdict)
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    out = dict(id=id, claim=claim, paper=paper, protocol=protocol, measured=measured, baselines=baselines,
               controls=controls, rule=rule, verdict=verdict)
    if statistic is None or per_seed is None:
        raise ValueError(f"claim {id!r}: a claim is data — give its statistic and its per_seed verdicts")
    if statistic is not None:
        missing = [k for k in STATISTIC_FIELDS if k not in statistic]
        if missing:
            raise ValueError(f"claim {id!r}: statistic lacks {missing}")
        if verdict != "holds" and not cause:
            raise ValueError(f"claim {id!r}: verdict {verdict!r} needs its measured cause")
        out["statistic"] = statistic
    if per_seed is not None:
        bad = [r for r in per_seed if str(r.get("verdict")) not in VERDICTS or "seed" not in r]
        if bad:
            raise ValueError(f"claim {id!r}: per_seed rows need a seed and one of {VERDICTS}, got {bad[0]}")
        out["per_seed"] = [dict(r, verdict=str(r["verdict"])) for r in per_seed]
    if cause:
        out["cause"] = cause
    return out


@dataclasses.dataclass(frozen=True)
class ClaimText:
    """The words of one claim, each field a :meth:`str.format` template over the claim's measured
    values (``"κ = {kappa:.3g} at β = {beta:g}"``); :func:`render` fills them. An experiment keeps
    its claims as data — one ``ClaimText`` per claim, and a mapping of values computed beside the
    rule — instead of formatting prose by hand."""

    id: str
    claim: str
    paper: str
    protocol: str
    measured: str
    rule: str
    baselines: str = ""
    controls: str = ""

    def fields(self) -> tuple[str, ...]:
        """The placeholders the templates use (``"kappa"`` for ``"{kappa:.3g}"``, ``"row"`` for
        ``"{row[kappa]}"``)."""
        names = []
        for f in dataclasses.fields(self):
            for _, name, _, _ in string.Formatter().parse(getattr(self, f.name)):
                if name:
                    root = name.split(".")[0].split("[")[0]
                    if root not in names:
                        names.append(root)
        return tuple(names)


def render(text: ClaimText, values: Mapping[str, Any], *, verdict: str, statistic: dict | None = None,
           per_seed: list | None = None, cause: str | None = None) -> dict:
    """The claim of :func:`claim`, its text fields filled from ``values`` (``KeyError`` naming the
    claim and the placeholder when a value is missing, so a template and its data cannot drift)."""
    missing = [n for n in text.fields() if n not in values]
    if missing:
        raise KeyError(f"claim {text.id!r}: no value for {missing}")
    fill = {f.name: getattr(text, f.name).format_map(values) for f in dataclasses.fields(text) if f.name != "id"}
    return claim(text.id, fill.pop("claim"), **fill, verdict=verdict, statistic=statistic, per_seed=per_seed,
                 cause=cause)


def could_not_read(id: str, title: str, error: BaseException) -> dict:
    """The claim reported when an experiment's results cannot be evaluated (an unexpected layout):
    a failure to evaluate is never a pass."""
    why = f"could not read the results ({type(error).__name__}: {error})"
    nan = float("nan")
    return claim(id, title, paper="—", protocol="—", measured=why,
                 rule="the report could not evaluate this experiment", verdict="does not hold",
                 statistic=dict(name="none (results unreadable)", value=nan, ci=[nan, nan], n_digits=0, n_seeds=0),
                 per_seed=[], cause=why)


def range_verdict(values: Sequence[float], hi_paper: float, hi_loose: float) -> str:
    """``holds``: every value ≤ ``hi_paper``; ``holds partly``: every value ≤ ``hi_loose`` or at
    least half ≤ ``hi_paper``; else (or with no finite value) ``does not hold``."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "does not hold"
    if all(x <= hi_paper for x in v):
        return "holds"
    if all(x <= hi_loose for x in v) or sum(x <= hi_paper for x in v) * 2 >= len(v):
        return "holds partly"
    return "does not hold"


def count_verdict(ok: Sequence[bool]) -> str:
    """``holds`` when every entry is true, ``holds partly`` when some are, else (or when there is
    none) ``does not hold``."""
    ok = list(ok)
    if ok and all(ok):
        return "holds"
    return "holds partly" if any(ok) else "does not hold"


def _one_sided(r: dict) -> tuple[float, float]:
    """``(p_claim, p_against)`` of one Spearman result: the two-sided ``p`` halved on ρ's side
    (``1 - p/2`` on the other); the claim's side also needs ``p_null`` (``P(null ≥ ρ)``, the
    intersection of both tests: the larger p) or, without it, ``ρ > null_hi`` (else p 1)."""
    rho, p = float(r["rho"]), float(r["p"])
    if not r.get("testable", True) or not (math.isfinite(rho) and math.isfinite(p)):
        return float("nan"), float("nan")
    pos = p / 2 if rho > 0 else 1 - p / 2
    neg = p / 2 if rho < 0 else 1 - p / 2
    if r.get("p_null") is not None:  # an undefined null p-value cannot support the claim
        pn = float(r["p_null"])
        pos = max(pos, pn) if math.isfinite(pn) else 1.0
    elif "null_hi" in r and not rho > r["null_hi"]:
        pos = 1.0
    return pos, neg


def rank_tests(rhos: Sequence[dict], *, alpha: float = 0.05) -> list[str]:
    """Per Spearman result (``{"rho", "p"}``, ``p`` two-sided; optionally ``"p_null"``, the one-sided
    p-value of a null model ``P(null ≥ ρ)``, or ``"null_hi"``, its upper quantile; ``"testable":
    False`` for a network below its accuracy floor), its verdict after Holm over the family
    (:func:`jaxdyn.analyses.verdicts.holm_verdicts`): holds when ρ > 0 is significant (and beyond the null),
    does not hold when ρ < 0 is, inconclusive when neither, not testable without a ρ."""
    pairs = [_one_sided(r) for r in rhos]
    return [str(v) for v in holm_verdicts([a for a, _ in pairs], [b for _, b in pairs], alpha=alpha)]


def rank_verdict(rhos: Sequence[dict], *, alpha: float = 0.05) -> str:
    """Verdict for "these quantities rise together": :func:`rank_tests` (Holm over the family of
    one-sided tests, both directions) combined by :func:`jaxdyn.analyses.verdicts.combine`: holds when every
    testable ρ holds; does not hold when every one does not; holds partly when some hold and the
    rest do not; inconclusive otherwise; not testable when none is testable (or there is none)."""
    return str(combine(rank_tests(rhos, alpha=alpha)))


RANK_RULE = ("per network, Spearman ρ{null} on each seed's digits, averaged over the seeds; its interval is a "
             "hierarchical bootstrap ({B} resamples: the seeds with replacement, then the digits within each, ρ "
             "recomputed) at level 1 − α/k = {level:.4g} (Bonferroni over the k = {k} network × test intervals, α = "
             "{alpha}); a test holds when its interval lies above 0, does not hold when it lies below, is inconclusive "
             "when it straddles 0; the claim holds when every test holds, does not hold when every one does not, holds "
             "partly when some hold and the rest do not, is inconclusive otherwise; a network below the accuracy "
             "floor {floor} (test accuracy) is not testable{extra}; beside it (statistic.holm, no verdict rests on "
             "it) the one-sided Spearman p-values of every network, seed and test, Holm over that whole family in "
             "both directions")


def family_statistic(name: str, verdicts: Sequence[str], *, n_digits: int, n_seeds: int = 1) -> dict:
    """The ``statistic`` field of a claim decided by a family of tests: ``value`` the number of tests
    that hold after Holm, ``ci`` ``None`` (a count of decisions has no bootstrap interval: the
    family-wise error α is its guarantee), the counts of each verdict, ``n_digits``, ``n_seeds``."""
    vs = [str(v) for v in verdicts]
    return dict(name=name, value=vs.count("holds"), ci=None, n_tests=len(vs), correction="Holm",
                **{f"n_{v.replace(' ', '_')}": vs.count(v) for v in VERDICTS if v != "holds partly"},
                n_digits=int(n_digits), n_seeds=int(n_seeds))


def family_cause(labels: Sequence[str], verdicts: Sequence[str]) -> str:
    """The measured reason of a family's verdict: which tests hold, do not, are inconclusive or not
    testable (after Holm)."""
    groups = {v: [lb for lb, w in zip(labels, verdicts) if str(w) == v] for v in VERDICTS}
    parts = [f"{v}: {len(ls)}/{len(labels)} ({', '.join(ls)})" for v, ls in groups.items() if ls]
    return "after Holm over the family, " + "; ".join(parts) if parts else "no test in the family"


def accuracy_floor_note(accuracies: dict, floor: float) -> tuple[dict, str]:
    """``({network: testable}, text)``: a network whose test accuracy is below ``floor`` (or unknown
    is kept) has collapsed, the premise of a claim about a trained network is absent there."""
    ok = {m: not (a is not None and math.isfinite(a) and a < floor) for m, a in accuracies.items()}
    low = [f"{m} ({accuracies[m]:.3g})" for m, t in ok.items() if not t]
    return ok, (f"below the accuracy floor {floor}: {', '.join(low)}" if low else "")


def rank_family(tests: Sequence[tuple[str, str, dict]], *, accuracies: dict, floor: float, name: str,
                n_digits: int, seed: int = 0, alpha: float = 0.05) -> dict:
    """The verdict fields of a claim decided by a family of Spearman results ``tests`` (``[(network,
    label, {"rho", "p", ...})]``, :func:`rank_tests`), the networks below ``floor`` (``accuracies``:
    network -> test accuracy) made not testable: ``{"verdict", "statistic", "per_seed", "cause"}``
    (``cause`` ``None`` when it holds) and ``"floor"``, the text naming the networks below the floor."""
    ok, floor_text = accuracy_floor_note(accuracies, floor)
    rhos = [dict(r, testable=ok.get(m, True)) for m, _, r in tests]
    vs = rank_tests(rhos, alpha=alpha)
    v = str(combine(vs))
    stat = family_statistic(name, vs, n_digits=n_digits)
    cause = None
    if v != "holds":
        cause = family_cause([f"{m} {lb}" for m, lb, _ in tests], vs) + (f"; {floor_text}" if floor_text else "")
    return dict(verdict=v, statistic=stat, cause=cause, floor=floor_text,
                per_seed=[dict(seed=int(seed), value=stat["value"], verdict=v)])
