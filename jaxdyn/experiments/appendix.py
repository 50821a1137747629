"""Appendix D and J checks and Figure 1, on the 10-class networks of Table 1.

**Appendix D** — few-step PGD against Theorem 2. Under A2 the infinitely-many-step ℓ2 attack
follows the same curve as the raw gradient flow, so δ̂ of Theorem 2 should point like the ℓ2-PGD
perturbation, and ``C δ̂/||δ̂||`` like the effective component of an ℓ∞-PGD perturbation
(``Σ_t α (σ_tᵀ sign g_t) σ_t``, ``σ_t = g_t/||g_t||``; Sec. 3.2). For each attack:

* the attack is :func:`jaxdyn.attacks.attack` with ``norm="l2"`` / ``"linf"``, ``steps`` few
  steps of size ``α = ε/steps`` from ``x`` (no random start; the ε-ball projection is then never
  active, so the attack is the normalised ascent the theory describes) — variants with clipping
  to [0, 1] and with Madry's ``α = 2.5 ε/steps`` (projection active) are reported beside it;
* δ̂ is Theorem 2 with ``H̄_z`` averaged over that attack's own trajectory (SPEC's weights
  ``||Δx^(t)||``) and β chosen so that ``||δ̂(β)|| = ||δ^(ℓ2)||`` (resp. ``||δ^(effective)||``)
  — the point of the flow at the attack's distance (bisection on log β; ``||δ̂(β)||`` is
  increasing for ``H̄_z ⪰ 0``). ``C`` only scales, so ``1 - cos`` does not depend on it;
* the matching errors ``1 - cos(δ̂, δ^(ℓ2))`` and ``1 - cos(C δ̂/||δ̂||, δ^(effective,ℓ∞))``
  (mean over digits), next to the curvature-free baseline ``1 - cos(g_x, ·)`` (C.3's small-β
  limit), under frozen (A2; the paper's setting) and free gating.

**Appendix J** — how much an attack changes what A2 freezes: the fraction of ReLU gates whose state
at ``x + δ`` differs from that at ``x`` (:func:`jaxdyn.gating.flip_fraction`) and the relative
change ``|λ_1(x+δ) - λ_1(x)| / λ_1(x)`` of the top eigenvalue of ``H̄_x = W̃ H̄_z W̃ᵀ`` when
``W̃ = Jᵀ`` is taken at ``x + δ`` instead of ``x`` (same ``H̄_z``: the change due to the gating
alone), for the free-gating raw attack over a β grid and for the free ℓ2/ℓ∞ PGD attacks above.

**Figure 1** — for the 3-layer MLP and three digits: δ̂ and δ* (Table 1's setting) and their
difference, then the ℓ2-PGD perturbations and the effective ℓ∞ components (frozen gating, no clip,
a small and a typical ε each), each next to its difference from the rescaled δ̂. The arrays go to ``appendix.json``; the PNG is drawn from
that file only (:func:`plot_fig1`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import attack
from jaxdyn.cli import write_json_atomic
from jaxdyn.experiments import table1 as T1
from jaxdyn.gating import flip_fraction, input_jacobian
from jaxdyn.losses import grad_z
from jaxdyn.models import logits_fn
from jaxdyn.theory import cosine, structured_eigenpairs, theorem2

HELP = "Appendix D (1-cos of δ̂ vs few-step ℓ2/ℓ∞ PGD), Appendix J (gate flips, λ₁ change) and Figure 1."
RESULT_NAME = "appendix.json"

PAPER = dict(l2="1e-6 … 1e-4", linf="3.4e-5 (average)", eig="1e-4 … 1e-2")

#: (name, norm, eps, clip, alpha-rule) of the Appendix-D attacks; ``"ball"``: α = ε/steps,
#: ``"madry"``: α = 2.5 ε/steps.
PGD_VARIANTS = (
    ("l2 eps=0.1", "l2", 0.1, None, "ball"),
    ("l2 eps=1", "l2", 1.0, None, "ball"),
    ("l2 eps=1 clip", "l2", 1.0, (0.0, 1.0), "ball"),
    ("l2 eps=1 madry", "l2", 1.0, (0.0, 1.0), "madry"),
    ("linf eps=0.01", "linf", 0.01, None, "ball"),
    ("linf eps=0.1", "linf", 0.1, None, "ball"),
    ("linf eps=0.1 clip", "linf", 0.1, (0.0, 1.0), "ball"),
    ("linf eps=0.1 madry", "linf", 0.1, (0.0, 1.0), "madry"),
)
#: Figure 1's PGD columns (key in the JSON -> Appendix-D attack), a small and a typical budget each
FIG1_VARIANTS = {"l2_small": "l2 eps=0.1", "l2": "l2 eps=1", "linf_small": "linf eps=0.01", "linf": "linf eps=0.1"}
FIG1_TITLES = {"l2_small": "δ^(ℓ2), ε=0.1", "l2": "δ^(ℓ2), ε=1", "linf_small": "δ^(eff,ℓ∞), ε=0.01",
               "linf": "δ^(eff,ℓ∞), ε=0.1"}

#: ``variants``: the labels of :data:`PGD_VARIANTS` to run (``None``: all).
SCALES = {
    "tiny": dict(models=("mlp3", "cnn3"), n_samples=4, pgd_steps=5, variants=tuple(FIG1_VARIANTS.values()), raw_steps=20, raw_betas=(1e-3, 1e-1),
                 chunk=4, n_fig=2, fig_beta=1e-3, fig_steps=20, train=T1.SCALES["tiny"]["train"], train_overrides=None),
    "quick": dict(models=T1.MODELS, n_samples=16, pgd_steps=10, raw_steps=50, raw_betas=(1e-3, 1e-2, 1e-1, 1.0),
                  chunk=16, n_fig=3, fig_beta=1e-3, fig_steps=200, train="quick", train_overrides=dict(n_eval_robust=0)),
    "full": dict(models=T1.MODELS, n_samples=1000, pgd_steps=10, raw_steps=1000,
                 raw_betas=(1e-3, 1e-2, 1e-1, 1.0), chunk=250, n_fig=3, fig_beta=1e-3, fig_steps=1000,
                 train=T1.SCALES["full"]["train"],
                 train_overrides=None),
}
FIG1_MODEL = "mlp3"


def match_beta(J: jax.Array, g_z: jax.Array, hbar_z: jax.Array, target_norm, *, iters: int = 100):
    """The β at which Theorem 2's ``||δ̂(β)||`` equals ``target_norm`` (one example).

    ``||δ̂(β)|| ≥ β ||g_x||`` for ``H̄_z ⪰ 0`` (every ``φ(βλ_i) ≥ 1``), so the root lies in
    ``[10⁻¹² β₀, β₀]`` with ``β₀ = target/||g_x||``; ``iters`` bisections on ``log β`` (a
    ``lax.fori_loop``, vmappable)."""
    hi = target_norm / jnp.linalg.norm(J.T @ g_z)
    lo = hi * 1e-12

    def body(_, lh):
        lo, hi = lh
        mid = jnp.sqrt(lo * hi)
        small = jnp.linalg.norm(theorem2(J, g_z, hbar_z, mid).delta) < target_norm
        return jnp.where(small, mid, lo), jnp.where(small, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.sqrt(lo * hi)


def _lam1(J, hbar_z):
    return structured_eigenpairs(J, hbar_z)[0][0]


def make_pgd_fn(model, *, steps: int, norm: str, clip, gating: str):
    """Jitted ``(variables, x, y, eps, alpha) -> dict``: one Appendix-D attack and its comparison
    with Theorem 2, plus the Appendix-J gate flips and λ₁ change at its endpoint."""

    def one(variables, x, y, eps, alpha):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, alpha=alpha, norm=norm, eps=eps, clip=clip, gating=gating)
        target = res.delta if norm == "l2" else res.delta_effective
        J, gz = input_jacobian(f, x), grad_z(f(x), y)
        beta = match_beta(J, gz, res.hbar_z, jnp.linalg.norm(target))
        dh = theorem2(J, gz, res.hbar_z, beta).delta.reshape(x.shape)
        lam0 = _lam1(J, res.hbar_z)
        lam1 = _lam1(input_jacobian(f, x + res.delta), res.hbar_z)
        return dict(
            one_minus_cos=1.0 - cosine(dh, target), one_minus_cos_first_order=1.0 - cosine(J.T @ gz, target),
            beta=beta, beta_lambda1=beta * lam0, flip_fraction=flip_fraction(model.apply, variables, x, x + res.delta),
            eig_rel_change=jnp.abs(lam1 - lam0) / lam0, delta=res.delta, target=target, delta_hat=dh,
        )

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None)))


def make_raw_free_fn(model, *, steps: int):
    """Jitted ``(variables, x, y, beta) -> dict``: Appendix J for the free-gating raw attack."""

    def one(variables, x, y, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="free")
        J = input_jacobian(f, x)
        lam0 = _lam1(J, res.hbar_z)
        lam1 = _lam1(input_jacobian(f, x + res.delta), res.hbar_z)
        return dict(flip_fraction=flip_fraction(model.apply, variables, x, x + res.delta),
                    eig_rel_change=jnp.abs(lam1 - lam0) / lam0, delta_norm=jnp.linalg.norm(res.delta))

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def make_fig1_fn(model, *, steps: int):
    """Jitted ``(variables, x, y, beta) -> dict``: δ* (frozen raw attack) and δ̂ for Figure 1."""

    def one(variables, x, y, beta):
        f = logits_fn(model, variables)
        res = attack(f, x, y, steps=steps, beta=beta, norm="raw", gating="frozen")
        J, gz = input_jacobian(f, x), grad_z(f(x), y)
        return dict(delta_star=res.delta, delta_hat=theorem2(J, gz, res.hbar_z, beta).delta.reshape(x.shape))

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def appendix_model(name: str, cfg: dict, *, seed: int, progress: bool) -> dict:
    t0 = time.perf_counter()
    model, variables, info = T1.load_trained(name, cfg["train"], seed=seed, progress=progress,
                                             overrides=cfg.get("train_overrides"))
    t_train = time.perf_counter() - t0
    x, y = T1.fixed_digits(cfg["n_samples"], seed=seed)
    S = cfg["pgd_steps"]
    d_rows, fig, fns = [], {}, {}
    variants = [v for v in PGD_VARIANTS if cfg.get("variants") is None or v[0] in cfg["variants"]]
    for label, norm, eps, clip, rule in variants:
        alpha = (1.0 if rule == "ball" else 2.5) * eps / S
        row = dict(attack=label, norm=norm, eps=eps, alpha=alpha, steps=S, clip=clip)
        for gating in ("frozen", "free"):
            key = (norm, clip, gating)  # eps and alpha are traced: one compile per key
            if key not in fns:
                fns[key] = make_pgd_fn(model, steps=S, norm=norm, clip=clip, gating=gating)
            fn = fns[key]
            out = T1.run_chunked(fn, variables, x, y, jnp.asarray(eps, jnp.float64),
                                 jnp.asarray(alpha, jnp.float64), chunk=cfg["chunk"])
            row[gating] = dict(
                one_minus_cos=float(np.mean(out["one_minus_cos"])),
                one_minus_cos_max=float(np.max(out["one_minus_cos"])),
                one_minus_cos_first_order=float(np.mean(out["one_minus_cos_first_order"])),
                mean_beta=float(np.mean(out["beta"])), mean_beta_lambda1=float(np.mean(out["beta_lambda1"])),
                flip_fraction=float(np.mean(out["flip_fraction"])),
                eig_rel_change=float(np.mean(out["eig_rel_change"])),
                eig_rel_change_max=float(np.max(out["eig_rel_change"])),
            )
            if name == FIG1_MODEL and gating == "frozen" and label in FIG1_VARIANTS.values():
                k = cfg["n_fig"]
                key = next(kk for kk, lbl in FIG1_VARIANTS.items() if lbl == label)
                fig[key] = dict(attack=label, delta=out["delta"][:k], target=out["target"][:k],
                                 delta_hat=out["delta_hat"][:k])
        d_rows.append(row)

    raw_fn = make_raw_free_fn(model, steps=cfg["raw_steps"])
    j_rows = []
    for b in cfg["raw_betas"]:
        out = T1.run_chunked(raw_fn, variables, x, y, jnp.asarray(b, jnp.float64), chunk=cfg["chunk"])
        j_rows.append(dict(beta=b, steps=cfg["raw_steps"], flip_fraction=float(np.mean(out["flip_fraction"])),
                           eig_rel_change=float(np.mean(out["eig_rel_change"])),
                           eig_rel_change_max=float(np.max(out["eig_rel_change"])),
                           mean_delta_norm=float(np.mean(out["delta_norm"]))))
    res = dict(model=name, n_samples=int(len(x)), dtype="float64", test_accuracy=info["test_accuracy"],
               appendix_d=d_rows, appendix_j_raw=j_rows,
               time_s=dict(train_or_load=t_train, experiment=time.perf_counter() - t0 - t_train))
    if fig:
        k = cfg["n_fig"]
        beta, m = cfg["fig_beta"], cfg["fig_steps"]
        tout = T1.run_chunked(make_fig1_fn(model, steps=m), variables, x[:k], y[:k],
                              jnp.asarray(beta, jnp.float64), chunk=k)
        fig["raw"] = dict(attack=f"raw, frozen, beta={beta:g}, m={m}",
                          delta=tout["delta_star"], target=tout["delta_star"], delta_hat=tout["delta_hat"])
        fig["x"] = x[:k]
        fig["y"] = y[:k]
        res["fig1"] = jax.tree.map(lambda a: np.asarray(a).tolist() if isinstance(a, np.ndarray) else a, fig)
    return res


# --- Figure 1 ----------------------------------------------------------------------------


def plot_fig1(json_path: Path, png_path: Path) -> None:
    """Figure 1 from ``appendix.json`` only. Per digit: the image, Theorem 2's δ̂, the real δ*
    (frozen raw attack) and ``δ* − δ̂``; then, for each PGD attack of :data:`FIG1_VARIANTS`
    (frozen gating, no clip), the perturbation (ℓ2) or its effective component (ℓ∞) and its
    difference from ``C δ̂/||δ̂||`` (that attack's own β-matched δ̂, ``C`` = the attack's norm).
    Every map has its own symmetric colour scale (magnitudes are not comparable across panels);
    the label under a difference gives ``||difference|| / ||perturbation||``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(Path(json_path).read_text())
    fig1 = next((r["fig1"] for r in res["rows"] if "fig1" in r), None)
    if fig1 is None:
        raise ValueError(f"{json_path} holds no Figure 1 data (model {FIG1_MODEL} not run)")
    xs = np.asarray(fig1["x"])
    k = len(xs)
    keys = [key for key in FIG1_VARIANTS if key in fig1]
    ncol = 4 + 2 * len(keys)
    fig, axes = plt.subplots(k, ncol, figsize=(1.3 * ncol, 1.5 * k + 0.7), squeeze=False)

    def img(a):
        return np.asarray(a)[..., 0]

    for i in range(k):
        raw = fig1["raw"]
        dh, ds = img(raw["delta_hat"][i]), img(raw["target"][i])
        panels = [("digit", img(xs[i]), None), ("δ̂ (Thm 2)", dh, None), ("δ* (raw, A2)", ds, None),
                  ("δ* − δ̂", ds - dh, np.linalg.norm(ds - dh) / np.linalg.norm(ds))]
        for key in keys:
            t, h = img(fig1[key]["target"][i]), img(fig1[key]["delta_hat"][i])
            diff = t - h * np.linalg.norm(t) / np.linalg.norm(h)  # C δ̂/||δ̂||, C = ||target||
            panels += [(FIG1_TITLES[key], t, None), ("− Cδ̂/‖δ̂‖", diff, np.linalg.norm(diff) / np.linalg.norm(t))]
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
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Figure 1 ({FIG1_MODEL}, {res['dtype']}): {fig1['raw']['attack']}; PGD: {res.get('pgd_steps', '?')} "
                 "steps of ε/steps, frozen gating, no clip. Each map on its own colour scale; "
                 "rel. = ‖difference‖/‖perturbation‖", fontsize=7.5)
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


