"""Figure 4, conclusion C.5: the direction of adversarial training is dominated by a few samples
with large ``Â``.

On the adversarially trained binary AlexNet, VGG-11 and ResNet-50 of Figure 3 (the same training
preset, so the same cached networks, and the same digits), every sample's ``Â`` and first-layer
``Δg_W`` are measured under the raw attack (:func:`jaxdyn.analyses.real_attack.attack_influence`, β set from
``A0`` as in Figure 3). The samples are sorted by ``Â`` and cut into ``groups`` (10) groups of
(nearly) equal size; per group we report the mean ``cos(Δg_W|_x, Δḡ_W)`` with
``Δḡ_W = mean over all x of Δg_W``. The paper says it rises with ``Â``; we report the curve,
Spearman's ρ between the groups' mean ``Â`` and mean cosine (10 points) and, with more power,
between ``Â`` and the cosine over all samples: the **paper protocol** (claim
``fig4.paper_protocol``).

That cosine compares ``Δg_W|_x`` with a mean that contains it, so a digit with a large ``||Δg_W||``
has a large cosine whatever the directions. The headline (``fig4.dominance``) therefore uses

* the cosine with the mean of the *other* digits' ``Δg_W`` (``cos_loo``; the mean of their unit
  vectors, ``cos_unit_loo``, is reported beside it), over the digits the attack did not flip
  (Lemma 1's regime; the mean still runs over all digits, as the training step does);
* a norm-only null model (:func:`jaxdyn.analyses.stats.norm_only_null`): every ``Δg_W`` gets a uniformly
  random direction in ``R^d`` and keeps its real norm, ``null_draws`` draws; the measured ρ(Â, cos)
  must exceed the null's 95 % quantile (``controls.null`` in the JSON holds its quantiles, for the
  leave-one-out, unit and the paper's cosine).

Verdicts by :func:`jaxdyn.experiments._common.rank_claim` over every network and seed (ρ per network
pooled over seeds by a hierarchical bootstrap, threshold 0; the headline's ρ minus the null's
median; a network below ``accuracy_floor``: not testable), as in Figure 3.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxdyn.analyses.influence_ranks import dominance, dominance_controls
from jaxdyn.core.models import model_names
from jaxdyn.experiments import _common as C
from jaxdyn.experiments.claims import ACCURACY_FLOOR, ClaimText

name = "fig4"
#: the per-sample numbers kept in the results (the claims' bootstrap resamples them)
SAMPLE_KEYS = ("A_hat", "cos_to_mean", "cos_loo", "cos_unit_loo", "dgw_norm", "success")
title = "Figure 4 — a few samples dominate (C.5)"


@dataclasses.dataclass(frozen=True)
class Config(C.BinaryInfluenceConfig):
    groups: int = dataclasses.field(default=10, metadata={"help": "number of Â groups"})
    null_draws: int = dataclasses.field(default=1000, metadata={"help": "draws of the norm-only null model"})


#: Figure 3's networks and digits (the same presets, so the same cached models)
SCALES = {s: dict(p, groups=10, null_draws=200 if s == "tiny" else 1000) for s, p in C.BINARY_INFLUENCE_SCALES.items()}
def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_models(cfg.models, model_names(), what="fig4")
    cfg.check()
    if cfg.groups < 1 or cfg.null_draws < 1:
        raise ValueError(f"groups and null_draws must be >= 1, got {cfg.groups}, {cfg.null_draws}")
    return cfg



def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Fig. 4 at ``cfg``: per network the ``Â``-group curve of the cosine and its Spearman ρ."""
    C.enable_x64()

    def entry(name, meta, runs):
        [(_, beta, q)] = runs
        return dict(dominance(q, groups=cfg.groups), beta=beta, steps=cfg.steps,
                    attack_success_rate=float(np.mean(q["success"])),
                    controls=dominance_controls(q, dim=meta["dgw_dim"], draws=cfg.null_draws, seed=meta["seed"],
                                                groups=cfg.groups),
                    samples={k: np.asarray(q[k]).tolist() for k in SAMPLE_KEYS},
                    **{k: meta[k] for k in ("seed", "test_accuracy", "width", "n_samples", "first_layer", "time_s")})

    models = C.binary_influence_runs(cfg, entry, progress=progress, desc="fig4 models", out=out)
    return dict(dtype="float64", models=models)



