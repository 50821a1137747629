"""Table 2: κ', the error of Theorem 3 (Eq. 9) against the effect ``φ* = g̃_xᵀ Δg̃_x`` measured from
real weight gradients.

For each network of the table (``mlp3/4/5``, ``cnn3/4/5``, ``rescnn3/4/5/10``) with a binary
sigmoid head trained on MNIST digits 3 vs 5, and a fixed set of test digits of those classes:

1. the ``m``-step raw attack under frozen gating (A2) gives ``H̄_z`` (scalar) on its trajectory;
2. Theorem 2 gives ``δ̂`` with that ``H̄_z`` (:func:`jaxdyn.core.theory.predict`);
3. ``φ*`` is measured (:func:`jaxdyn.core.influence.measure`): ``Δg_W = ∂L(f(x+δ̂))/∂W - ∂L(f(x))/∂W``
   for the first layer's weights ``W`` (:func:`jaxdyn.core.influence.first_layer_fn`), and
   ``φ* = g̃_xᵀ Δg̃_x`` with ``Δg̃_x`` the jvp of ``W ↦ ∂z/∂x`` along ``-ηΔg_W`` — which is
   ``-ηΔg_W g̃_h`` for the MLPs' dense first layer and its generalisation for the conv first layer
   of the CNNs and ResCNNs (docs/theory.md). Gradients at ``x + δ̂`` are taken under A2 (the
   paper: "computed … under assumption A2"), ``gating="frozen"``;
4. ``φ̂`` from Eq. 9 with ``A = β H̄_z ||g̃_x||²`` and the measured ``φ^(ori)``, ``g_z``, ``q``;
5. ``κ' = E|φ* - φ̂| / E|φ*|`` (:func:`jaxdyn.analyses.metrics.kappa_prime`), float64.

Extra columns: first order (Eq. 9 with ``e^A → 1 + A``), Eq. 10 (``g_W^(adv)`` alone), Eq. 11
(paper protocol: ``C = norm_c ||δ̂||``; the real-attack rows: ``C`` the measured norm of a real ℓ2
attack, :mod:`jaxdyn.analyses.real_attack`), ``φ*`` on the real network (gates free at ``x + δ̂``) and at the real
attack's δ*, ``E[A]``, and κ'(β) over a grid (the grid uses the exact A2 attack in logit space for
``H̄_z``; the headline column runs the attack through the network and records the agreement).

``η`` only scales ``φ*`` and ``φ̂`` alike (κ' does not depend on it); it is recorded. As in the
paper, the networks are adversarially trained (PGD-ℓ∞, ε = 0.3; at the quick scale with
``jaxdyn.training``'s ``QUICK_ADV`` preset); ``adv="none"`` (``--adv none``) trains them normally instead:
~100× larger ``A`` at the same β (adversarial training flattens ``g̃_x``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.analyses import real_attack

from jaxdyn.core import influence
from jaxdyn.attacks.multistep import attack, logit_space_attack
from jaxdyn.core.losses import grad_z
from jaxdyn.analyses.real_attack import real_attack_kappa
from jaxdyn.analyses.variant_matching import flip_rate
from jaxdyn.experiments import _common as C, _table2_output
from jaxdyn.analyses.metrics import kappa_prime, per_sample_norm
from jaxdyn._internal.results import write_text_atomic
from jaxdyn.core.theory import predict

name = "table2"
title = "Table 2 — κ′ (Theorem 3)"

MODELS = C.TABLE_MODELS
PAPER_KAPPA_PRIME = dict(zip(MODELS, (3.9e-5, 8.8e-6, 1.5e-6, 8.5e-7, 1.3e-7, 1.2e-7, 3.4e-5, 3.9e-5, 9.0e-5, 1.9e-4)))
#: the paper's range of κ′ over the ten networks
PAPER_RANGE = (1.2e-7, 1.9e-4)
ADV_CHOICES = ("none", "pgd-linf", "pgd-l2", "raw")
BINARY = (3, 5)

_help = C.help_field


@dataclasses.dataclass(frozen=True)
class Config(C.TableAttackConfig):
    """The knobs of Table 2 (beside :class:`~jaxdyn.experiments._common.TableAttackConfig`'s)."""

    adv: str = _help(f"adversarial training of the binary networks: one of {ADV_CHOICES}")
    eta: float = _help("learning rate η of the measured step (κ′ does not depend on it)")
    norm_c: float = _help("Eq. 11 uses C = norm_c ||δ̂||")
    A_targets: tuple[float, ...] = _help("real-attack sweep: β = A_target / median_x(H_z(x) ||g̃_x||²) per network")
    sweep_steps: int = _help("steps m of the real-attack sweep's raw attack (α = β/m)")


_BASE = dict(models=MODELS, steps=200, beta=1e-3, betas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), adv="pgd-linf", eta=1e-3,
             norm_c=0.5, seed=0, A_targets=(1e-3, 1e-2, 0.1, 0.3, 1.0), sweep_steps=50)
