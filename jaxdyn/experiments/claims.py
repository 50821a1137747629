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

Claims as data (:mod:`jaxdyn.verdicts`), optional until every experiment is on the statistics
footing, and validated when given:

* ``statistic``: ``{name, value, ci: [lo, hi], level, n_digits, n_seeds, n_resamples}``
  (:func:`jaxdyn.verdicts.statistic_record`);
* ``per_seed``: ``[{seed, value, ci, n_digits, verdict}]`` (:func:`jaxdyn.verdicts.per_seed`);
* ``cause``: the measured reason a verdict is not "holds" (required then, once ``statistic`` is given).
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["VERDICTS", "claim", "could_not_read", "range_verdict", "count_verdict", "rank_verdict"]

VERDICTS = ("holds", "holds partly", "does not hold", "inconclusive", "not testable")
FIELDS = ("id", "claim", "paper", "protocol", "measured", "baselines", "controls", "rule", "verdict")
STATISTIC_FIELDS = ("name", "value", "ci", "n_digits", "n_seeds")


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


def could_not_read(id: str, title: str, error: BaseException) -> dict:
    """The claim reported when an experiment's results cannot be evaluated (an unexpected layout):
    a failure to evaluate is never a pass."""
    return claim(id, title, paper="—", protocol="—",
                 measured=f"could not read the results ({type(error).__name__}: {error})",
                 rule="the report could not evaluate this experiment", verdict="does not hold")


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


def rank_verdict(rhos: Sequence[dict], *, alpha: float = 0.05) -> str:
    """Verdict for "these quantities rise together" from Spearman results (``{"rho", "p"}``, and
    optionally ``"null_hi"``: the upper (e.g. 95 %) quantile of a null model's ρ).

    A ρ is *above its null* when it is > 0 and, if it carries ``null_hi``, > ``null_hi`` (a ρ inside
    the null band is null-level, like ρ ≤ 0); *significant* when also ``p < alpha``.
    ``"does not hold"``: some ρ is significantly negative (ρ < 0, p < ``alpha``), or none is
    significant and some is not above its null (or none could be computed); ``"holds"``: every ρ
    significant; ``"holds partly"``: otherwise (every ρ above its null, or some significant)."""
    rhos = [r for r in rhos if math.isfinite(r["rho"])]
    if not rhos or any(r["rho"] < 0 and r["p"] < alpha for r in rhos):
        return "does not hold"
    pos = [r["rho"] > max(0.0, r.get("null_hi", 0.0)) for r in rhos]
    sig = [ok and r["p"] < alpha for ok, r in zip(pos, rhos)]
    if all(sig):
        return "holds"
    if all(pos) or any(sig):
        return "holds partly"
    return "does not hold"