# --- output ------------------------------------------------------------------------------


def markdown(res: dict) -> str:
    fmt = T1.fmt
    rows = res["rows"]
    have = {a["attack"] for a in rows[0]["appendix_d"]} if rows else set()
    main = [lbl for lbl in ("l2 eps=0.1", "l2 eps=1", "linf eps=0.01", "linf eps=0.1") if lbl in have]
    head = ["network"] + [f"{lbl} (A2 / free / first-order)" for lbl in main]
    body = []
    for r in rows:
        d = {a["attack"]: a for a in r["appendix_d"]}
        body.append([r["model"]] + [f"{fmt(d[l]['frozen']['one_minus_cos'])} / {fmt(d[l]['free']['one_minus_cos'])}"
                                    f" / {fmt(d[l]['frozen']['one_minus_cos_first_order'])}" for l in main])
    extra = [lbl for lbl in ("l2 eps=1 clip", "l2 eps=1 madry", "linf eps=0.1 clip", "linf eps=0.1 madry")
             if lbl in have]
    body2 = []
    for r in rows:
        d = {a["attack"]: a for a in r["appendix_d"]}
        body2.append([r["model"]] + [f"{fmt(d[l]['frozen']['one_minus_cos'])} / {fmt(d[l]['free']['one_minus_cos'])}"
                                     for l in extra])
    betas = [j["beta"] for j in rows[0]["appendix_j_raw"]] if rows else []
    jhead = ["network"] + [f"raw β={b:g}: flips / Δλ₁" for b in betas] + ["ℓ∞ ε=0.1 PGD: flips / Δλ₁"]
    jbody = []
    for r in rows:
        d = {a["attack"]: a for a in r["appendix_d"]}["linf eps=0.1"]["free"]
        jbody.append([r["model"]] + [f"{fmt(j['flip_fraction'])} / {fmt(j['eig_rel_change'])}" for j in r["appendix_j_raw"]]
                     + [f"{fmt(d['flip_fraction'])} / {fmt(d['eig_rel_change'])}"])
    S = res["pgd_steps"]
    return f"""# Appendix D and J checks (scale `{res['scale']}`)

Generated by `python -m jaxdyn appendix --scale {res['scale']}` ({res['dtype']}, seed {res['seed']},
{res['n_samples']} fixed MNIST test digits, 10-class networks of Table 1).

## Appendix D — mean 1 − cos(δ̂, δ^(ℓ2)) and 1 − cos(Cδ̂/‖δ̂‖, δ^(effective,ℓ∞))

{S}-step PGD from x with α = ε/{S} (no random start, no clip: the ε-ball is never left), δ̂ from
Theorem 2 with the attack's H̄_z and β matched to the attack's norm. Each cell: frozen gating (A2)
/ free gating / first-order baseline 1 − cos(g_x, ·). Paper: ℓ2 {PAPER['l2']}, ℓ∞ {PAPER['linf']}.

{T1.md_table(head, body)}

With clipping to [0, 1] and with Madry's α = 2.5ε/{S} (projection active, clip): A2 / free.

{T1.md_table(["network"] + extra, body2)}

## Appendix J — fraction of flipped gates / relative change of λ₁(H̄_x)

Free-gating raw attack (m = {res['raw_steps']}) and the free ℓ∞-PGD attack above. Paper: Δλ₁ {PAPER['eig']}.

{T1.md_table(jhead, jbody)}
"""