#: Scale presets (the tiny scale, for tests, skips adversarial training).
SCALES = {
    "tiny": dict(_BASE, models=("mlp3", "cnn3"), n_samples=4, steps=20, betas=(1e-3, 1e-1), adv="none", chunk=4,
                 A_targets=(1e-2, 0.3), sweep_steps=10,
                 **C.TABLE_TRAIN["tiny"]),
    "quick": dict(_BASE, models=C.QUICK_TABLE_MODELS, n_samples=16, chunk=16, **C.TABLE_TRAIN["quick"]),
    "full": dict(_BASE, n_samples=1000, steps=1000, chunk=250, **C.TABLE_TRAIN["full"]),
}


def config(scale: str = "quick", **overrides) -> Config:
    """The resolved config; ``ValueError`` for bad values (checked before any work)."""
    from jaxdyn._internal.checks import check_choice

    cfg = C.make_config(Config, SCALES, scale, overrides)
    C.check_table_models(cfg.models, scale, what="Table 2")
    C.check_fields(cfg, positive=("beta", "betas", "eta", "norm_c", "A_targets"),
                   counts=("n_samples", "steps", "chunk", "sweep_steps"))
    check_choice("adv", cfg.adv, ADV_CHOICES)
    for k in [k for k in ("train", "train_overrides") if "binary" in (getattr(cfg, k) or {})]:  # the task is fixed
        raise ValueError(f"{k}: 'binary' is Table 2's task {BINARY}, not a setting")
    return cfg


def _measure_all(z_of, W, x, y, beta, fro_delta, hbar, eta, norm_c):
    f = lambda xx: z_of(W, xx)  # noqa: E731
    pred = predict(f, x, y, hbar, beta=beta)
    dh = pred.delta_hat
    m = influence.measure(z_of, W, x, y, dh, eta=eta, gating="frozen")
    m_free = influence.measure(z_of, W, x, y, dh, eta=eta, gating="free")
    m_star = influence.measure(z_of, W, x, y, fro_delta, eta=eta, gating="frozen")
    m_norm = influence.measure(z_of, W, x, y, norm_c * dh, eta=eta, gating="frozen")
    gt = jax.grad(lambda t: f(t)[0])(x)  # the one-scalar reconstruction of φ* (docs/theory.md)
    r = grad_z(f(x) + jnp.vdot(gt, dh), y)[0] / m.g_z
    phi_r = influence.phi_one_scalar(r=r, A=influence.influence_A(beta, hbar[0, 0], m.gx_norm2), phi_ori=m.phi_ori,
                                     g_z=m.g_z, hbar_z=hbar[0, 0], q=m.q, eta=eta)
    return dict(
        phi_one_scalar=phi_r, hbar_z=hbar[0, 0], phi=m.phi, phi_ori=m.phi_ori, phi_adv=m.phi_adv, g_z=m.g_z,
        gx_norm2=m.gx_norm2, q=m.q, dgw_norm=m.dgw_norm, phi_free=m_free.phi, phi_attack=m_star.phi,
        phi_norm=m_norm.phi, delta_hat_norm=jnp.linalg.norm(dh), delta_star=fro_delta.ravel(),
    )


