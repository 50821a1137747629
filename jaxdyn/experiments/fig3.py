"""Figure 3, conclusion C.5: adversarial training boosts the influence of samples with large
``H̄_z``, ``H̄_z ||g̃_x||²`` and ``Â``.

On binary (sigmoid, digits 3 vs 5) networks adversarially trained with ℓ∞ PGD (AlexNet, VGG-11,
ResNet-50), for each correctly classified training digit ``x``:

* the raw attack (A1) ``δ`` with ``m`` steps of ``α = β/m`` (trajectory recorded, gating free:
  the real network),
* ``H̄_z`` (scalar, SPEC's trajectory average), ``H̄_z ||g̃_x||²`` (``g̃_x = ∂z/∂x`` at ``x``) and
  ``Â = Σ_{t=1}^{m} α H̄_z ||g̃_{x+δ^(t)}||²`` (Sec. 3.3, "Experimental verification 2 of
  Theorem 3"), with ``||g̃_{x+δ^(t)}|| = ||g_{x+δ^(t)}|| / |g_z(x+δ^(t))|`` since
  ``g_x = g_z g̃_x`` for a scalar logit (so the recorded loss-gradient norms suffice);
* ``Δg_W = ∂L(x+δ)/∂W - ∂L(x)/∂W`` for the first layer's kernel ``W`` (Eq. 7), ``||Δg_W||`` and
  ``g̃_xᵀΔg̃_x`` with ``Δg̃_x`` the jvp of ``W ↦ g̃_x(W)`` along ``-ηΔg_W``
  (:func:`jaxdyn.influence.measure`, which reduces to ``-η g̃_xᵀ Δg_W g̃_h`` for a dense layer);
  all of them per sample by :func:`jaxdyn.influence.attack_influence`.

The figure plots ``|g̃_xᵀΔg̃_x|`` and ``||Δg_W||`` against the three quantities (log-log) and
reports Spearman's ρ for each pair; the verdict asks for ρ > 0 with p < 0.05. ``cos(Δg_W|_x,
mean_x Δg_W)`` is recorded too (Figure 4's quantity).

β: the paper does not give it (Appendix L is unpublished). It is set as
``β = A_0 / median_x(H_z(x) ||g̃_x||²)`` so that the median clean-input ``A = β H_z ||g̃_x||²`` is
``A_0`` (1 by default): the regime where ``e^A`` departs from ``1 + A``. η only scales ``φ``
(it does not change any rank correlation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import claim, rank_verdict
from jaxdyn.metrics import spearman

name = "fig3"
title = "Figure 3 — per-sample influence (C.5)"


@dataclasses.dataclass(frozen=True)
class Config(C.BinaryInfluenceConfig):
    A0_extra: tuple[float, ...] = dataclasses.field(
        default=(), metadata={"help": "other A0 values measured for sensitivity (no verdict)"})


SCALES = {s: dict(p, A0_extra=() if s == "tiny" else (0.1,)) for s, p in C.BINARY_INFLUENCE_SCALES.items()}

X_KEYS = ("hbar_z", "hbar_z_gx2", "A_hat")
Y_KEYS = ("abs_phi", "dgw_norm")
LABELS = {"hbar_z": "H̄_z", "hbar_z_gx2": "H̄_z ||g̃_x||²", "A_hat": "Â", "abs_phi": "|g̃_xᵀΔg̃_x|",
          "dgw_norm": "||Δg_W||"}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    from jaxdyn.models import model_names

    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig3")
    cfg.check()
    if any(not a > 0 for a in cfg.A0_extra):
        raise ValueError(f"A0_extra must be > 0, got {cfg.A0_extra}")
    return cfg


def correlations(q: dict, mask=None) -> dict:
    """Spearman ρ (and p) of every (x, y) pair of Fig. 3: ``{"x|y": {"rho", "p", "n"}}``, over the
    samples where ``mask`` is true (all by default)."""
    m = np.ones(len(np.asarray(q[X_KEYS[0]])), bool) if mask is None else np.asarray(mask, bool)
    return {f"{a}|{b}": spearman(np.asarray(q[a])[m], np.asarray(q[b])[m]) for a in X_KEYS for b in Y_KEYS}


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 3 at ``cfg``: per network every sample's quantities and the Spearman ρ of each pair."""
    C.enable_x64()

    def entry(name, meta, runs):
        (_, beta, q), extra = runs[0], runs[1:]
        # the same measurement at other strengths (no verdict rests on it)
        sens = {str(a0): dict(beta=b, attack_success_rate=float(np.mean(qa["success"])), spearman=correlations(qa),
                              dominance_spearman=spearman(qa["A_hat"], qa["cos_to_mean"])) for a0, b, qa in extra}
        return dict(
            meta, beta=beta, alpha=beta / cfg.steps, steps=cfg.steps, eta=cfg.eta,
            attack_success_rate=float(np.mean(q["success"])), samples={k: np.asarray(v).tolist() for k, v in q.items()},
            spearman=correlations(q), A0=cfg.A0, sensitivity=sens,
            # Lemma 1 (H_z ≥ g_z²) and Theorem 3 assume the attack has not completed (y z > 0):
            # the same correlations on the digits that the attack did not flip (no verdict rests on it)
            spearman_not_flipped=correlations(q, ~np.asarray(q["success"], bool)))

    models = C.binary_influence_runs(cfg, entry, progress=progress, desc="fig3 models", out=out,
                                     betas_A0=cfg.A0_extra)
    return dict(dtype="float64", models=models)


