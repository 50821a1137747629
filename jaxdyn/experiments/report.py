"""``REPORT.md``: every claim of ``python -m jaxdyn reproduce`` beside the paper's, rendered.

This module decides nothing: the claims, their rules and verdicts come from each experiment's
``claims(results)`` (:mod:`jaxdyn.experiments.claims`); here they are laid out as Markdown. A stage
that did not run or failed is reported as such, with its error.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable, Sequence

from jaxdyn.experiments import load
from jaxdyn.experiments.claims import VERDICTS
import jax

__all__ = ["render", "stage_times", "train_seconds", "verdict_counts", "VERDICTS"]


def render(records: Sequence[dict], *, scale: str, seeds: Sequence[int] | None, total_s: float,
           link: Callable[[str, str], str] | None = None, report_only: bool = False) -> str:
    """The Markdown of ``REPORT.md``.

    Args:
      records: one per stage (``reproduce``'s stage records: ``stage``, ``status``,
        ``runtime_s``, ``cached``, ``results``, ``error``, ``png``, ``md``).
      scale, seeds: of the run (``seeds`` ``None``: each stage's preset).
      total_s: wall time of the whole run (with ``report_only``: the sum of the stored stages' run
        times, the report being rebuilt without running anything).
      link: ``(stage, path) -> str``, how to link a stage's file from the report's location.
    """

    link = link or (lambda stage, p: f"{stage}/{Path(p).name}")
    lines = [
        "# Reproduction report",
        "",
        f"`python -m jaxdyn reproduce --{scale if scale in ('quick', 'full') else 'scale ' + scale}` — "
        f"scale **{scale}**, {_seeds_text(records, seeds)}, "
        f"generated {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.machine()} "
        f"({jax.default_backend()}, {platform.processor() or platform.platform()}), jax {jax.__version__}; "
        + (f"rebuilt from stored results; the stages' run times add up to {total_s / 60:.1f} min (see each "
           "section)." if report_only else f"total wall time {total_s / 60:.1f} min."),
        "",
        "Every verdict is computed from the measured numbers by the rule printed beside it. "
        + (f"At the {scale} scale the networks are narrow and briefly trained and the sample counts small "
           "(see each section's setting): a verdict here is about these networks, not the paper's." if scale != "full"
           else ""),
        "",
        "## Summary",
        "",
        "| result | claim | verdict | statistic (95 % interval) | networks × digits | cause, else measured (short) |",
        "|---|---|---|---|---|---|",
    ]
    sections = []
    for rec in records:
        stage = rec["stage"]
        title = load(stage).title
        if rec["status"] != "ok":
            why = rec.get("error") or rec["status"]
            lines.append(f"| {title} | — | **not run** | — | — | {_short(why)} |")
            sections.append(f"## {title}\n\n**Not run** ({rec['status']}): {why}\n")
            continue
        claims = rec["claims"]
        for c in claims:
            lines.append(f"| {title} | {c['claim']} | **{c['verdict']}** | {_statistic_cell(c)} | {_sizes_cell(c)} | "
                         f"{_short(c.get('cause') or c['measured'])} |")
        body = [f"## {title}", "",
                f"Stage `{stage}`: {'reused from a previous run' if rec.get('cached') else 'computed'} "
                f"({(rec.get('runtime_s') or 0) / 60:.1f} min)."]
        for c in claims:
            body += ["", f"**{c['claim']}** — verdict: **{c['verdict']}** (`{c['id']}`)", "",
                     f"- paper: {c['paper']}", f"- protocol: {c['protocol']}", f"- measured: {c['measured']}"]
            body += [f"- {k}: {c[k]}" for k in ("baselines", "controls") if c.get(k)]
            body += [f"- rule: {c['rule']}"]
            body += _statistic_lines(c)
        for p in rec.get("png", []):
            body += ["", f"![{Path(p).stem}]({link(stage, p)})"]
        for p in rec.get("md", []):
            body += ["", f"Table: [{Path(p).name}]({link(stage, p)})"]
        sections.append("\n".join(body) + "\n")
    lines += ["", verdict_counts([c for r in records for c in r.get("claims") or []])]
    lines += ["", *stage_times(records)]  # after the summary's rows, not inside its table
    return "\n".join(lines) + "\n\n" + "\n".join(sections)


def _seeds_text(records: Sequence[dict], seeds: Sequence[int] | None) -> str:
    """``"seeds 0, 1, 2"``, or each stage's seeds (from its results' config) when they differ."""
    if seeds is not None:
        return "seeds " + ", ".join(str(s) for s in seeds)
    per = {r["stage"]: tuple((r.get("results") or {}).get("config", {}).get("seeds") or ()) for r in records}
    if len(set(per.values())) == 1:
        (one,) = set(per.values())
        return "seeds " + (", ".join(str(s) for s in one) or "—")
    return "seeds per stage: " + "; ".join(f"{st} {','.join(str(s) for s in v) or '—'}" for st, v in per.items())


def verdict_counts(claims: Sequence[dict]) -> str:
    """``"30 claims: 6 holds, 4 holds partly, ..."`` (every verdict named, zeros included)."""
    vs = [str(c.get("verdict")) for c in claims]
    return f"{len(vs)} claims: " + ", ".join(f"{vs.count(v)} {v}" for v in VERDICTS) + "."


def _statistic_cell(c: dict) -> str:
    st = c.get("statistic")
    if not st:
        return "—"
    ci = st.get("ci")
    iv = f" [{_num(ci[0])}, {_num(ci[1])}]" if ci and None not in ci else ""
    return f"{st['name']} {_num(st['value'])}{iv}"


def _sizes_cell(c: dict) -> str:
    st = c.get("statistic")
    return "—" if not st else f"{st.get('n_networks', st.get('n_seeds', '—'))} × {st.get('n_digits', '—')}"


def _statistic_lines(c: dict) -> list[str]:
    """The claims-as-data fields of a claim, as written (the statistic with its interval, the verdict
    per seed, the measured cause); nothing for a claim without them."""
    out = []
    st = c.get("statistic")
    if st:
        ci = st.get("ci")
        iv = f", {100 * st.get('level', 0.95):g} % interval [{_num(ci[0])}, {_num(ci[1])}]" if ci else ""
        nets = f"{st['n_networks']} networks, " if st.get("n_networks") not in (None, st["n_seeds"]) else ""
        out.append(f"- statistic: {st['name']} = {_num(st['value'])}{iv} ({st['n_digits']} digits, {nets}"
                   f"{st['n_seeds']} seed{'s' if st['n_seeds'] != 1 else ''})")
    if c.get("per_seed"):
        out.append("- per seed: " + "; ".join(
            (f"{r['model']} " if r.get("model") else "") + f"seed {r['seed']}: {r['verdict']}"
            + (f" ({_num(r['value'])})" if r.get("value") is not None else "")
            for r in c["per_seed"]))
    if c.get("cause"):
        out.append(f"- cause: {c['cause']}")
    return out


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def train_seconds(results) -> float | None:
    """The wall seconds a stage spent training or loading its networks: the sum of every
    ``time_s["train_or_load"]`` in its results (each experiment records it per network); ``None``
    when the results record none."""
    found = []

    def walk(v):
        if isinstance(v, dict):
            t = v.get("time_s")
            if isinstance(t, dict) and isinstance(t.get("train_or_load"), (int, float)):
                found.append(float(t["train_or_load"]))
            for k, w in v.items():
                if k != "time_s":
                    walk(w)
        elif isinstance(v, list):
            for w in v:
                walk(w)

    walk(results)
    return sum(found) if found else None


def stage_times(records: Sequence[dict]) -> list[str]:
    """The "Stage times" section: per stage its wall time, process CPU time (the fair clock when
    the machine is shared) and, apart, the wall time spent training or loading networks (a
    network is trained by the first stage that needs it; later stages load it from the cache)."""
    m = lambda s: "—" if s is None else f"{s / 60:.1f}"  # noqa: E731
    out = ["## Stage times", "",
           "Minutes per stage, as measured by the run that made its results (`reused`: an earlier run). "
           "Training: the wall time spent training (or loading from the model cache) the stage's networks; "
           "a network is trained by the first stage that needs it.", "",
           "| stage | run | wall | CPU | training (wall) | rest (wall) |", "|---|---|---|---|---|---|"]
    tot = dict(wall=0.0, cpu=0.0, train=0.0)
    cpu_known = True
    for rec in records:
        wall, cpu = rec.get("runtime_s"), rec.get("cpu_s")
        if rec["status"] != "ok":
            out.append(f"| {rec['stage']} | {rec['status']} | {m(wall)} | — | — | — |")
            continue
        tr = train_seconds(rec.get("results") or {})
        rest = None if wall is None or tr is None else max(wall - tr, 0.0)
        out.append(f"| {rec['stage']} | {'reused' if rec.get('cached') else 'computed'} | {m(wall)} | {m(cpu)} | "
                   f"{m(tr)} | {m(rest)} |")
        tot["wall"] += wall or 0.0
        tot["train"] += tr or 0.0
        cpu_known = cpu_known and cpu is not None
        tot["cpu"] += cpu or 0.0
    out.append(f"| **all** | | **{m(tot['wall'])}** | **{m(tot['cpu']) if cpu_known else '—'}** | "
               f"**{m(tot['train'])}** | **{m(max(tot['wall'] - tot['train'], 0.0))}** |")
    return out


def _short(s: str, n: int = 160) -> str:
    s = str(s).replace("|", "/").replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"