def run_experiment(*, scale: str = "quick", out: Path, seed: int = 0, progress: bool = True,
                   models: Sequence[str] | None = None, figures_dir: Path | None = None) -> dict:
    """Run Appendix D/J and Figure 1; writes ``appendix.json``, ``appendix.md`` and
    ``fig1_perturbations.png`` into ``out`` (the PNG also into ``figures_dir`` when given)."""
    T1.enable_x64()
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    cfg = SCALES[scale]
    models = tuple(cfg["models"] if models is None else models)
    t0 = time.perf_counter()
    rows = [appendix_model(name, cfg, seed=seed, progress=progress)
            for name in T1.progress_bar(models, enabled=progress, desc="appendix")]
    res = dict(experiment="appendix", scale=scale, seed=seed, dtype="float64", n_samples=cfg["n_samples"],
               pgd_steps=cfg["pgd_steps"], raw_steps=cfg["raw_steps"], rows=rows, paper=PAPER,
               runtime_s=time.perf_counter() - t0)
    res["summary"] = summary(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RESULT_NAME, res)
    (out / "appendix.md").write_text(markdown(res))
    if any("fig1" in r for r in rows):
        plot_fig1(out / RESULT_NAME, out / "fig1_perturbations.png")
        if figures_dir is not None:
            plot_fig1(out / RESULT_NAME, Path(figures_dir) / "fig1_perturbations.png")
    return res


