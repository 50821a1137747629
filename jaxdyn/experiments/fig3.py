"""Figure 3, conclusion C.5: adversarial training boosts the influence of samples with large
``H̄_z``, ``H̄_z ||g̃_x||²`` and ``Â``.

On binary (sigmoid, digits 3 vs 5) networks adversarially trained with ℓ∞ PGD (AlexNet, VGG-11,
ResNet-50), for each correctly classified training digit ``x``:

* the raw attack (A1) ``δ`` with ``m`` steps of ``α = β/m`` (trajectory recorded, gating free:
  the real network),
* ``H̄_z`` (scalar, the trajectory average of docs/spec.md), ``H̄_z ||g̃_x||²`` (``g̃_x = ∂z/∂x`` at ``x``) and
  ``Â = Σ_{t=1}^{m} α H̄_z ||g̃_{x+δ^(t)}||²`` (Sec. 3.3, "Experimental verification 2 of
  Theorem 3"), with ``||g̃_{x+δ^(t)}|| = ||g_{x+δ^(t)}|| / |g_z(x+δ^(t))|`` since
  ``g_x = g_z g̃_x`` for a scalar logit (so the recorded loss-gradient norms suffice);
* ``Δg_W = ∂L(x+δ)/∂W - ∂L(x)/∂W`` for the first layer's kernel ``W`` (Eq. 7), ``||Δg_W||`` and
  ``g̃_xᵀΔg̃_x`` with ``Δg̃_x`` the jvp of ``W ↦ g̃_x(W)`` along ``-ηΔg_W``
  (:func:`jaxdyn.core.influence.measure`, which reduces to ``-η g̃_xᵀ Δg_W g̃_h`` for a dense layer);
  all of them per sample by :func:`jaxdyn.analyses.real_attack.attack_influence`.

The figure plots ``|g̃_xᵀΔg̃_x|`` and ``||Δg_W||`` against the three quantities (log-log) and
reports Spearman's ρ for each pair over all digits: the **paper protocol** (claim
``fig3.paper_protocol``). At fixed β, ``A = β H̄_z ||g̃_x||²`` has exactly the ranks of
``H̄_z ||g̃_x||²`` (and ``Â = A`` under A2), so these axes are one piece of evidence, not two.

Controls (``controls`` in the JSON, :func:`jaxdyn.analyses.influence_ranks.influence_controls`), on which
the headline claims rest:

* ``unflipped_only``: Lemma 1 (``H_z ≥ g_z²``) and Theorem 3 assume ``y z > 0`` along the
  attack, so the headline uses only the digits the attack did not flip; the flipped ones are
  reported apart (``flipped_only``);
* ``partial_rho``: Spearman ρ of (x, y) controlling for the vanilla scale ``||g_W||`` at ``x``
  (no attack) and, apart, for the first-order surrogate of ``y`` (the same measurement at the
  curvature-free ``δ = β g_x``, :func:`jaxdyn.analyses.influence_measure.influence_baselines`);
* ``exponential``: ρ(A, |φ*| / |φ̂_fo|) and ρ(A, ||Δg_W|| / ||Δg_W^fo||), which isolate what
  the exponential ``e^A`` adds over its first-order part ``A``;
* ``baselines``: the plain ρ of each x with the first-order surrogate and with ``||g_W||``.

β: the paper does not give it (Appendix L is unpublished). It is set as
``β = A_0 / median_x(H_z(x) ||g̃_x||²)`` so that the median clean-input ``A = β H_z ||g̃_x||²`` is
``A_0`` (1 by default): the regime where ``e^A`` departs from ``1 + A``. η only scales ``φ``
(it does not change any rank correlation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxdyn.analyses.influence_ranks import (FIRST_ORDER, X_COUNTED, X_KEYS, Y_KEYS, influence_controls,
                                             influence_correlations)
from jaxdyn.analyses.metrics import spearman
from jaxdyn.core.models import model_names
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ACCURACY_FLOOR, ClaimText

name = "fig3"
title = "Figure 3 — per-sample influence (C.5)"


@dataclasses.dataclass(frozen=True)
class Config(C.BinaryInfluenceConfig):
    A0_extra: tuple[float, ...] = dataclasses.field(
        default=(), metadata={"help": "other A0 values measured for sensitivity (no verdict)"})


SCALES = {s: dict(p, A0_extra=() if s == "tiny" else (0.1,)) for s, p in C.BINARY_INFLUENCE_SCALES.items()}

LABELS = {"hbar_z": "H̄_z", "hbar_z_gx2": "H̄_z ||g̃_x||²", "A_hat": "Â", "abs_phi": "|g̃_xᵀΔg̃_x|",
          "dgw_norm": "||Δg_W||"}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig3")
    cfg.check()
    if any(not a > 0 for a in cfg.A0_extra):
        raise ValueError(f"A0_extra must be > 0, got {cfg.A0_extra}")
    return cfg



def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 3 at ``cfg``: per network every sample's quantities and the Spearman ρ of each pair."""
    C.enable_x64()

    def entry(name, meta, runs):
        (_, beta, q), extra = runs[0], runs[1:]
        # the same measurement at other strengths (no verdict rests on it)
        sens = {str(a0): dict(beta=b, attack_success_rate=float(np.mean(qa["success"])),
                              spearman=influence_correlations(qa),
                              dominance_spearman=spearman(qa["A_hat"], qa["cos_to_mean"])) for a0, b, qa in extra}
        return dict(
            meta, beta=beta, alpha=beta / cfg.steps, steps=cfg.steps, eta=cfg.eta,
            attack_success_rate=float(np.mean(q["success"])), samples={k: np.asarray(v).tolist() for k, v in q.items()},
            spearman=influence_correlations(q), A0=cfg.A0, sensitivity=sens, controls=influence_controls(q))

    models = C.binary_influence_runs(cfg, entry, progress=progress, desc="fig3 models", out=out,
                                     betas_A0=cfg.A0_extra)
    return dict(dtype="float64", models=models)