#: the claims' words (:func:`claims` fills them; per network, the ``NET_*`` parts are joined by "; ")
DOMINANCE = ClaimText(
    "fig4.dominance", "C.5 (Fig. 4): on unflipped digits, the larger Â, the closer Δg_W|x to the mean of the other "
    "digits' Δg_W, beyond what the norms alone give",
    paper="mean cos rises with Â over 10 groups (x in the mean)", protocol="{protocol}", measured="{head_measured}",
    baselines="{head_baselines}",
    controls="norm-only null: random directions in R^d with the real ‖Δg_W‖, ρ recomputed per draw",
    rule="per network Spearman ρ(Â, cos_loo) over unflipped digits; {rank_rule}")
PAPER = ClaimText(
    "fig4.paper_protocol", "paper protocol (Fig. 4): the mean cos(Δg_W|x, mean Δg_W) of a group rises with its Â "
    "(x in the mean, all digits)", paper="rises with Â over 10 groups", protocol="{protocol}",
    measured="{paper_measured}", controls="{paper_controls} (not in this rule; see fig4.dominance)",
    rule="Spearman ρ of (group mean Â, group mean cos) and of (Â, cos) over samples, per network; {rank_rule}")
NET_PROTOCOL = ("{m}: test acc. {acc}, β {beta}, m {steps}, n {n} ({n_un} not flipped), {n_groups} groups, first "
                "layer {layer} (d {dim})")
PROTOCOL_END = "; {dtype}; raw attack, free gating"
NULL_RULE = (" minus the median ρ of that network's norm-only null (its Δg_W given random directions, real norms)")
NET_HEAD = "{m}: ρ(Â, cos to the leave-one-out mean): {null_loo}"
NET_HEAD_BASE = "{m}: to the mean of unit vectors: {null_unit}; flipped digits apart: ρ {rho_flipped}"
NET_PAPER = ("{m}: mean cos per Â-group {cos_first} → {cos_last}, ρ(groups) {rho_groups} (p {p_groups}), ρ(samples) "
             "{rho_samples} (p {p_samples}, n {n_samples})")
NET_PAPER_CTRL = "{m}: the same ρ(samples) against the norm-only null: {null_paper}"
NULL = ("ρ {rho} (p {p}, n {n}) vs null median {median}, 95 % {q95} (P(null ≥ ρ) {p_above}, {n_draws} "
        "draws)")


def _null_text(nl: dict) -> str:
    fmt, qs = C.fmt, nl["quantiles"]
    return NULL.format(rho=fmt(nl["spearman"]["rho"]), p=fmt(nl["spearman"]["p"], 1), n=nl["spearman"]["n"],
                       median=fmt(qs["0.5"]), q95=fmt(qs["0.95"]), p_above=fmt(nl["p_above"], 1), n_draws=nl["n_draws"])


def _net_values(m: str, d: dict) -> dict:
    """One network's numbers for the ``NET_*`` templates, formatted."""
    fmt, c, sg, ss = C.fmt, d["controls"], d["spearman_groups"], d["spearman_samples"]
    return dict(m=m, acc=fmt(d.get("test_accuracy"), 3), beta=fmt(d.get("beta")), steps=d.get("steps"),
                n=d.get("n_samples"), n_un=c["n_unflipped"], n_groups=len(d["groups"]["cos"]),
                layer=d.get("first_layer"), dim=c["dim"], null_loo=_null_text(c["null"]["loo"]),
                null_unit=_null_text(c["null"]["unit_loo"]), null_paper=_null_text(c["null"]["paper"]),
                rho_flipped=fmt(c["flipped_only"]["rho"]), cos_first=fmt(d["groups"]["cos"][0]),
                cos_last=fmt(d["groups"]["cos"][-1]), rho_groups=fmt(sg["rho"]), p_groups=fmt(sg["p"], 1),
                rho_samples=fmt(ss["rho"]), p_samples=fmt(ss["p"], 1), n_samples=ss["n"])


def _join(template: str, rows) -> str:
    return "; ".join(template.format_map(r) for r in rows)


def _cols(keys, *, unflipped: bool):
    """``select`` of :func:`jaxdyn.experiments._common.rank_claim`: one network's per-digit ``keys``."""
    def select(d):
        q = {k: np.asarray(v, float) for k, v in d["samples"].items()}
        m = ~q["success"].astype(bool) if unflipped else np.ones(len(q["success"]), bool)
        return {k: q[k][m] for k in keys}
    return select


