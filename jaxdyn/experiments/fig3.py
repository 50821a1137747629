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

Controls (``controls`` in the JSON, :func:`controls`), on which the headline claims rest:

* ``unflipped_only``: Lemma 1 (``H_z ≥ g_z²``) and Theorem 3 assume ``y z > 0`` along the
  attack, so the headline uses only the digits the attack did not flip; the flipped ones are
  reported apart (``flipped_only``);
* ``partial_rho``: Spearman ρ of (x, y) controlling for the vanilla scale ``||g_W||`` at ``x``
  (no attack) and, apart, for the first-order surrogate of ``y`` (the same measurement at the
  curvature-free ``δ = β g_x``, :func:`jaxdyn.experiments._common.influence_baselines`);
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

from jaxdyn.experiments import _common as C
from jaxdyn.analyses import stats
from jaxdyn.experiments.claims import ACCURACY_FLOOR, RANK_RULE, claim, rank_family
from jaxdyn.analyses.metrics import spearman

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
    from jaxdyn.core.models import model_names

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


#: the x-axes a headline verdict counts (``H̄_z ||g̃_x||²`` has the ranks of ``A``, which ``Â`` measures)
X_COUNTED = ("hbar_z", "A_hat")
FIRST_ORDER = {"abs_phi": "abs_phi_fo", "dgw_norm": "dgw_norm_fo"}


def controls(q: dict) -> dict:
    """Fig. 3's controls from one network's per-sample numbers (see the module docstring)."""
    q = {k: np.asarray(v, float) for k, v in q.items()}
    flip = q["success"].astype(bool)
    un = ~flip

    def partial(mask, cov):
        return {f"{a}|{b}": stats.partial_spearman(q[a][mask], q[b][mask], cov(b)[mask]) for a in X_KEYS for b in Y_KEYS}

    def ratio(y):
        return q[y] / q[FIRST_ORDER[y]]

    vanilla, first_order = (lambda b: q["gw_norm"]), (lambda b: q[FIRST_ORDER[b]])
    return dict(
        unflipped_only=dict(n=int(un.sum()), spearman=correlations(q, un)),
        flipped_only=dict(n=int(flip.sum()), spearman=correlations(q, flip), partial_rho=partial(flip, vanilla)),
        partial_rho=dict(vanilla_gw=partial(un, vanilla), first_order=partial(un, first_order),
                         all_digits_vanilla_gw=partial(np.ones_like(un), vanilla)),
        exponential={f"A|{y}_ratio": spearman(q["A"][un], ratio(y)[un]) for y in Y_KEYS},
        vs_first_order={y: stats.paired(np.log(q[y][un]), np.log(q[FIRST_ORDER[y]][un])) for y in Y_KEYS},
        baselines=dict(first_order={f"{a}|{b}": spearman(q[a][un], q[FIRST_ORDER[b]][un]) for a in X_KEYS
                                    for b in Y_KEYS},
                       vanilla_gw={a: spearman(q[a][un], q["gw_norm"][un]) for a in X_KEYS}),
        redundancy={"A|hbar_z_gx2": spearman(q["A"], q["hbar_z_gx2"]), "A_hat|A": spearman(q["A_hat"], q["A"])})


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
            spearman=correlations(q), A0=cfg.A0, sensitivity=sens, controls=controls(q))

    models = C.binary_influence_runs(cfg, entry, progress=progress, desc="fig3 models", out=out,
                                     betas_A0=cfg.A0_extra)
    return dict(dtype="float64", models=models)


def _rhos(d: dict, keys) -> str:
    fmt = C.fmt
    return ", ".join(f"ρ({k.replace('|', ', ')}) {fmt(d[k]['rho'])} (p {fmt(d[k]['p'], 1)})" for k in keys)