#: the claims' words (:func:`claims` fills them; per network, the ``NET_*`` parts are joined by "; ")
INFLUENCE = ClaimText(
    "fig3.influence", "C.5 (Fig. 3): on the digits the attack has not flipped (Lemma 1's regime), larger H̄_z and Â "
    "give larger |g̃_xᵀΔg̃_x| and ‖Δg_W‖ beyond the vanilla scale ‖g_W‖",
    paper="larger values \"generally\" (scatter plots, no number; all digits)", protocol="{protocol}",
    measured="{head_measured}", baselines="{head_baselines}", controls="{head_controls}; {note}",
    rule="partial Spearman ρ(x, y | ‖g_W‖ at x) over the unflipped digits, x ∈ {{H̄_z, Â}}, y ∈ {{|φ*|, ‖Δg_W‖}}, per "
         "network; {rank_rule}")
EXPONENTIAL = ClaimText(
    "fig3.exponential", "Theorem 3's e^A (not its first-order part A) drives the effect: on unflipped digits the real "
    "attack's effect over its first-order surrogate rises with A",
    paper="e^A in Eq. 9 (no direct test)", protocol="{protocol}", measured="{exp_measured}",
    baselines="{exp_baselines}",
    controls="first-order surrogate: the same measurement at δ = β g_x (curvature-free, real network)",
    rule="Spearman ρ(A, |φ*|/|φ̂_fo|) and ρ(A, ‖Δg_W‖/‖Δg_W^fo‖) per network over unflipped digits; {rank_rule}")
PAPER = ClaimText(
    "fig3.paper_protocol", "paper protocol (Fig. 3): samples with large H̄_z, H̄_z‖g̃_x‖², Â get larger |g̃_xᵀΔg̃_x| and "
    "‖Δg_W‖ (all digits, plain ρ)",
    paper="larger values \"generally\" (scatter plots, no number)", protocol="{protocol}", measured="{paper_measured}",
    controls="none in this protocol (see fig3.influence); {note}",
    rule="Spearman ρ of each of the 3 × 2 pairs per network over all digits; {rank_rule}")
NET_PROTOCOL = ("{m}: test acc. {acc}, β {beta}, m {steps}, n {n} ({n_un} not flipped), first layer {layer}, attack "
                "flips {flips} of the digits")
PROTOCOL_END = "; {dtype}; raw attack, free gating"
NOTE = ("at fixed β, A = β H̄_z‖g̃_x‖² has the ranks of H̄_z‖g̃_x‖², counted once; Â is A along the free-gating "
        "trajectory (= A under A2; {twin})")