def claims(results: dict) -> list[dict]:
    """C.5 (Fig. 4): the headline (leave-one-out cosine on unflipped digits, ρ over the norm-only
    null's median) and the paper protocol (x in the mean, all digits, plain ρ), each decided by
    :func:`jaxdyn.experiments._common.rank_claim` over every network and seed."""
    models, cfg = results["models"], results.get("config") or {}
    nets = [_net_values(f"{m} seed {d.get('seed', 0)}", d) for m, ds in models.items() for d in ds]
    values = dict(protocol=_join(NET_PROTOCOL, nets) + PROTOCOL_END.format(dtype=results.get("dtype", "float64")),
                  head_measured=_join(NET_HEAD, nets), head_baselines=_join(NET_HEAD_BASE, nets),
                  paper_measured=_join(NET_PAPER, nets), paper_controls=_join(NET_PAPER_CTRL, nets))
    kw = dict(floor=cfg.get("accuracy_floor", ACCURACY_FLOOR), seed=(cfg.get("seeds") or [0])[0])

    def head_p(d):
        nl = d["controls"]["null"]["loo"]
        return [("ρ(Â, cos_loo)", dict(nl["spearman"], null_hi=nl["quantiles"]["0.95"], p_null=nl.get("p_above")))]

    return [C.rank_claim(DOMINANCE, values, models, _cols(("A_hat", "cos_loo"), unflipped=True),
                         [("ρ(Â, cos_loo) − null median", "rho", ("A_hat", "cos_loo"))], head_p, null=NULL_RULE,
                         offset=lambda d, lb: d["controls"]["null"]["loo"]["quantiles"]["0.5"], **kw),
            C.rank_claim(PAPER, values, models, _cols(("A_hat", "cos_to_mean"), unflipped=False),
                         [("ρ(groups)", "groups", ("A_hat", "cos_to_mean")),
                          ("ρ(samples)", "rho", ("A_hat", "cos_to_mean"))],
                         lambda d: [("ρ(groups)", d["spearman_groups"]), ("ρ(samples)", d["spearman_samples"])], **kw)]


def plot(results: dict, out: Path) -> None:
    """``fig4_dominance.png``: per model the mean cosine per ``Â`` group (the paper's, and to the
    leave-one-out mean on unflipped digits) and, below, the measured ρ(Â, cos) of each cosine with
    its norm-only null band (shaded 2.5-97.5 %, line at 95 %)."""
    import matplotlib  # noqa: PLC0415 (matplotlib only when plotting; its backend is set here, not at import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (after the backend)

    models = list(results["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(3.8 * len(models), 6.4), squeeze=False)
    for k, m in enumerate(models):
        d = results["models"][m][0]  # the first seed's network (the claims use every seed)
        ax, g, lg = axes[0, k], d["groups"], d["controls"]["loo_groups"]
        ax.plot(range(1, len(g["cos"]) + 1), g["cos"], "o-", label="paper: x in the mean, all digits")
        if lg:
            ax.plot(range(1, len(lg["cos"]) + 1), lg["cos"], "s--", label="leave-one-out mean, unflipped")
        ax.set_xlabel("group of Â (ascending)")
        ax.set_ylabel("mean cos(Δg_W|x, mean Δg_W)")
        s = d["spearman_groups"]
        ax.set_title(f"{m} seed {d.get('seed', 0)}: ρ(groups, paper) = {s['rho']:.2f} (p = {s['p']:.1g})", fontsize=8)
        if k == 0:
            ax.legend(fontsize=6)
        ax = axes[1, k]
        for i, (key, nl) in enumerate(d["controls"]["null"].items()):
            qs = nl["quantiles"]
            ax.fill_between([i - 0.3, i + 0.3], qs["0.025"], qs["0.975"], color="0.8",
                            label="norm-only null 2.5–97.5 %" if i == 0 else None)
            ax.hlines(qs["0.95"], i - 0.3, i + 0.3, color="0.4", lw=1, label="null 95 %" if i == 0 else None)
            ax.plot(i, nl["measured"], "o", color="C3", label="measured ρ" if i == 0 else None)
        ax.set_xticks(range(len(d["controls"]["null"])), list(d["controls"]["null"]), fontsize=7)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("ρ(Â, cos)")
        if k == 0:
            ax.legend(fontsize=6)
    C.save_figure(fig, Path(out) / "fig4_dominance.png",
                  title=f"Fig. 4 ({results['scale']} scale): samples with large Â dominate Δḡ_W? (null: random "
                        "directions, real norms)")
