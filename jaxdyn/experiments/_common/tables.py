"""What the tables (Table 1, Table 2, the appendix) share: the paper's ten networks, their config
fields, validation, the loop over networks and the claims of Tables 1-2."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxdyn.core.models import model_names
from jaxdyn.experiments.claims import ClaimText, count_verdict, range_verdict, render
from jaxdyn.experiments._common.core import NetworksConfig, by_piece, check_models, enable_x64, fmt
from jaxdyn.experiments._common.core import help_field as _help


#: the ten networks of Tables 1 and 2 (10-class for Table 1 and the appendix, binary for Table 2)
TABLE_MODELS = ("mlp3", "mlp4", "mlp5", "cnn3", "cnn4", "cnn5", "rescnn3", "rescnn4", "rescnn5", "rescnn10")
TABLE_LABELS = dict(zip(TABLE_MODELS, ("3-layer MLP", "4-layer MLP", "5-layer MLP", "3-layer CNN", "4-layer CNN",
                                       "5-layer CNN", "3-layer ResCNN", "4-layer ResCNN", "5-layer ResCNN",
                                       "10-layer ResCNN")))
#: the quick scale's networks for Tables 1-2 and the appendix: the shallowest of each family (MLP,
#: CNN, ResCNN), chosen by cost (before results) so that ``reproduce --quick`` fits 20 minutes on
#: one core; ``--table-models all`` (or each table's ``--models``) runs the ten at quick width
QUICK_TABLE_MODELS = ("mlp3", "cnn3", "rescnn3")


@dataclasses.dataclass(frozen=True)
class TableConfig(NetworksConfig):
    """The fields every table's ``Config`` has (each table's ``Config`` subclasses it, frozen):
    ``models`` of the tables (any zoo model at the tiny scale), ``n_samples`` fixed test digits."""

    chunk: int = _help("samples per compiled batch")
    train_overrides: Any = _help("load_or_train arguments that update the preset (JSON) or null",
                                 json="train_overrides")


@dataclasses.dataclass(frozen=True)
class TableAttackConfig(TableConfig):
    """:class:`TableConfig` and the raw attack of Tables 1 and 2 (``m`` steps, ``α = β/m``)."""

    steps: int = _help("the attack's m (α = β/m)")
    beta: float = _help("the documented β of the headline column")
    betas: tuple[float, ...] = _help("the β grid of the error's β dependence (A2 attack in logit space)")


def check_table_models(models: Sequence[str], scale: str, *, what: str) -> tuple[str, ...]:
    """:func:`check_models` against :data:`TABLE_MODELS` (any zoo model at the tiny test scale)."""
    if scale == "tiny":
        return check_models(models, model_names(), what=what)
    return check_models(models, TABLE_MODELS, what=what)


def check_fields(cfg, *, positive: Sequence[str] = (), counts: Sequence[str] = ()) -> None:
    """``ValueError`` naming the field unless each field of ``cfg`` in ``positive`` (a number or a
    tuple of them) is finite and > 0 and each in ``counts`` (an int or a tuple of ints) is ≥ 1."""
    for f in positive:
        for v in np.ravel(np.asarray(getattr(cfg, f), dtype=float)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{f} must be finite and > 0, got {getattr(cfg, f)}")
    for f in counts:
        vals = getattr(cfg, f)
        for v in vals if isinstance(vals, tuple) else (vals,):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{f} must be an integer >= 1, got {vals!r}")


def over_models(fn: Callable, models: Sequence[str], *, seeds: Sequence[int] = (0,), progress: bool, desc: str,
                out=None) -> list:
    """``[fn(m, s) | {"seed": s} for m in models for s in seeds]`` in float64 (:func:`enable_x64`) with a
    progress bar: a table's loop over its networks, one independently trained network per architecture
    and seed. With ``out``, each network's row is a piece of the run
    (:class:`~jaxdyn.experiments.runner.Pieces`, key ``<model>-seed<s>``): stored when done, reused when
    the run resumes."""
    enable_x64()
    pairs = {f"{m}-seed{int(s)}": (m, int(s)) for m in models for s in seeds}
    rows = by_piece(lambda k: dict(fn(*pairs[k]), seed=pairs[k][1]), list(pairs), out=out, progress=progress,
                    desc=desc)
    return list(rows.values())


def done_criterion(rows: Sequence[Mapping], *, key: str, base: str, bound: float = 1e-3) -> dict:
    """The tables' "done" criterion at the documented β: every ``row[key]`` ≤ ``bound`` and below
    its first-order baseline ``row[base]``."""
    below_bound = {r["model"]: r[key] <= bound for r in rows}
    below_base = {r["model"]: r[key] < r[base] for r in rows}
    return dict(bound=bound, all_below_bound=all(below_bound.values()),
                all_below_first_order=all(below_base.values()), below_bound=below_bound,
                below_first_order=below_base)


#: Tables 1 and 2's paper-protocol claims (:func:`table_claims`; the ids are ``<name>.<key>_small`` and
#: ``<name>.beats_first_order``)
ERROR_SMALL = ClaimText(
    id="<name>.<key>_small",
    claim="{tag}{theorem} fits the real effect on deep ReLU nets: {label} is small",
    paper="{label} = {lo} … {hi} over the 10 networks",
    protocol=("{protocol_prefix}β = {beta}, m = {steps}, {n_samples} fixed test digits, {dtype}; networks (test acc.): "
              "{accuracies}"),
    measured="{label} = {range} ({per_network})",
    baselines="first-order {label} (curvature-free β g_x): {first_order}",
    controls="{controls}",
    rule=("holds: every {label} ≤ the paper's largest ({hi}); holds partly: every one ≤ {bound} or at least half "
          "≤ {hi}; else does not hold"),
)
BEATS_FIRST_ORDER = ClaimText(
    id="<name>.beats_first_order",
    claim="{tag}(extension) {theorem} beats the curvature-free first-order baseline",
    paper="not in the paper",
    protocol=ERROR_SMALL.protocol,
    measured="{label} below its first-order baseline for {n_better}/{n_networks} networks",
    baselines=ERROR_SMALL.baselines,
    rule="holds: below the baseline for every network; holds partly: for some",
)
#: the control of :data:`ERROR_SMALL` when the rows carry ``<key>_free``
FREE_CONTROL = "{label} without A2 (free gating): {free}"


def table_claims(results: Mapping, *, name: str, key: str, label: str, theorem: str, paper: tuple,
                 protocol_name: str | None = None) -> list:
    """Tables 1 and 2's claims (:data:`ERROR_SMALL`, :data:`BEATS_FIRST_ORDER`): the error ``key``
    (``κ`` or ``κ′``) is small over the networks (against the paper's range ``paper = (lo, hi)``), and
    below its first-order baseline. ``protocol_name`` (e.g. ``"paper protocol"``) labels both claims
    and their protocol."""
    rows = results["rows"]
    vals = [r.get(key) for r in rows]
    lo, hi = paper
    ok = [v for v in vals if v is not None and math.isfinite(v)]
    per = lambda k: ", ".join(f"{r.get('model')} {fmt(r.get(k))}" for r in rows)  # noqa: E731
    bound = (results.get("done") or {}).get("bound", 1e-3)
    values = dict(
        tag=f"({protocol_name}) " if protocol_name else "",
        protocol_prefix=f"{protocol_name}: " if protocol_name else "",
        theorem=theorem, label=label, lo=fmt(lo), hi=fmt(hi), bound=fmt(bound), beta=fmt(results.get("beta")),
        steps=results.get("steps"), n_samples=results.get("n_samples"), dtype=results.get("dtype"),
        accuracies=", ".join(f"{r.get('model')} {fmt(r.get('test_accuracy'), 3)}" for r in rows),
        range=f"{fmt(min(ok))} … {fmt(max(ok))}" if ok else "—", per_network=per(key),
        first_order=per(key + "_first_order"), free=per(key + "_free"))
    has_free = any(key + "_free" in r for r in rows)
    values["controls"] = FREE_CONTROL.format_map(values) if has_free else ""
    out = [render(dataclasses.replace(ERROR_SMALL, id=f"{name}.{key}_small"), values,
                  verdict=range_verdict(vals, hi, bound))]
    pairs = [(r["model"], r.get(key), r.get(f"{key}_first_order")) for r in rows]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    if pairs:
        values.update(n_better=sum(a < b for _, a, b in pairs), n_networks=len(pairs))
        out.append(render(dataclasses.replace(BEATS_FIRST_ORDER, id=f"{name}.beats_first_order"), values,
                          verdict=count_verdict([a < b for _, a, b in pairs])))
    return out


__all__ = ["table_results", "TABLE_MODELS", "QUICK_TABLE_MODELS", "TABLE_LABELS", "TableConfig", "TableAttackConfig",
           "check_table_models", "check_fields", "over_models", "done_criterion", "table_claims", "ERROR_SMALL",
           "BEATS_FIRST_ORDER", "FREE_CONTROL"]


def table_results(cfg, rows: list, *, key: str, base: str, **more) -> dict:
    """The results of a table: its rows, the attack's settings, and ``done``, the numbers of the
    "done" criterion (:func:`done_criterion` of ``key`` against ``base``)."""
    return dict(dtype="float64", beta=cfg.beta, steps=cfg.steps, n_samples=cfg.n_samples, betas=list(cfg.betas),
                rows=rows, done=done_criterion(rows, key=key, base=base), **more)


# --- the attack regime (Table 1's regimes: κ against its baseline where the attack flips digits)


def regime_point(regimes: Sequence[Mapping], *, flip_key: str, target: float):
    """The row of a regime grid whose ``flip_key`` is nearest ``target`` (ties: the larger β, the
    one in the attack regime), or
    ``None`` when no row has one."""
    rows = [r for r in regimes if r.get(flip_key) is not None]
    return min(rows, key=lambda r: (abs(r[flip_key] - target), -r["beta"])) if rows else None


def regime_verdict_pairs(rows: Sequence[Mapping], *, gating: str, target: float, factor: float) -> list:
    """Per network ``(model, point, ok)`` for the attack-regime rule: at the regime row whose flip
    fraction (``gating`` ``"frozen"``: ``flip_fraction``, ``"free"``: ``flip_fraction_free``) is
    nearest ``target``, ``κ < first-order κ / factor``. A network without such a row, whose grid
    did not reach ``regime_range["hi"]``, or with a missing number fails (``ok`` False)."""
    sfx = "" if gating == "frozen" else "_free"
    k, base = ("kappa", "kappa_first_order") if gating == "frozen" else ("kappa_free", "kappa_free_first_order")
    out = []
    for r in rows:
        pt = regime_point(r.get("regimes") or [], flip_key="flip_fraction" + sfx, target=target)
        hi = (r.get("regime_range") or {}).get("hi", target)
        ok = (pt is not None and pt.get(k) is not None and pt.get(base) is not None
              and max(q.get("flip_fraction" + sfx) or 0.0 for q in r["regimes"]) >= hi and pt[k] < pt[base] / factor)
        out.append((r.get("model"), pt, bool(ok)))
    return out


__all__ += ["regime_point", "regime_verdict_pairs"]