def make_batch_fn(model, path, steps: int, *, eta: float, norm_c: float):
    """Jitted ``(variables, x [B,28,28,1], y [B], beta, network_attack) -> dict of per-sample
    arrays`` (all the measured quantities of the module docstring). ``network_attack`` (a traced
    bool, ``lax.cond``: one compile for both): run the A2 attack through the network
    (:func:`jaxdyn.attacks.multistep.attack`, the headline) or in logit space (exact, cheap: the β grid);
    ``delta_logit_space`` is the logit-space δ* (to check the agreement with the headline)."""

    def one(variables, x, y, beta, network_attack):
        z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
        f = lambda xx: z_of(W, xx)  # noqa: E731
        lsa = logit_space_attack(f, x, y, steps=steps, beta=beta)
        fro = jax.lax.cond(network_attack, lambda: attack(f, x, y, steps=steps, beta=beta, gating="frozen"), lambda: lsa)
        out = _measure_all(z_of, W, x, y, beta, fro.delta, fro.hbar_z, eta, norm_c)
        out["success"] = fro.success_step >= 0
        out["delta_logit_space"] = lsa.delta.ravel()
        return out

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None)))


def summarize(out: dict, beta: float, *, eta: float, norm_c: float) -> dict:
    """κ' for Eqs. 9-11 and the variants, from one batch-function output."""
    hz, gz, q, po = (jnp.asarray(out[k]) for k in ("hbar_z", "g_z", "q", "phi_ori"))
    A = influence.influence_A(beta, hz, jnp.asarray(out["gx_norm2"]))
    common = dict(A=A, phi_ori=po, g_z=gz, hbar_z=hz, q=q, eta=eta)
    phi9 = influence.theorem3(**common)
    phi9_1 = influence.theorem3(**common, first_order=True)
    phi10 = influence.theorem4(**common)
    dn = jnp.asarray(out["delta_hat_norm"])
    phi11 = influence.theorem5(**common, c=norm_c * dn, delta_norm=dn)
    phi = jnp.asarray(out["phi"])
    kp = lambda a, b: float(kappa_prime(jnp.asarray(a), b))  # noqa: E731
    return dict(
        beta=beta,
        kappa_prime=kp(phi, phi9),
        kappa_prime_first_order=kp(phi, phi9_1),
        kappa_prime_eq10=kp(out["phi_adv"], phi10),
        kappa_prime_eq10_first_order=kp(out["phi_adv"], influence.theorem4(**common, first_order=True)),
        kappa_prime_eq10_null=kp(out["phi_adv"], po),
        one_scalar_rel_err=float(jnp.max(jnp.abs(phi - jnp.asarray(out["phi_one_scalar"]))) / jnp.max(jnp.abs(phi))),
        kappa_prime_eq11=kp(out["phi_norm"], phi11),
        kappa_prime_free=kp(out["phi_free"], phi9),
        kappa_prime_attack=kp(out["phi_attack"], phi9),
        mean_A=float(jnp.mean(A)),
        A_weighted=float(jnp.sum(jnp.abs(phi) * A) / jnp.sum(jnp.abs(phi))),
        mean_abs_phi=float(jnp.mean(jnp.abs(phi))),
        frac_phi_negative=float(jnp.mean(phi < 0)),
        frac_lemma1=float(jnp.mean(hz >= gz**2)),
        attack_success_rate=float(np.mean(out["success"])),
    )


