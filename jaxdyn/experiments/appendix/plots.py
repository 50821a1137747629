"""Appendix D/J's Markdown table (``appendix.md``) and Figure 1 (``fig1_perturbations.png``), from
the results alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdyn._internal.results import write_text_atomic
from jaxdyn.analyses.variant_matching import FIG1_MODEL, FIG1_VARIANTS
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.appendix.rules import claims

__all__ = ["FIG1_TITLES", "plot", "plot_fig1", "markdown"]

#: Figure 1's column titles, per key of :data:`~jaxdyn.analyses.variant_matching.FIG1_VARIANTS`
FIG1_TITLES = {"l2_small": "δ^(ℓ2), ε=0.1", "l2": "δ^(ℓ2), ε=1", "linf_small": "δ^(eff,ℓ∞), ε=0.01",
               "linf": "δ^(eff,ℓ∞), ε=0.1"}


def plot(results: dict, out: Path) -> None:
    """``appendix.md`` and, when :data:`FIG1_MODEL` ran, ``fig1_perturbations.png``."""
    write_text_atomic(Path(out) / "appendix.md", markdown(results))
    if any("fig1" in r for r in results["rows"]):
        plot_fig1(results, Path(out) / "fig1_perturbations.png")


def plot_fig1(res: dict, png_path: Path) -> None:
    """Figure 1 from the results only. Per digit: the image, δ̂, δ* (frozen raw attack), ``δ* − δ̂``;
    per PGD attack of :data:`FIG1_VARIANTS` (frozen, no clip) its perturbation (ℓ2) or effective
    component (ℓ∞) and its difference from ``C δ̂/||δ̂||`` (its own β-matched δ̂, ``C`` its norm);
    each map on its own colour scale. ``ValueError`` without Figure 1 data."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when drawing)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib only when drawing)

    fig1 = next((r["fig1"] for r in res["rows"] if "fig1" in r), None)
    if fig1 is None:
        raise ValueError(f"the results hold no Figure 1 data (model {FIG1_MODEL} not run)")
    xs = np.asarray(fig1["x"])
    k = len(xs)
    keys = [key for key in FIG1_VARIANTS if key in fig1]
    ncol = 4 + 2 * len(keys)
    fig, axes = plt.subplots(k, ncol, figsize=(1.3 * ncol, 1.5 * k + 0.7), squeeze=False)

    img = lambda a: np.asarray(a)[..., 0]  # noqa: E731
    for i in range(k):
        raw = fig1["raw"]
        dh, ds = img(raw["delta_hat"][i]), img(raw["target"][i])
        panels = [("digit", img(xs[i]), None), ("δ̂ (Thm 2)", dh, None), ("δ* (raw, A2)", ds, None),
                  ("δ* − δ̂", ds - dh, np.linalg.norm(ds - dh) / np.linalg.norm(ds))]
        for key in keys:
            t, h = img(fig1[key]["target"][i]), img(fig1[key]["delta_hat"][i])
            diff = t - h * np.linalg.norm(t) / np.linalg.norm(h)  # C δ̂/||δ̂||, C = ||target||
            panels += [(FIG1_TITLES[key], t, None),
                       ("− Cδ̂/‖δ̂‖", diff, np.linalg.norm(diff) / np.linalg.norm(t))]
        for j, (title, a, rel) in enumerate(panels):
            ax = axes[i, j]
            if j == 0:
                ax.imshow(a, cmap="gray", vmin=0, vmax=1)
            else:
                v = float(np.max(np.abs(a))) or 1.0
                ax.imshow(a, cmap="bwr", vmin=-v, vmax=v)
            if i == 0:
                ax.set_title(title, fontsize=7)
            if rel is not None:
                ax.set_xlabel(f"rel. {rel:.1e}", fontsize=6.5)
            ax.set(xticks=[], yticks=[])
    fig.suptitle(f"Figure 1 ({FIG1_MODEL}, {res['dtype']}): {fig1['raw']['attack']}; PGD: {res.get('pgd_steps', '?')} "
                 "steps of ε/steps, frozen gating, no clip. Each map on its own colour scale; "
                 "rel. = ‖difference‖/‖perturbation‖", fontsize=7.5)
    C.save_figure(fig, png_path, dpi=120)


def _net(r: dict) -> str:
    return f"{r['model']} s{r.get('seed', 0)}"


def _verdicts(res: dict) -> str:
    """The claims' verdicts with their statistic (median over digits, interval) and the regime map."""
    rows = []
    for c in claims(res):
        st = c.get("statistic") or {}
        ci = st.get("ci") or [float("nan")] * 2
        reg = st.get("regime") or {}
        upto = "—" if not reg else "none" if reg.get("upto") is None else (
            f"ε ≤ {reg['upto']:g}, ×{reg['factor']:.3g}, {reg['n_networks']}/{reg['of']} networks")
        rows.append([f"`{c['id']}`", c["verdict"], f"{C.fmt_sci(st.get('value'))} [{C.fmt_sci(ci[0])}, "
                     f"{C.fmt_sci(ci[1])}]", f"{st.get('n_digits')} / {st.get('n_seeds')}", upto])
    return C.md_table(["claim", "verdict", "statistic [95 % CI]", "digits / networks", "beats g_x (regime)"], rows)