NET_TWIN = "{m}: ρ(A, H̄_z‖g̃_x‖²) {rho_twin}, ρ(Â, A) {rho_hat}"
NET_HEAD = "{m}: partial ρ given ‖g_W‖: {partial}; plain ρ: {plain}"
NET_HEAD_BASE = "{m}: ρ(x, first-order surrogate of y at δ = β g_x): {first_order}; ρ(x, vanilla ‖g_W‖): {vanilla}"
NET_HEAD_CTRL = ("{m}: partial ρ given the first-order surrogate of y: {partial_fo}; flipped digits apart "
                 "(n {n_flip}), partial ρ given ‖g_W‖: {partial_flip}")
NET_EXP = "{m}: {exp_rhos}"
NET_EXP_BASE = "{m}: median log(real / first-order): {paired}"
PAIRED = "{y} {median} (larger in {frac}, Wilcoxon p {p})"
NET_PAPER = "{m}: {paper}{sensitivity}"
SENSITIVITY = "; at A₀ = {a0} (β {beta}, flips {flips}): ρ {rhos}"
RHO = "ρ({pair}) {rho} (p {p})"
VANILLA = "{x} {rho}"


def _rhos(d: dict, keys) -> str:
    return ", ".join(RHO.format(pair=k.replace("|", ", "), rho=C.fmt(d[k]["rho"]), p=C.fmt(d[k]["p"], 1)) for k in keys)


def _join(template: str, rows) -> str:
    return "; ".join(template.format_map(r) for r in rows)


def _net_values(m: str, d: dict, counted) -> dict:
    """One network's numbers for the ``NET_*`` templates, formatted."""
    fmt, c = C.fmt, d["controls"]
    sens = "".join(SENSITIVITY.format(a0=a0, beta=fmt(sv["beta"]), flips=fmt(sv["attack_success_rate"]),
                                      rhos=", ".join(fmt(r["rho"]) for r in sv["spearman"].values()))
                   for a0, sv in (d.get("sensitivity") or {}).items())
    return dict(
        m=m, acc=fmt(d.get("test_accuracy"), 3), beta=fmt(d.get("beta")), steps=d.get("steps"), n=d.get("n_samples"),
        n_un=c["unflipped_only"]["n"], layer=d.get("first_layer"), flips=fmt(d.get("attack_success_rate")),
        rho_twin=fmt(c["redundancy"]["A|hbar_z_gx2"]["rho"]), rho_hat=fmt(c["redundancy"]["A_hat|A"]["rho"]),
        partial=_rhos(c["partial_rho"]["vanilla_gw"], counted), plain=_rhos(c["unflipped_only"]["spearman"], counted),
        first_order=_rhos(c["baselines"]["first_order"], counted),
        vanilla=", ".join(VANILLA.format(x=a, rho=fmt(c["baselines"]["vanilla_gw"][a]["rho"])) for a in X_COUNTED),
        partial_fo=_rhos(c["partial_rho"]["first_order"], counted), n_flip=c["flipped_only"]["n"],
        partial_flip=_rhos(c["flipped_only"]["partial_rho"], counted),
        exp_rhos=", ".join(RHO.format(pair=f"A, {k.split('|')[1]}", rho=fmt(r["rho"]), p=fmt(r["p"], 1))
                           for k, r in c["exponential"].items()),
        paired=", ".join(PAIRED.format(y=y, median=fmt(v["median_diff"]), frac=fmt(v["frac_greater"]), p=fmt(v["p"], 1))
                         for y, v in c["vs_first_order"].items()),
        paper=_rhos(d["spearman"], list(d["spearman"])), sensitivity=sens)


def _cols(keys, *, unflipped: bool):
    """``select`` of :func:`jaxdyn.experiments._common.rank_claim`: the per-digit ``keys`` of one network
    (``"<y>_ratio"``: y over its first-order surrogate), on the unflipped digits or all."""
    def select(d):
        q = {k: np.asarray(v, float) for k, v in d["samples"].items()}
        m = ~q["success"].astype(bool) if unflipped else np.ones(len(q["success"]), bool)
        return {k: (q[k[:-6]] / q[FIRST_ORDER[k[:-6]]] if k.endswith("_ratio") else q[k])[m] for k in keys}
    return select