def claims(results: dict) -> list[dict]:
    """C.5 (Fig. 3): the headline (unflipped digits, partial ρ given the vanilla scale), the
    exponential against its first-order part, and the paper protocol (all digits, plain ρ)."""
    fmt, models = C.fmt, results["models"]
    counted = [f"{a}|{b}" for a in X_COUNTED for b in Y_KEYS]
    protocol = "; ".join(
        f"{m}: test acc. {fmt(d.get('test_accuracy'), 3)}, β {fmt(d.get('beta'))}, m {d.get('steps')}, "
        f"n {d.get('n_samples')} ({d['controls']['unflipped_only']['n']} not flipped), first layer "
        f"{d.get('first_layer')}, attack flips {fmt(d.get('attack_success_rate'))} of the digits"
        for m, d in models.items()) + f"; {results['dtype']}; raw attack, free gating"
    twin = "; ".join(f"{m}: ρ(A, H̄_z‖g̃_x‖²) {fmt(d['controls']['redundancy']['A|hbar_z_gx2']['rho'])}, ρ(Â, A) "
                     f"{fmt(d['controls']['redundancy']['A_hat|A']['rho'])}" for m, d in models.items())
    note = (f"at fixed β, A = β H̄_z‖g̃_x‖² has the ranks of H̄_z‖g̃_x‖², counted once; Â is A along the "
            f"free-gating trajectory (= A under A2; {twin})")

    floor = (results.get("config") or {}).get("accuracy_floor", ACCURACY_FLOOR)
    accs = {m: d.get("test_accuracy") for m, d in models.items()}
    n_un = sum(d["controls"]["unflipped_only"]["n"] for d in models.values())

    def decide(tests, n_digits, k_name, what):
        f = rank_family(tests, accuracies=accs, floor=floor, name=k_name, n_digits=n_digits,
                        seed=(results.get("config") or {}).get("seed", 0))
        rule = RANK_RULE.format(null="", k=2 * len(tests), alpha=0.05, floor=floor,
                                extra=f" ({f['floor']})" if f["floor"] else "")
        return dict(rule=f"{what}; {rule}", verdict=f["verdict"], statistic=f["statistic"], cause=f["cause"],
                    per_seed=f["per_seed"])

    head = [(m, f"ρ({k.replace('|', ', ')})", d["controls"]["partial_rho"]["vanilla_gw"][k])
            for m, d in models.items() for k in counted]
    c_head = claim(
        "fig3.influence", "C.5 (Fig. 3): on the digits the attack has not flipped (Lemma 1's regime), larger H̄_z and Â "
        "give larger |g̃_xᵀΔg̃_x| and ‖Δg_W‖ beyond the vanilla scale ‖g_W‖",
        paper="larger values \"generally\" (scatter plots, no number; all digits)", protocol=protocol,
        measured="; ".join(f"{m}: partial ρ given ‖g_W‖: {_rhos(d['controls']['partial_rho']['vanilla_gw'], counted)}; "
                           f"plain ρ: {_rhos(d['controls']['unflipped_only']['spearman'], counted)}"
                           for m, d in models.items()),
        baselines="; ".join(f"{m}: ρ(x, first-order surrogate of y at δ = β g_x): "
                            f"{_rhos(d['controls']['baselines']['first_order'], counted)}; ρ(x, vanilla ‖g_W‖): "
                            + ", ".join(f"{a} {fmt(d['controls']['baselines']['vanilla_gw'][a]['rho'])}" for a in X_COUNTED)
                            for m, d in models.items()),
        controls="; ".join(f"{m}: partial ρ given the first-order surrogate of y: "
                           f"{_rhos(d['controls']['partial_rho']['first_order'], counted)}; flipped digits apart "
                           f"(n {d['controls']['flipped_only']['n']}), partial ρ given ‖g_W‖: "
                           f"{_rhos(d['controls']['flipped_only']['partial_rho'], counted)}" for m, d in models.items())
                 + "; " + note,
        **decide(head, n_un, "partial ρ given ‖g_W‖ holding after Holm",
                 "partial Spearman ρ(x, y | ‖g_W‖ at x) over the unflipped digits, x ∈ {H̄_z, Â}, y ∈ {|φ*|, "
                 "‖Δg_W‖}, per network"))

    expo = [(m, f"ρ(A, {k.split('|')[1]})", r) for m, d in models.items()
            for k, r in d["controls"]["exponential"].items()]
    c_exp = claim(
        "fig3.exponential", "Theorem 3's e^A (not its first-order part A) drives the effect: on unflipped digits the "
        "real attack's effect over its first-order surrogate rises with A",
        paper="e^A in Eq. 9 (no direct test)", protocol=protocol,
        measured="; ".join(f"{m}: " + ", ".join(f"ρ(A, {k.split('|')[1]}) {fmt(r['rho'])} (p {fmt(r['p'], 1)})"
                                                for k, r in d["controls"]["exponential"].items())
                           for m, d in models.items()),
        baselines="; ".join(f"{m}: median log(real / first-order): " + ", ".join(
            f"{y} {fmt(v['median_diff'])} (larger in {fmt(v['frac_greater'])}, Wilcoxon p {fmt(v['p'], 1)})"
            for y, v in d["controls"]["vs_first_order"].items()) for m, d in models.items()),
        controls="first-order surrogate: the same measurement at δ = β g_x (curvature-free, real network)",
        **decide(expo, n_un, "ρ(A, real / first order) holding after Holm",
                 "Spearman ρ(A, |φ*|/|φ̂_fo|) and ρ(A, ‖Δg_W‖/‖Δg_W^fo‖) per network over unflipped digits"))

    rhos = [(m, f"ρ({k.replace('|', ', ')})", r) for m, d in models.items() for k, r in d["spearman"].items()]
    n_all = sum(int(d.get("n_samples") or 0) for d in models.values())
    c_paper = claim(
        "fig3.paper_protocol", "paper protocol (Fig. 3): samples with large H̄_z, H̄_z‖g̃_x‖², Â get larger |g̃_xᵀΔg̃_x| "
        "and ‖Δg_W‖ (all digits, plain ρ)",
        paper="larger values \"generally\" (scatter plots, no number)", protocol=protocol,
        measured="; ".join(f"{m}: {_rhos(d['spearman'], list(d['spearman']))}" + "".join(
            f"; at A₀ = {a0} (β {fmt(sv['beta'])}, flips {fmt(sv['attack_success_rate'])}): ρ "
            + ", ".join(fmt(r['rho']) for r in sv['spearman'].values()) for a0, sv in (d.get("sensitivity") or {}).items())
            for m, d in models.items()),
        controls="none in this protocol (see fig3.influence); " + note,
        **decide(rhos, n_all, "plain ρ holding after Holm",
                 "Spearman ρ of each of the 3 × 2 pairs per network over all digits"))
    return [c_head, c_exp, c_paper]


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
                ax.set_title(f"{m}: ρ all {s['rho']:.2f}, unflipped {cu['unflipped_only']['spearman'][k]['rho']:.2f}\n"
                             f"partial ρ | ‖g_W‖ {cu['partial_rho']['vanilla_gw'][k]['rho']:.2f} "
                             f"(p {cu['partial_rho']['vanilla_gw'][k]['p']:.1g})", fontsize=7)
                ax.set_xlabel(LABELS[xk], fontsize=8)
                ax.set_ylabel(LABELS[yk], fontsize=8)
    C.save_figure(fig, Path(out) / "fig3_influence.png", dpi=100, rect=(0, 0, 1, 0.98),
                  title=f"Fig. 3 ({data['scale']} scale, {data['dtype']}): per-sample effect of adversarial training "
                        "(ρ all digits; unflipped; partial ρ given ‖g_W‖ on unflipped)")