def markdown(res: dict) -> str:
    """The Markdown of ``appendix.md`` (from the results alone)."""
    fmt, rows, paper = C.fmt_sci, res["rows"], res["paper"]
    ds = [{a["attack"]: a for a in r["appendix_d"]} for r in rows]
    have = set(ds[0]) if rows else set()
    main = [lbl for lbl in ("l2 eps=0.1", "l2 eps=1", "linf eps=0.01", "linf eps=0.1") if lbl in have]
    extra = [lbl for lbl in ("l2 eps=1 clip", "l2 eps=1 madry", "linf eps=0.1 clip", "linf eps=0.1 madry")
             if lbl in have]
    def cos(a, *more):  # A2 / free gating (/ more)
        return " / ".join(fmt(v) for v in (a["frozen"]["one_minus_cos"], a["free"]["one_minus_cos"], *more))

    head = ["network"] + [f"{lbl} (A2 / free / first-order)" for lbl in main]
    body = [[_net(r)] + [cos(d[lbl], d[lbl]["frozen"]["one_minus_cos_first_order"]) for lbl in main]
            for r, d in zip(rows, ds)]
    body2 = [[_net(r)] + [cos(d[lbl]) for lbl in extra] for r, d in zip(rows, ds)]
    betas = [j["beta"] for j in rows[0]["appendix_j_raw"]] if rows else []
    pgd = [lbl for lbl in ("linf eps=0.1",) if lbl in have]  # the free ℓ∞-PGD attack (when it ran)
    jhead = (["network"] + [f"raw β={b:g}: flips / Δλ₁" for b in betas]
             + ["ℓ∞ ε=0.1 PGD: flips / Δλ₁" for _ in pgd])
    flips = lambda j: f"{fmt(j['flip_fraction'])} / {fmt(j['eig_rel_change'])}"  # noqa: E731
    jbody = [[_net(r)] + [flips(j) for j in r["appendix_j_raw"]] + [flips(d[lbl]["free"]) for lbl in pgd]
             for r, d in zip(rows, ds)]
    S = res["pgd_steps"]
    eps = C.md_table(["network", "attack", "ε", "1 − cos (A2 / free)", "g_x alone (A2 / free)", "digits flipped"], [
        [_net(r), e["norm"], f"{e['eps']:g}", f"{fmt(e['one_minus_cos'])} / {fmt(f['one_minus_cos'])}",
         f"{fmt(e['one_minus_cos_first_order'])} / {fmt(f['one_minus_cos_first_order'])}", fmt(f["label_flips"])]
        for r in rows for e, f in zip(*([a for a in r.get("appendix_d_eps", []) if a["gating"] == g]
                                        for g in ("frozen", "free")))])
    return f"""# Appendix D and J checks (scale `{res['scale']}`)

Generated by `python -m jaxdyn appendix --scale {res['scale']}` ({res['dtype']}, seeds {C.seeds_text(res)},
{res['n_samples']} fixed MNIST test digits, 10-class networks of Table 1).

## Verdicts (per-digit statistics; the rules in `claims.json`)

Statistic: the median over digits of the claim's per-digit value (Appendix D against g_x: the ratio of
Theorem 2's 1 − cos to g_x's, at the largest testable ε, on the digits the attack did not flip), with a hierarchical
bootstrap interval over networks (architecture × seed) and their digits.

{_verdicts(res)}

## Appendix D — mean 1 − cos(δ̂, δ^(ℓ2)) and 1 − cos(Cδ̂/‖δ̂‖, δ^(effective,ℓ∞))

{S}-step PGD from x with α = ε/{S} (no random start, no clip: the ε-ball is never left), δ̂ from
Theorem 2 with the attack's H̄_z and β matched to the attack's norm. Each cell: frozen gating (A2)
/ free gating / first-order baseline 1 − cos(g_x, ·). Paper: ℓ2 {paper['l2']}, ℓ∞ {paper['linf']}.

{C.md_table(head, body)}

Over ε (unclipped, α = ε/{S}), against the g_x-only baseline 1 − cos(g_x, ·), means over digits (every digit,
flipped or not; the verdicts use the per-digit ratios above); digits flipped: free gating.

{eps}

With clipping to [0, 1] and with Madry's α = 2.5ε/{S} (projection active, clip): A2 / free.

{C.md_table(["network"] + extra, body2)}

## Appendix J — fraction of flipped gates / relative change of λ₁(H̄_x)

Free-gating raw attack (m = {res['raw_steps']}) and the free ℓ∞-PGD attack above. Paper: Δλ₁ {paper['eig']}.

{C.md_table(jhead, jbody)}
"""