def summary(rows) -> dict:
    """Ranges over networks of the headline numbers (A2, no clip)."""
    def rng(vals):
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return [min(vals), max(vals)] if vals else None

    def col(label, key, gating="frozen"):
        return [{a["attack"]: a for a in r["appendix_d"]}[label][gating][key] for r in rows]

    have = {a["attack"] for a in rows[0]["appendix_d"]} if rows else set()
    return {
        "one_minus_cos_range": {f"{l} ({g})": rng(col(l, "one_minus_cos", g))
                                for l in sorted(have) for g in ("frozen", "free")},
        "one_minus_cos_first_order_range": {l: rng(col(l, "one_minus_cos_first_order")) for l in sorted(have)},
        "eig_rel_change_range_raw": {str(j["beta"]): rng([r["appendix_j_raw"][i]["eig_rel_change"] for r in rows])
                                     for i, j in enumerate(rows[0]["appendix_j_raw"])} if rows else {},
        "flip_fraction_range_raw": {str(j["beta"]): rng([r["appendix_j_raw"][i]["flip_fraction"] for r in rows])
                                    for i, j in enumerate(rows[0]["appendix_j_raw"])} if rows else {},
    }


def add_arguments(parser) -> None:
    parser.add_argument("--scale", choices=T1.SCALE_CHOICES, default="quick",
                        help="tiny (tests), quick (CI: 2 CPU cores), full (paper scale, GPU)")
    parser.add_argument("--quick", dest="scale", action="store_const", const="quick", help="= --scale quick")
    parser.add_argument("--full", dest="scale", action="store_const", const="full", help="= --scale full")
    parser.add_argument("--models", nargs="+", default=None, help="subset of Table 1's networks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figures-dir", type=Path, default=None,
                        help="also write fig1_perturbations.png here (the README's figures/)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def run(args) -> dict:
    return run_experiment(scale=args.scale, out=args.out, seed=args.seed, progress=args.progress,
                          models=args.models, figures_dir=args.figures_dir)
