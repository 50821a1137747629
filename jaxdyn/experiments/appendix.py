"""Appendix D and J checks and Figure 1, on the 10-class networks of Table 1.

**Appendix D** — few-step PGD against Theorem 2. Under A2 the infinitely-many-step ℓ2 attack
follows the same curve as the raw gradient flow, so δ̂ of Theorem 2 should point like the ℓ2-PGD
perturbation, and ``C δ̂/||δ̂||`` like the effective component of an ℓ∞-PGD perturbation
(``Σ_t α (σ_tᵀ sign g_t) σ_t``, ``σ_t = g_t/||g_t||``; Sec. 3.2). For each attack:

* the attack is :func:`jaxdyn.attacks.multistep.attack` with ``norm="l2"`` / ``"linf"`` (run as
  :func:`jaxdyn.attacks.variants.variant_attack`: one compile for all), ``steps`` few steps of size ``α = ε/steps`` from ``x`` (no random start; the ε-ball projection is then never
  active, so the attack is the normalised ascent the theory describes) — variants with clipping
  to [0, 1] and with Madry's ``α = 2.5 ε/steps`` (projection active) are reported beside it;
* δ̂ is Theorem 2 with ``H̄_z`` averaged over that attack's own trajectory (docs/spec.md's weights
  ``||Δx^(t)||``) and β chosen so that ``||δ̂(β)|| = ||δ^(ℓ2)||`` (resp. ``||δ^(effective)||``)
  — the point of the flow at the attack's distance (:func:`jaxdyn.core.theory.match_beta`). ``C``
  only scales, so ``1 - cos`` does not depend on it;
* the matching errors ``1 - cos(δ̂, δ^(ℓ2))`` and ``1 - cos(C δ̂/||δ̂||, δ^(effective,ℓ∞))`` (mean
  over digits) beside the ``g_x``-only baseline ``1 - cos(g_x, ·)``, frozen (A2) and free, also over
  an ε grid (``eps_l2``, ``eps_linf``: 0.01 to the usual budgets); the verdict: beating the baseline.

**Appendix J** — how much an attack changes what A2 freezes: the fraction of ReLU gates whose state
at ``x + δ`` differs from that at ``x`` (:func:`jaxdyn.core.gating.flip_fraction`) and the relative
change ``|λ_1(x+δ) - λ_1(x)| / λ_1(x)`` of the top eigenvalue of ``H̄_x = W̃ H̄_z W̃ᵀ`` when
``W̃ = Jᵀ`` is taken at ``x + δ`` instead of ``x`` (same ``H̄_z``: the change due to the gating
alone), for the free-gating raw attack over a β grid (verdict at the β where it flips half the
digits: :func:`jaxdyn.analyses.variant_matching.attack_row`) and for the free ℓ2/ℓ∞ PGD attacks above.

**Figure 1** — δ̂ against δ* (Table 1's setting) and against few-step PGD for the 3-layer MLP and
three digits, drawn from the results (``appendix.json``) only (:func:`plot_fig1`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import claim, count_verdict, range_verdict
from jaxdyn._internal.results import write_text_atomic
from jaxdyn.analyses.variant_matching import ATTACK_FLIPS, attack_row, flip_rate, make_fig1_fn, make_pgd_fn, make_raw_free_fn
from jaxdyn.attacks.variants import variant

name = "appendix"
title = "Appendix D/J and Figure 1"

PAPER = dict(l2="1e-6 … 1e-4", linf="3.4e-5 (average)", eig="1e-4 … 1e-2")
#: (name, norm, eps, clip, alpha-rule) of the Appendix-D attacks; ``"ball"``: α = ε/steps,
#: ``"madry"``: α = 2.5 ε/steps.
PGD_VARIANTS = (
    ("l2 eps=0.1", "l2", 0.1, None, "ball"), ("l2 eps=1", "l2", 1.0, None, "ball"),
    ("l2 eps=1 clip", "l2", 1.0, (0.0, 1.0), "ball"), ("l2 eps=1 madry", "l2", 1.0, (0.0, 1.0), "madry"),
    ("linf eps=0.01", "linf", 0.01, None, "ball"), ("linf eps=0.1", "linf", 0.1, None, "ball"),
    ("linf eps=0.1 clip", "linf", 0.1, (0.0, 1.0), "ball"), ("linf eps=0.1 madry", "linf", 0.1, (0.0, 1.0), "madry"),
)
#: Figure 1's PGD columns (key in the JSON -> Appendix-D attack), a small and a typical budget each
FIG1_VARIANTS = {"l2_small": "l2 eps=0.1", "l2": "l2 eps=1", "linf_small": "linf eps=0.01", "linf": "linf eps=0.1"}
FIG1_TITLES = {"l2_small": "δ^(ℓ2), ε=0.1", "l2": "δ^(ℓ2), ε=1", "linf_small": "δ^(eff,ℓ∞), ε=0.01",
               "linf": "δ^(eff,ℓ∞), ε=0.1"}

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config(C.TableConfig):
    """The knobs of Appendix D/J and Figure 1 (beside ``TableConfig``'s; Figure 1 needs ``mlp3``)."""

    pgd_steps: int = _help("steps of the Appendix-D PGD attacks")
    variants: tuple[str, ...] = _help("labels of the Appendix-D attacks to run (PGD_VARIANTS)")
    raw_steps: int = _help("steps of Appendix J's free-gating raw attack")
    raw_betas: tuple[float, ...] = _help("β grid of Appendix J's raw attack")
    n_fig: int = _help("digits in Figure 1")
    fig_beta: float = _help("β of Figure 1's raw attack")
    fig_steps: int = _help("m of Figure 1's raw attack")
    eps_l2: tuple[float, ...] = _help("ε grid of the unclipped ℓ2-PGD attack (Appendix D against g_x alone)")
    eps_linf: tuple[float, ...] = _help("ε grid of the unclipped ℓ∞-PGD attack (Appendix D against g_x alone)")


_BASE = dict(models=C.TABLE_MODELS, pgd_steps=10, variants=tuple(v[0] for v in PGD_VARIANTS),
             raw_betas=(1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0), n_fig=3, fig_beta=1e-3, seed=0,
             eps_l2=(0.01, 0.1, 0.5, 2.0), eps_linf=(0.01, 0.03, 0.1, 0.3))
SCALES = {
    "tiny": dict(_BASE, models=("mlp3", "cnn3"), n_samples=4, pgd_steps=5, variants=tuple(FIG1_VARIANTS.values()),
                 raw_steps=20, raw_betas=(1e-3, 1e-1), chunk=4, eps_l2=(0.01, 2.0), eps_linf=(0.3,), n_fig=2, fig_steps=20, **C.TABLE_TRAIN["tiny"]),
    "quick": dict(_BASE, models=C.QUICK_TABLE_MODELS, n_samples=16, raw_steps=50, chunk=16, fig_steps=200, **C.TABLE_TRAIN["quick"]),
    "full": dict(_BASE, n_samples=1000, raw_steps=1000, chunk=250, fig_steps=1000, **C.TABLE_TRAIN["full"]),
}
FIG1_MODEL = "mlp3"


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_table_models(cfg.models, scale, what="appendix")
    C.check_fields(cfg, positive=("raw_betas", "fig_beta", "eps_l2", "eps_linf"),
                   counts=("n_samples", "pgd_steps", "raw_steps", "chunk", "n_fig", "fig_steps"))
    C.check_models(cfg.variants, [v[0] for v in PGD_VARIANTS], what="Appendix-D attack")
    return cfg


def appendix_model(model_name: str, cfg: Config, *, progress: bool) -> dict:
    """All Appendix D/J numbers of one network (and Figure 1's arrays for :data:`FIG1_MODEL`)."""
    t0 = time.perf_counter()
    model, variables, info = C.load_model(model_name, cfg.train, seed=cfg.seed, progress=progress,
                                          overrides=cfg.train_overrides)
    t_train = time.perf_counter() - t0
    x, y = C.fixed_digits(cfg.n_samples, seed=cfg.seed)
    S = cfg.pgd_steps
    d_rows, fig, fns = [], {}, {}
    for label, norm, eps, clip, rule in (v for v in PGD_VARIANTS if v[0] in cfg.variants):
        alpha = (1.0 if rule == "ball" else 2.5) * eps / S
        row = dict(attack=label, norm=norm, eps=eps, alpha=alpha, steps=S, clip=clip)
        for gating in ("frozen", "free"):
            if gating not in fns:  # norm, eps, alpha and clip are traced: one compile per gating
                fns[gating] = make_pgd_fn(model, steps=S, gating=gating)
            fn, v = fns[gating], variant(norm, eps, alpha, clip)
            out = C.chunked(lambda xb, yb: fn(variables, xb, yb, v), x, y, chunk=cfg.chunk)
            mean = {k: float(np.mean(out[k])) for k in ("one_minus_cos", "one_minus_cos_first_order", "flip_fraction",
                                                         "eig_rel_change", "beta", "beta_lambda1")}
            mean["mean_beta"], mean["mean_beta_lambda1"] = mean.pop("beta"), mean.pop("beta_lambda1")
            row[gating] = dict(mean, one_minus_cos_max=float(np.max(out["one_minus_cos"])),
                               eig_rel_change_max=float(np.max(out["eig_rel_change"])))
            if model_name == FIG1_MODEL and gating == "frozen" and label in FIG1_VARIANTS.values():
                k = cfg.n_fig
                key = next(kk for kk, lbl in FIG1_VARIANTS.items() if lbl == label)
                fig[key] = dict(attack=label, delta=out["delta"][:k], target=out["target"][:k],
                                 delta_hat=out["delta_hat"][:k])
        d_rows.append(row)
    eps_rows = []
    for norm, grid in (("l2", cfg.eps_l2), ("linf", cfg.eps_linf)):
        for gating in ("frozen", "free"):
            if gating not in fns:
                fns[gating] = make_pgd_fn(model, steps=S, gating=gating)
            for eps in grid:
                v = variant(norm, eps, eps / S)
                out = C.chunked(lambda xb, yb: fns[gating](variables, xb, yb, v), x, y, chunk=cfg.chunk)
                eps_rows.append(dict(norm=norm, eps=eps, gating=gating, steps=S, **{
                    k: float(np.mean(out[k])) for k in ("one_minus_cos", "one_minus_cos_first_order", "flip_fraction")},
                    label_flips=flip_rate(out["success_step"])))

    raw_fn = make_raw_free_fn(model, steps=cfg.raw_steps)
    j_rows = []
    for b in cfg.raw_betas:
        b64 = jnp.asarray(b, jnp.float64)
        out = C.chunked(lambda xb, yb: raw_fn(variables, xb, yb, b64), x, y, chunk=cfg.chunk)
        j_rows.append(dict(beta=b, steps=cfg.raw_steps, flip_fraction=float(np.mean(out["flip_fraction"])),
                           eig_rel_change=float(np.mean(out["eig_rel_change"])),
                           eig_rel_change_max=float(np.max(out["eig_rel_change"])),
                           mean_delta_norm=float(np.mean(out["delta_norm"])),
                           label_flips=flip_rate(out["success_step"])))
    res = dict(model=model_name, n_samples=int(len(x)), dtype="float64", test_accuracy=info["test_accuracy"],
               appendix_d=d_rows, appendix_d_eps=eps_rows, appendix_j_raw=j_rows,
               time_s=dict(train_or_load=t_train, experiment=time.perf_counter() - t0 - t_train))
    if fig:
        k = cfg.n_fig
        beta, m = cfg.fig_beta, cfg.fig_steps
        fig_fn = make_fig1_fn(model, steps=m)
        tout = jax.device_get(fig_fn(variables, x[:k], y[:k], jnp.asarray(beta, jnp.float64)))
        fig["raw"] = dict(attack=f"raw, frozen, beta={beta:g}, m={m}",
                          delta=tout["delta_star"], target=tout["delta_star"], delta_hat=tout["delta_hat"])
        fig["x"], fig["y"] = x[:k], y[:k]
        res["fig1"] = jax.tree.map(lambda a: np.asarray(a).tolist() if isinstance(a, np.ndarray) else a, fig)
    return res


# --- Figure 1 ----------------------------------------------------------------------------


def plot_fig1(res: dict, png_path: Path) -> None:
    """Figure 1 from the results only. Per digit: the image, δ̂, δ* (frozen raw attack), ``δ* − δ̂``;
    per PGD attack of :data:`FIG1_VARIANTS` (frozen, no clip) its perturbation (ℓ2) or effective
    component (ℓ∞) and its difference from ``C δ̂/||δ̂||`` (its own β-matched δ̂, ``C`` its norm);
    each map on its own colour scale. ``ValueError`` without Figure 1 data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# --- output ------------------------------------------------------------------------------


def markdown(res: dict) -> str:
    """The Markdown of ``appendix.md`` (from the results alone)."""
    fmt, rows = C.fmt_sci, res["rows"]
    ds = [{a["attack"]: a for a in r["appendix_d"]} for r in rows]
    have = set(ds[0]) if rows else set()
    main = [lbl for lbl in ("l2 eps=0.1", "l2 eps=1", "linf eps=0.01", "linf eps=0.1") if lbl in have]
    extra = [lbl for lbl in ("l2 eps=1 clip", "l2 eps=1 madry", "linf eps=0.1 clip", "linf eps=0.1 madry")
             if lbl in have]
    def cos(a, *more):  # A2 / free gating (/ more)
        return " / ".join(fmt(v) for v in (a["frozen"]["one_minus_cos"], a["free"]["one_minus_cos"], *more))

    head = ["network"] + [f"{lbl} (A2 / free / first-order)" for lbl in main]
    body = [[r["model"]] + [cos(d[lbl], d[lbl]["frozen"]["one_minus_cos_first_order"]) for lbl in main]
            for r, d in zip(rows, ds)]
    body2 = [[r["model"]] + [cos(d[lbl]) for lbl in extra] for r, d in zip(rows, ds)]
    betas = [j["beta"] for j in rows[0]["appendix_j_raw"]] if rows else []
    pgd = [lbl for lbl in ("linf eps=0.1",) if lbl in have]  # the free ℓ∞-PGD attack (when it ran)
    jhead = (["network"] + [f"raw β={b:g}: flips / Δλ₁" for b in betas]
             + ["ℓ∞ ε=0.1 PGD: flips / Δλ₁" for _ in pgd])
    flips = lambda j: f"{fmt(j['flip_fraction'])} / {fmt(j['eig_rel_change'])}"  # noqa: E731
    jbody = [[r["model"]] + [flips(j) for j in r["appendix_j_raw"]] + [flips(d[lbl]["free"]) for lbl in pgd]
             for r, d in zip(rows, ds)]
    S = res["pgd_steps"]
    eps = C.md_table(["network", "attack", "ε", "1 − cos (A2 / free)", "g_x alone (A2 / free)", "digits flipped"], [
        [r["model"], e["norm"], f"{e['eps']:g}", f"{fmt(e['one_minus_cos'])} / {fmt(f['one_minus_cos'])}",
         f"{fmt(e['one_minus_cos_first_order'])} / {fmt(f['one_minus_cos_first_order'])}", fmt(f["label_flips"])]
        for r in rows for e, f in zip(*([a for a in r.get("appendix_d_eps", []) if a["gating"] == g]
                                        for g in ("frozen", "free")))])
    return f"""# Appendix D and J checks (scale `{res['scale']}`)

Generated by `python -m jaxdyn appendix --scale {res['scale']}` ({res['dtype']}, seed {res['seed']},
{res['n_samples']} fixed MNIST test digits, 10-class networks of Table 1).

## Appendix D — mean 1 − cos(δ̂, δ^(ℓ2)) and 1 − cos(Cδ̂/‖δ̂‖, δ^(effective,ℓ∞))

{S}-step PGD from x with α = ε/{S} (no random start, no clip: the ε-ball is never left), δ̂ from
Theorem 2 with the attack's H̄_z and β matched to the attack's norm. Each cell: frozen gating (A2)
/ free gating / first-order baseline 1 − cos(g_x, ·). Paper: ℓ2 {PAPER['l2']}, ℓ∞ {PAPER['linf']}.

{C.md_table(head, body)}

Over ε (unclipped, α = ε/{S}), against the g_x-only baseline 1 − cos(g_x, ·); digits flipped: free gating.

{eps}

With clipping to [0, 1] and with Madry's α = 2.5ε/{S} (projection active, clip): A2 / free.

{C.md_table(["network"] + extra, body2)}

## Appendix J — fraction of flipped gates / relative change of λ₁(H̄_x)

Free-gating raw attack (m = {res['raw_steps']}) and the free ℓ∞-PGD attack above. Paper: Δλ₁ {PAPER['eig']}.

{C.md_table(jhead, jbody)}
"""


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Appendix D/J (and Figure 1's arrays) at ``cfg``; ``summary`` holds the ranges over networks."""
    rows = C.over_models(lambda m: appendix_model(m, cfg, progress=progress), cfg.models, progress=progress, desc=name,
                         out=out)
    return dict(dtype="float64", n_samples=cfg.n_samples, pgd_steps=cfg.pgd_steps, raw_steps=cfg.raw_steps,
                rows=rows, paper=PAPER, summary=summary(rows))


def plot(results: dict, out: Path) -> None:
    """``appendix.md`` and, when :data:`FIG1_MODEL` ran, ``fig1_perturbations.png``."""
    write_text_atomic(Path(out) / "appendix.md", markdown(results))
    if any("fig1" in r for r in results["rows"]):
        plot_fig1(results, Path(out) / "fig1_perturbations.png")


def summary(rows) -> dict:
    """Ranges ``[min, max]`` over networks of the per-network means (``None`` where none is finite)."""
    def rng(vals):
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return [min(vals), max(vals)] if vals else None

    d = [{a["attack"]: a for a in r["appendix_d"]} for r in rows]
    labels = sorted(d[0]) if rows else []
    return {
        "one_minus_cos_range": {f"{lbl} ({g})": rng([a[lbl][g]["one_minus_cos"] for a in d])
                                for lbl in labels for g in ("frozen", "free")},
        "one_minus_cos_first_order_range": {lbl: rng([a[lbl]["frozen"]["one_minus_cos_first_order"] for a in d])
                                            for lbl in labels},
    }


#: Appendix D: Theorem 2 must beat the g_x-only baseline 1 − cos(g_x, ·) by this factor
FACTOR_D = 2.0
#: Appendix D: (network, ε) pairs whose baseline is below this are at float resolution: not counted
BASELINE_FLOOR = 1e-8


def d_baseline_claim(results: dict, norm: str, gating: str, setting: str) -> dict:
    """Appendix D against the ``g_x``-only baseline over the ε grid (unclipped, α = ε/steps)."""
    fmt = C.fmt
    pairs = [(r["model"], e) for r in results["rows"] for e in r.get("appendix_d_eps", [])
             if e["norm"] == norm and e["gating"] == gating]
    counted = [(m, e) for m, e in pairs if e["one_minus_cos_first_order"] > BASELINE_FLOOR]
    ok = [e["one_minus_cos"] * FACTOR_D <= e["one_minus_cos_first_order"] for _, e in counted]
    frac = sum(ok) / len(ok) if ok else 0.0
    verdict = "holds" if ok and all(ok) else "holds partly" if frac >= 0.5 else "does not hold"
    sym = "ℓ2" if norm == "l2" else "ℓ∞"
    return claim(
        f"appendix.d_{norm}_beats_gx_{gating}", f"Appendix D: Theorem 2 matches {sym}-PGD better than g_x alone "
        f"({gating} gating)", paper="not in the paper (the paper has no baseline)",
        protocol=f"{results.get('pgd_steps')}-step {sym}-PGD, α = ε/steps, no clip, ε grid "
                 f"{sorted({e['eps'] for _, e in pairs})}; {setting}",
        measured="; ".join(f"{m} ε={e['eps']:g}: {fmt(e['one_minus_cos'])} (digits flipped {fmt(e['label_flips'])})"
                           for m, e in pairs),
        baselines="1 − cos(g_x, ·): " + "; ".join(f"{m} ε={e['eps']:g}: {fmt(e['one_minus_cos_first_order'])}"
                                                  for m, e in pairs),
        rule=f"over every (network, ε) whose baseline > {BASELINE_FLOOR:g}: 1 − cos ≤ baseline / {FACTOR_D:g}; holds: "
             f"all; holds partly: at least half; else does not hold (here {sum(ok)}/{len(ok)})",
        verdict=verdict)


def claims(results: dict) -> list[dict]:
    """Appendix D (Theorem 2 matches few-step ℓ2 / ℓ∞ PGD) and J (the attack barely changes λ₁ of
    H̄_x and the gates), from :func:`summary`'s ranges over networks."""
    summ, fmt = results["summary"], C.fmt
    cos = summ.get("one_minus_cos_range") or {}
    first = summ.get("one_minus_cos_first_order_range") or {}
    acc = ", ".join(f"{r['model']} {fmt(r.get('test_accuracy'), 3)}" for r in results["rows"])
    setting = f"{results.get('n_samples')} fixed test digits per network, {results.get('dtype')}; test acc.: {acc}"
    rngs = lambda d: "; ".join(f"{k}: {fmt(v[0])} … {fmt(v[1])}" for k, v in d.items() if v)  # noqa: E731
    # the paper's setting: A2, no clip, α = ε/steps ("we ignore the clip")
    plain = lambda label: "clip" not in label and "madry" not in label and label.endswith("(frozen)")  # noqa: E731
    out = []

    for norm, paper, hi in (("l2", "1 − cos(δ̂, δ^(ℓ2)) = 1e-6 … 1e-4", 1e-4),
                            ("linf", "1 − cos(Cδ̂/‖δ̂‖, δ^(effective,ℓ∞)) = 3.4e-5 on average", 1e-4)):
        sel = {k: v for k, v in cos.items() if k.startswith(norm) and plain(k) and v}
        if not sel:
            continue
        others = {k: v for k, v in cos.items() if k.startswith(norm) and not plain(k) and v}
        out.append(claim(
            f"appendix.d_{norm}",
            f"(paper protocol) Appendix D: Theorem 2 matches few-step {'ℓ2' if norm == 'l2' else 'ℓ∞'}-PGD",
            paper=paper,
            protocol=f"{results.get('pgd_steps')}-step PGD from x, α = ε/steps, no random start; δ̂ from Theorem 2 "
                     f"with the attack's H̄_z and β matched to its norm; {setting}",
            measured="range over networks of the mean: " + rngs(sel),
            baselines="first order 1 − cos(g_x, ·): " + rngs({k: v for k, v in first.items() if k.startswith(norm)}),
            controls=("free gating, clipping, Madry's α: " + rngs(others)) if others else "",
            rule=f"on the unclipped attacks under A2: holds if every network's mean ≤ {fmt(hi)}; holds partly if "
                 f"every one ≤ 1e-2 or the worst network of at least half of the attacks ≤ {fmt(hi)}",
            verdict=range_verdict([v[1] for v in sel.values()], hi, 1e-2)))
    out += [d_baseline_claim(results, norm, gating, setting) for norm in ("l2", "linf") for gating in ("frozen", "free")
            if any(e["norm"] == norm for r in results["rows"] for e in r.get("appendix_d_eps", []))]
    for cid, key, what, paper, bound in (
            ("j_eigenvalue", "eig_rel_change", "the top eigenvalue of H̄_x", "relative change 1e-4 … 1e-2", 1e-2),
            ("j_gates", "flip_fraction", "the gating states", "few gates flip (no number in the main text)", 0.05)):
        rows = [r for r in results["rows"] if r.get("appendix_j_raw")]
        if not rows:
            continue
        betas = [j["beta"] for j in rows[0]["appendix_j_raw"]]
        per_beta = "; ".join(
            f"β={b:g}: {count_verdict([r['appendix_j_raw'][i][key] <= bound for r in rows])} (max "
            f"{fmt(max(r['appendix_j_raw'][i][key] for r in rows))}, digits flipped "
            f"{fmt(min(r['appendix_j_raw'][i]['label_flips'] for r in rows))} … "
            f"{fmt(max(r['appendix_j_raw'][i]['label_flips'] for r in rows))})" for i, b in enumerate(betas))
        at = [(r["model"], attack_row(r["appendix_j_raw"])) for r in rows]
        out.append(claim(
            f"appendix.{cid}", f"Appendix J: the attack barely changes {what} (at attack strength)", paper=paper,
            protocol=f"raw attack, free gating, {results.get('raw_steps')} steps, β grid {betas}; {setting}",
            measured="at the attack β per network: " + ", ".join(
                f"{m} (β={j['beta']:g}, flipped {fmt(j['label_flips'])}) {fmt(j[key])}" for m, j in at)
                     + f". Verdict per β (rule applied at each β): {per_beta}",
            rule=f"value ≤ {fmt(bound)} at the attack β = the smallest β of the grid at which the raw attack flips "
                 f"≥ {ATTACK_FLIPS:g} of the correctly classified digits (the attack regime of Tables 1-2; the "
                 "largest β if none does); holds: every network; holds partly: some; else does not hold",
            verdict=count_verdict([j[key] <= bound for _, j in at])))
    return out