def claims(results: dict) -> list[dict]:
    """C.5 (Fig. 3): every (quantity, influence) pair rises together on every network."""
    fmt = C.fmt
    parts, rhos = [], []
    for m, d in results["models"].items():
        rhos += list(d["spearman"].values())
        rh = ", ".join(f"ρ({k.replace('|', ', ')}) {fmt(s['rho'])} (p {fmt(s['p'], 1)})" for k, s in d["spearman"].items())
        nf = d.get("spearman_not_flipped") or {}
        rn = ", ".join(f"{fmt(s['rho'])}" for s in nf.values())
        parts.append(f"{m}: {rh}"
                     + (f"; on the {next(iter(nf.values()))['n']} digits not flipped (Lemma 1's regime, y z > 0) the "
                        f"same six ρ are {rn}" if nf else "")
                     + "".join(f"; at A₀ = {a0} (β {fmt(sv['beta'])}, flips {fmt(sv['attack_success_rate'])}): ρ "
                               + ", ".join(fmt(r['rho']) for r in sv['spearman'].values())
                               for a0, sv in (d.get("sensitivity") or {}).items()))
    protocol = "; ".join(
        f"{m}: test acc. {fmt(d.get('test_accuracy'), 3)}, β {fmt(d.get('beta'))}, m {d.get('steps')}, "
        f"n {d.get('n_samples')}, first layer {d.get('first_layer')}, attack flips {fmt(d.get('attack_success_rate'))} "
        f"of the digits" for m, d in results["models"].items()) + f"; {results['dtype']}"
    n_sig = sum(1 for r in rhos if np.isfinite(r["rho"]) and r["rho"] > 0 and r["p"] < 0.05)
    return [claim("fig3.influence", "C.5 (Fig. 3): samples with large H̄_z, H̄_z‖g̃_x‖², Â get larger |g̃_xᵀΔg̃_x| and ‖Δg_W‖",
                  paper="larger values \"generally\" (scatter plots, no number)", protocol=protocol,
                  measured="; ".join(parts),
                  controls="the same ρ on the digits the attack did not flip, and at other A₀ (no verdict)",
                  rule=f"Spearman ρ of each of the 3 × 2 pairs per network; holds: every ρ > 0 with p < 0.05 "
                       f"({n_sig}/{len(rhos)} are), holds partly: every ρ > 0 or some significant",
                  verdict=rank_verdict(rhos))]


def plot(results: dict, out: Path) -> None:
    """``fig3_influence.png``: per model a 2 x 3 grid of log-log scatter plots with ρ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    data, models = results, list(results["models"])
    fig, axes = plt.subplots(2 * len(models), 3, figsize=(10, 3.0 * 2 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        d = data["models"][m]
        q = d["samples"]
        for r, yk in enumerate(Y_KEYS):
            for c, xk in enumerate(X_KEYS):
                ax = axes[2 * i + r, c]
                xv, yv = np.asarray(q[xk], float), np.asarray(q[yk], float)
                ok = (xv > 0) & (yv > 0) & np.isfinite(xv) & np.isfinite(yv)
                flipped = np.asarray(q["success"], bool)
                for sel, color, label in ((ok & ~flipped, "C0", "not flipped by the attack"),
                                          (ok & flipped, "C3", "flipped")):
                    ax.scatter(xv[sel], yv[sel], s=8, alpha=0.6, color=color, label=label)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
                if i == 0 and r == 0 and c == 0:
                    ax.legend(fontsize=6)
                s = d["spearman"][f"{xk}|{yk}"]
                ax.set_title(f"{m}: ρ = {s['rho']:.2f} (p = {s['p']:.1g})", fontsize=8)
                ax.set_xlabel(LABELS[xk], fontsize=8)
                ax.set_ylabel(LABELS[yk], fontsize=8)
    C.save_figure(fig, Path(out) / "fig3_influence.png", dpi=100, rect=(0, 0, 1, 0.98),
                  title=f"Fig. 3 ({data['scale']} scale, {data['dtype']}): per-sample effect of adversarial training "
                        "(ρ over all digits)")