def claims(results: dict) -> list[dict]:
    """C.5 (Fig. 3): the headline (unflipped digits, partial ρ given the vanilla scale), the
    exponential against its first-order part, and the paper protocol (all digits, plain ρ); each
    decided by :func:`jaxdyn.experiments._common.rank_claim` over every network and seed."""
    models, cfg = results["models"], results.get("config") or {}
    counted = [f"{a}|{b}" for a in X_COUNTED for b in Y_KEYS]
    nets = [_net_values(f"{m} seed {d.get('seed', 0)}", d, counted) for m, ds in models.items() for d in ds]
    values = dict(
        protocol=_join(NET_PROTOCOL, nets) + PROTOCOL_END.format(dtype=results["dtype"]),
        note=NOTE.format(twin=_join(NET_TWIN, nets)), head_measured=_join(NET_HEAD, nets),
        head_baselines=_join(NET_HEAD_BASE, nets), head_controls=_join(NET_HEAD_CTRL, nets),
        exp_measured=_join(NET_EXP, nets), exp_baselines=_join(NET_EXP_BASE, nets),
        paper_measured=_join(NET_PAPER, nets))
    kw = dict(floor=cfg.get("accuracy_floor", ACCURACY_FLOOR), seed=(cfg.get("seeds") or [0])[0])
    lab = LABELS | {"A": "A", "abs_phi_ratio": "|φ*|/|φ̂_fo|", "dgw_norm_ratio": "‖Δg_W‖/‖Δg_W^fo‖"}
    head = [(f"ρ({lab[x]}, {lab[y]} | ‖g_W‖)", "partial", (x, y, "gw_norm")) for x in X_COUNTED for y in Y_KEYS]
    expo = [(f"ρ(A, {lab[y + '_ratio']})", "rho", ("A", y + "_ratio")) for y in Y_KEYS]
    paper = [(f"ρ({lab[x]}, {lab[y]})", "rho", (x, y)) for x in X_KEYS for y in Y_KEYS]
    return [C.rank_claim(INFLUENCE, values, models, _cols((*X_COUNTED, *Y_KEYS, "gw_norm"), unflipped=True), head,
                         lambda d: [(k, d["controls"]["partial_rho"]["vanilla_gw"][k]) for k in counted], **kw),
            C.rank_claim(EXPONENTIAL, values, models, _cols(("A", "abs_phi_ratio", "dgw_norm_ratio"), unflipped=True),
                         expo, lambda d: list(d["controls"]["exponential"].items()), **kw),
            C.rank_claim(PAPER, values, models, _cols((*X_KEYS, *Y_KEYS), unflipped=False), paper,
                         lambda d: list(d["spearman"].items()), **kw)]


def plot(results: dict, out: Path) -> None:
    """``fig3_influence.png``: per model a 2 x 3 grid of log-log scatter plots with ρ."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting; its backend is set here, not at import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend)
    from matplotlib.ticker import NullFormatter  # noqa: PLC0415 (after the backend)

    data, models = results, list(results["models"])
    fig, axes = plt.subplots(2 * len(models), 3, figsize=(10, 3.0 * 2 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        d = data["models"][m][0]  # the first seed's network (the claims use every seed)
        q = d["samples"]
        for r, yk in enumerate(Y_KEYS):
            for c, xk in enumerate(X_KEYS):
                ax = axes[2 * i + r, c]
                xv, yv = np.asarray(q[xk], float), np.asarray(q[yk], float)
                ok = (xv > 0) & (yv > 0) & np.isfinite(xv) & np.isfinite(yv)
                flipped = np.asarray(q["success"], bool)
                for sel, color, label in ((ok & ~flipped, "C0", "not flipped (headline)"),
                                          (ok & flipped, "C3", "flipped")):
                    ax.scatter(xv[sel], yv[sel], s=8, alpha=0.6, color=color, label=label)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
                if i == 0 and r == 0 and c == 0:
                    ax.legend(fontsize=6)
                k = f"{xk}|{yk}"
                s, cu = d["spearman"][k], d["controls"]
                ax.set_title(f"{m} seed {d.get('seed', 0)}: ρ all {s['rho']:.2f}, unflipped "
                             f"{cu['unflipped_only']['spearman'][k]['rho']:.2f}\n"
                             f"partial ρ | ‖g_W‖ {cu['partial_rho']['vanilla_gw'][k]['rho']:.2f} "
                             f"(p {cu['partial_rho']['vanilla_gw'][k]['p']:.1g})", fontsize=7)
                ax.set_xlabel(LABELS[xk], fontsize=8)
                ax.set_ylabel(LABELS[yk], fontsize=8)
    C.save_figure(fig, Path(out) / "fig3_influence.png", dpi=100, rect=(0, 0, 1, 0.98),
                  title=f"Fig. 3 ({data['scale']} scale, {data['dtype']}): per-sample effect of adversarial training "
                        "(ρ all digits; unflipped; partial ρ given ‖g_W‖ on unflipped)")