def make_sweep_fn(model, path, steps: int, *, eta: float):
    """Jitted ``(variables, x, y, beta) -> {gating: per-sample dict}``: the real-attack protocol's
    measurement (:func:`jaxdyn.analyses.real_attack.real_attack_phi`, free and frozen gating, β traced: one
    compile per network), with Eq. 11's ℓ2 attack under ``"l2"`` (:func:`jaxdyn.analyses.real_attack.l2_attack_phi`, budget
    the raw attack's ``||δ*||₂``); the theory is applied afterwards (:func:`jaxdyn.analyses.real_attack.real_attack_kappa`,
    :func:`jaxdyn.analyses.real_attack.eq11_kappa`)."""

    def one(variables, x, y, beta):
        z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
        out = {g: real_attack.real_attack_phi(z_of, W, x, y, beta=beta, steps=steps, eta=eta, gating=g)
               for g in ("free", "frozen")}
        for g, q in out.items():  # Eq. 11: an ℓ2 attack, budget the raw δ*'s ℓ2 norm
            q["l2"] = real_attack.l2_attack_phi(z_of, W, x, y, eps=q["delta_l2"], steps=steps, eta=eta, gating=g)
        return out

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def real_attack_sweep(model, variables, path, x, y, cfg: Config) -> list[dict]:
    """The real-attack rows of one network: for each ``A_target``, ``β = A_target / median_x(H_z(x)
    ||g̃_x||²)`` (clean input, as Fig. 3) and, per gating, κ′ of Eqs. 9-10 with their baselines,
    the measured median ``A``, the flip rate of correctly classified digits and the median norms."""
    from jaxdyn.core.models import logits_fn

    f = logits_fn(model, variables)
    a_unit = np.asarray(jax.jit(jax.vmap(lambda xi, yi: influence.influence_A_clean(f, xi, yi)))(x, y))
    fn = make_sweep_fn(model, path, cfg.sweep_steps, eta=cfg.eta)
    rows = []
    for a_t in cfg.A_targets:
        beta = float(a_t / np.median(a_unit))
        b = jnp.asarray(beta, jnp.float64)
        out = C.chunked(lambda xb, yb: fn(variables, xb, yb, b), x, y, chunk=cfg.chunk)
        for gating, q in out.items():
            rows.append(dict(beta=beta, A_target=a_t, gating=gating, steps=cfg.sweep_steps,
                             A_median=float(np.median(q["A"])), flip_fraction=flip_rate(q["success_step"]),
                             delta_l2=float(np.median(q["delta_l2"])), delta_linf=float(np.median(q["delta_linf"])),
                             **real_attack_kappa(q, eta=cfg.eta), **real_attack.eq11_kappa(q["l2"], beta=beta, eta=cfg.eta)))
    return rows


def table2_model(model_name: str, cfg: Config, *, progress: bool) -> dict:
    """All Table-2 numbers of one network (see the module docstring)."""
    beta, steps = cfg.beta, cfg.steps
    adv = None if cfg.adv == "none" else cfg.adv
    t0 = time.perf_counter()
    model, variables, info = C.load_model(model_name, cfg.train, binary=BINARY, adv=adv, seed=cfg.seed,
                                          progress=progress, overrides=cfg.train_overrides)
    t_train = time.perf_counter() - t0
    path = influence.first_layer_path(model, variables)
    x, y = C.fixed_digits(cfg.n_samples, seed=cfg.seed, binary=BINARY)
    kw = dict(eta=cfg.eta, norm_c=cfg.norm_c)

    fn = make_batch_fn(model, path, steps, **kw)  # one compile for the headline and the β grid

    def batches(network_attack, b):
        b, na = jnp.asarray(b, jnp.float64), jnp.asarray(network_attack)
        return C.chunked(lambda xb, yb: fn(variables, xb, yb, b, na), x, y, chunk=cfg.chunk)

    head_out = batches(True, beta)
    head = summarize(head_out, beta, **kw)
    ds = head_out["delta_star"]
    agreement = float(np.max(per_sample_norm(head_out["delta_logit_space"] - ds) / per_sample_norm(ds)))
    grid = [summarize(batches(False, b), b, **kw) for b in sorted(set(float(b) for b in cfg.betas) | {beta})]
    paper = dict(beta=beta, steps=steps, gating="frozen", delta="Theorem 2's δ̂ (A2)",
                 **{k: head[k] for k in ("kappa_prime", "kappa_prime_first_order", "kappa_prime_eq10",
                                         "kappa_prime_eq10_first_order", "kappa_prime_eq10_null", "mean_A",
                                         "one_scalar_rel_err")})
    protocols = dict(paper=paper, real_attack=real_attack_sweep(model, variables, path, x, y, cfg))
    return dict(
        model=model_name, beta=beta, steps=steps, n_samples=int(len(x)), dtype="float64",
        test_accuracy=info["test_accuracy"], **{k: v for k, v in head.items() if k != "beta"},
        paper_kappa_prime=PAPER_KAPPA_PRIME.get(model_name), first_layer="/".join(path),
        first_layer_kind="dense" if influence.get_param(variables, path).ndim == 2 else "conv",
        binary=list(BINARY), adv=adv, robust_accuracy=info.get("robust_accuracy"), eta=cfg.eta, norm_c=cfg.norm_c,
        logit_space_agreement=agreement, kappa_prime_vs_beta=grid, protocols=protocols, train_config=info.get("config"),
        time_s=dict(train_or_load=t_train, experiment=time.perf_counter() - t0 - t_train),
    )


