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

__all__ = ["render", "VERDICTS"]


def render(records: Sequence[dict], *, scale: str, seed: int, total_s: float,
           link: Callable[[str, str], str] | None = None, report_only: bool = False) -> str:
    """The Markdown of ``REPORT.md``.

    Args:
      records: one per stage (``reproduce``'s stage records: ``stage``, ``status``,
        ``runtime_s``, ``cached``, ``results``, ``error``, ``png``, ``md``).
      scale, seed: of the run.
      total_s: wall time of the whole run (with ``report_only``: the sum of the stored stages' run
        times, the report being rebuilt without running anything).
      link: ``(stage, path) -> str``, how to link a stage's file from the report's location.
    """
    import jax

    link = link or (lambda stage, p: f"{stage}/{Path(p).name}")
    lines = [
        "# Reproduction report",
        "",
        f"`python -m jaxdyn reproduce --{scale if scale in ('quick', 'full') else 'scale ' + scale}` — scale **{scale}**, seed {seed}, "
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
        "| result | claim | verdict | measured (short) |",
        "|---|---|---|---|",
    ]
    sections = []
    for rec in records:
        stage = rec["stage"]
        title = load(stage).title
        if rec["status"] != "ok":
            why = rec.get("error") or rec["status"]
            lines.append(f"| {title} | — | **not run** | {_short(why)} |")
            sections.append(f"## {title}\n\n**Not run** ({rec['status']}): {why}\n")
            continue
        claims = rec["claims"]
        for c in claims:
            lines.append(f"| {title} | {c['claim']} | **{c['verdict']}** | {_short(c['measured'])} |")
        body = [f"## {title}", "",
                f"Stage `{stage}`: {'reused from a previous run' if rec.get('cached') else 'computed'} "
                f"({rec.get('runtime_s', 0) / 60:.1f} min)."]
        for c in claims:
            body += ["", f"**{c['claim']}** — verdict: **{c['verdict']}** (`{c['id']}`)", "",
                     f"- paper: {c['paper']}", f"- protocol: {c['protocol']}", f"- measured: {c['measured']}"]
            body += [f"- {k}: {c[k]}" for k in ("baselines", "controls") if c.get(k)]
            body += [f"- rule: {c['rule']}"]
        for p in rec.get("png", []):
            body += ["", f"![{Path(p).stem}]({link(stage, p)})"]
        for p in rec.get("md", []):
            body += ["", f"Table: [{Path(p).name}]({link(stage, p)})"]
        sections.append("\n".join(body) + "\n")
    return "\n".join(lines) + "\n\n" + "\n".join(sections)


def _short(s: str, n: int = 160) -> str:
    s = str(s).replace("|", "/").replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"