def run(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Table 2 at ``cfg``: one row per network; ``done`` holds the "done" criterion's numbers."""
    rows = C.over_models(lambda m: table2_model(m, cfg, progress=progress), cfg.models, progress=progress, desc=name,
                         out=out)
    return C.table_results(cfg, rows, key="kappa_prime", base="kappa_prime_first_order", eta=cfg.eta,
                           sweep_steps=cfg.sweep_steps, A_targets=list(cfg.A_targets),
                           norm_c=cfg.norm_c, binary=list(BINARY))


#: the real-attack verdict's strength: per network, the sweep row whose median A is nearest to it
#: (log scale; a row outside [A_VERDICT/3, 3 A_VERDICT] counts as a failure)
A_VERDICT = 0.3
#: κ′ must be below each baseline (first order, null) by this factor
FACTOR = 2.0


def verdict_row(rows: list, gating: str) -> dict | None:
    """The real-attack row of ``gating`` whose median A is nearest :data:`A_VERDICT` (log scale);
    ``None`` if there is none within a factor 3."""
    rows = [r for r in rows if r["gating"] == gating and r["A_median"] > 0]
    if not rows:
        return None
    best = min(rows, key=lambda r: abs(math.log(r["A_median"] / A_VERDICT)))
    return best if abs(math.log(best["A_median"] / A_VERDICT)) <= math.log(3.0) else None


def beats_baselines(row: dict | None, key: str = "kappa_prime") -> bool:
    """``row[key]`` is below both ``row[key + "_first_order"]`` and ``row[key + "_null"]`` by
    :data:`FACTOR` (``False`` for a missing row or a non-finite value)."""
    if row is None:
        return False
    v, fo, nu = row.get(key), row.get(key + "_first_order"), row.get(key + "_null")
    if not all(isinstance(a, (int, float)) and math.isfinite(a) for a in (v, fo, nu)):
        return False
    return v * FACTOR <= fo and v * FACTOR <= nu


def claims(results: dict) -> list[dict]:
    """Table 2's claims: the paper protocol (κ′ in the paper's range; labelled: close to an
    identity, docs/theory.md), and Theorem 3 (Eq. 9) and Theorem 4 (Eq. 10) against a real attack
    at median A ≈ :data:`A_VERDICT`, beside first-order and null baselines (free gating the
    headline; frozen apart)."""
    from jaxdyn.experiments.claims import claim, count_verdict, range_verdict

    fmt, rows = C.fmt, results["rows"]
    acc = ", ".join(f"{r['model']} {fmt(r.get('test_accuracy'), 3)}" for r in rows)
    setting = f"{results.get('n_samples')} fixed test digits, {results.get('dtype')}; networks (test acc.): {acc}"
    per = lambda k: ", ".join(f"{r['model']} {fmt(r.get(k))}" for r in rows)  # noqa: E731
    lo, hi = PAPER_RANGE
    out = [claim(
        f"{name}.paper_protocol", "(paper protocol) Theorem 3 fits φ* measured at Theorem 2's δ̂ under A2: κ′ is small",
        paper=f"κ′ = {fmt(lo)} … {fmt(hi)} over the 10 networks",
        protocol=f"β = {fmt(results.get('beta'))}, m = {results.get('steps')}, φ* at δ̂, frozen gating; {setting}",
        measured=f"κ′ = {per('kappa_prime')}; max |φ* − one-scalar reconstruction| / max |φ*| = "
                 f"{per('one_scalar_rel_err')} (close to an identity: docs/theory.md)",
        baselines=f"first order: {per('kappa_prime_first_order')}; Eq. 10 null (φ̂ = φ_ori): "
                  f"{per('kappa_prime_eq10_null')}",
        rule=f"holds: every κ′ ≤ {fmt(hi)}; holds partly: every one ≤ 1e-3 or at least half ≤ {fmt(hi)}",
        verdict=range_verdict([r.get("kappa_prime") for r in rows], hi, 1e-3))]
    for cid, eq, key, gating in (("real_attack_free", "Theorem 3 (Eq. 9)", "kappa_prime", "free"),
                                 ("real_attack_frozen", "Theorem 3 (Eq. 9)", "kappa_prime", "frozen"),
                                 ("real_attack_eq10_free", "Theorem 4 (Eq. 10)", "kappa_prime_eq10", "free"),
                                 ("real_attack_eq11_free", "Theorem 5 (Eq. 11)", "kappa_prime_eq11", "free")):
        sel = [(r["model"], verdict_row((r.get("protocols") or {}).get("real_attack") or [], gating)) for r in rows]
        got = lambda row, k: fmt(row[k]) if row else "—"  # noqa: E731
        desc = "; ".join(f"{m} (β {got(w, 'beta')}, A {got(w, 'A_median')}, flips {got(w, 'flip_fraction')}): "
                         f"{got(w, key)} vs first order {got(w, key + '_first_order')}, null {got(w, key + '_null')}"
                         + (f", sign agreement {got(w, 'sign_agreement')}" if key == "kappa_prime" else "")
                         + (f", C = ‖δ^(ℓ2)‖ {got(w, 'eq11_c_median')}, sign agreement {got(w, 'sign_agreement_eq11')}"
                            if key == "kappa_prime_eq11" else "") for m, w in sel)
        null = "φ̂ = φ_ori (no adversarial effect)" if key == "kappa_prime_eq10" else "φ̂ = 0"
        l2 = ("; Eq. 11: φ* at an ℓ2 PGD attack (2.5ε/m steps) with ε = that δ*'s ‖·‖₂ per digit, C = its measured "
              "norm, e^A → 1 + A with Theorem 2's ‖δ̂‖ as first order") if key == "kappa_prime_eq11" else ""
        out.append(claim(
            f"{name}.{cid}", f"{eq} predicts φ* of a real attack at A ≈ {A_VERDICT:g} ({gating} gating)",
            paper="not in the paper (the paper measures φ* at δ̂ under A2)",
            protocol=f"raw attack δ*, m = {results.get('sweep_steps')}, {gating} gating, g_W^(adv) at x + δ*; "
                     f"φ̂ from clean-input g_z, g̃_x, q, φ_ori and the attack's H̄_z; β = A_target / median "
                     f"H_z‖g̃_x‖² per network, the row with median A nearest {A_VERDICT:g}{l2}; {setting}",
            measured=f"κ′ per network: {desc}",
            baselines=f"first order (e^A → 1 + A) and null ({null}), computed the same way (in 'measured')",
            rule=f"holds: on every network κ′ ≤ baseline / {FACTOR:g} for both baselines at the row with median A "
                 f"nearest {A_VERDICT:g} (a network with no row within ×3 of it fails); holds partly: on some; "
                 "else does not hold",
            verdict=count_verdict([beats_baselines(w, key) for _, w in sel])))
    return out


def plot(results: dict, out: Path) -> None:
    """``table2.md`` and ``table2_real_attack.png`` (κ′ against A)."""
    write_text_atomic(Path(out) / "table2.md", markdown(results))
    _table2_output.plot_real_attack(results, Path(out) / "table2_real_attack.png")


def markdown(res: dict) -> str:
    """The Markdown of ``table2.md`` (from the results alone)."""
    fmt, rows = C.fmt_sci, res["rows"]
    b, m, n = res["beta"], res["steps"], res["n_samples"]
    head = ["network", "first layer", "test acc.", "κ′ (Eq. 9)", "paper κ′", "κ′ first-order (e^A→1+A)",
            "κ′ Eq. 10", "κ′ Eq. 11 (C = norm_c‖δ̂‖)", "κ′ free gating", "κ′ at δ*", "E[A]", "φ*<0"]
    body = [[C.TABLE_LABELS.get(r["model"], r["model"]), r["first_layer_kind"], f"{r['test_accuracy']:.3f}",
             fmt(r["kappa_prime"]), fmt(r["paper_kappa_prime"]), fmt(r["kappa_prime_first_order"]),
             fmt(r["kappa_prime_eq10"]), fmt(r["kappa_prime_eq11"]), fmt(r["kappa_prime_free"]),
             fmt(r["kappa_prime_attack"]), fmt(r["mean_A"]), f"{r['frac_phi_negative']:.2f}"] for r in rows]
    betas = [g["beta"] for g in rows[0]["kappa_prime_vs_beta"]] if rows else []
    grid = C.md_table(["network"] + [f"β={g:g}" for g in betas],
                      [[r["model"]] + [f"{fmt(g['kappa_prime'])} / {fmt(g['kappa_prime_first_order'])}"
                                       for g in r["kappa_prime_vs_beta"]] for r in rows])
    real = C.md_table(
        ["network", "gating", "β", "median A", "flips", "κ′ Eq. 9", "first order", "null (φ̂=0)", "sign agr.",
         "κ′ Eq. 10", "first order", "null (φ̂=φ_ori)", "κ′ Eq. 11 (ℓ2, C)", "first order", "null", "sign agr."],
        [[r["model"], a["gating"], fmt(a["beta"]), fmt(a["A_median"]), fmt(a["flip_fraction"]), fmt(a["kappa_prime"]),
          fmt(a["kappa_prime_first_order"]), fmt(a["kappa_prime_null"]), f"{a['sign_agreement']:.2f}",
          fmt(a["kappa_prime_eq10"]), fmt(a["kappa_prime_eq10_first_order"]), fmt(a["kappa_prime_eq10_null"]),
          f"{fmt(a.get('kappa_prime_eq11'))} ({fmt(a.get('eq11_c_median'))})", fmt(a.get("kappa_prime_eq11_first_order")),
          fmt(a.get("kappa_prime_eq11_null")), fmt(a.get("sign_agreement_eq11"))]
         for r in rows for a in (r.get("protocols") or {}).get("real_attack", [])])
    v = res["done"]
    adv = rows[0]["adv"] if rows else None
    return f"""# Table 2 — κ′ of Theorem 3 (scale `{res['scale']}`)

Generated by `python -m jaxdyn table2 --scale {res['scale']}` ({res['dtype']}, seed {res['seed']}).
Binary (sigmoid) networks on MNIST digits {BINARY[0]} (+1) vs {BINARY[1]} (−1), trained
{'with ' + adv + ' adversarial training' if adv else 'without adversarial training (see docs/tables.md)'};
H̄_z from a {m}-step raw attack under A2, δ̂ from Theorem 2, φ* = g̃_xᵀΔg̃_x from real first-layer
weight gradients under A2 (jvp form for conv first layers), φ̂ from Eq. 9,
κ′ = E|φ*−φ̂|/E|φ*| over {n} fixed test digits; **β = {b:g}**, η = {res['eta']:g} (κ′ does not
depend on η). Eq. 11 uses C = {res['norm_c']:g}‖δ̂‖. "κ′ at δ*": φ* measured at the real attack's
perturbation instead of δ̂. Paper values: Cheng et al. 2024, Table 2. Where E[A] ≲ 1e-5, κ′ of
order 1e-11 is the float64 resolution of Δg_W = g_W(x+δ̂) − g_W(x), two gradients that agree to
O(A): the κ′(β) grid then stops falling with β.

{C.md_table(head, body)}

Done criterion at β = {b:g}: every κ′ ≤ {v['bound']:g}: **{v['all_below_bound']}**; every κ′ below its
first-order baseline: **{v['all_below_first_order']}**.

## Real attack (the protocol that can fail)

φ* at the real raw attack δ* (m = {res.get('sweep_steps')}, free and frozen gating, g_W^(adv) at x + δ*);
φ̂ from the clean-input g_z, g̃_x, q, φ_ori and the attack's H̄_z; β = A_target / median H_z‖g̃_x‖²
per network; flips: fraction of the correctly classified digits the attack flips; Eq. 11: φ* at an ℓ2
PGD attack whose budget is the raw δ*'s ℓ2 norm, C = its measured norm (median in brackets). Verdict row:
median A nearest {A_VERDICT:g}; κ′ must be below both baselines by ×{FACTOR:g}.

{real}

## Paper protocol: κ′(β) — Eq. 9 / first-order baseline

{grid}
"""
