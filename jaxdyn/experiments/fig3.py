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
  (:func:`jaxdyn.influence.measure`, which reduces to ``-η g̃_xᵀ Δg_W g̃_h`` for a dense layer).

The figure plots ``|g̃_xᵀΔg̃_x|`` and ``||Δg_W||`` against the three quantities (log-log) and
reports Spearman's ρ for each pair; the verdict asks for ρ > 0 with p < 0.05. ``cos(Δg_W|_x,
mean_x Δg_W)`` is computed here too, for Figure 4 (:mod:`jaxdyn.experiments.fig4`).

β: the paper does not give it (Appendix L is unpublished). ``beta="auto"`` sets
``β = A_0 / median_x(H_z(x) ||g̃_x||²)`` so that the median clean-input ``A = β H_z ||g̃_x||²`` is
``A_0`` (1 by default): the regime where ``e^A`` departs from ``1 + A``. η only scales ``φ``
(it does not change any rank correlation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attacks import attack
from jaxdyn.cli import write_json_atomic
from jaxdyn.experiments import figures as F
from jaxdyn.influence import first_layer_fn, first_layer_path, measure
from jaxdyn.losses import grad_z, hessian_z, loss
from jaxdyn.models import logits_fn

HELP = "Figure 3 (C.5): per-sample influence of adversarial training vs H̄_z, H̄_z||g̃_x||², Â (Spearman ρ)."
RESULT_NAME = "fig3_summary.json"

#: adversarial training of the binary networks (ℓ∞ PGD, ε ramped up over the first half of the steps
#: and a cosine learning-rate decay, as jaxdyn.training recommends against collapse); ``lr`` 5e-4:
#: at 1e-3 (without the ramp) the quick AlexNet collapsed to a constant classifier
_ADV_QUICK = dict(binary=(3, 5), adv="pgd-linf", eps=0.1, adv_steps=3, eps_warmup=0.5, batch_size=64, lr=5e-4,
                  schedule="cosine", n_train=5000, epochs=1, n_eval_robust=0)
_ADV_FULL = dict(binary=(3, 5), adv="pgd-linf", eps=0.3, adv_steps=10, eps_warmup=0.3, batch_size=128, lr=1e-3,
                 schedule="cosine", n_train=None, epochs=10, n_eval_robust=1000)

SCALES = {
    "tiny": dict(models=("cnn3",), width=1 / 16, n_samples=12, steps=5, A0=1.0, A0_extra=(), eta=1e-3, chunk=None,
                 train=dict(_ADV_QUICK, n_train=256, adv_steps=1, eps=0.05), widths={}),
    "quick": dict(models=("alexnet", "vgg11", "resnet50"), width=0.125, n_samples=60, steps=20, A0=1.0,
                  A0_extra=(0.1,), eta=1e-3, chunk=None, train=_ADV_QUICK, widths={"resnet50": 0.0625}),
    "full": dict(models=("alexnet", "vgg11", "resnet50"), width=1.0, n_samples=1000, steps=100, A0=1.0,
                 A0_extra=(0.1,), eta=1e-3, chunk=50, train=_ADV_FULL, widths={}),
}

X_KEYS = ("hbar_z", "hbar_z_gx2", "A_hat")
Y_KEYS = ("abs_phi", "dgw_norm")
LABELS = {"hbar_z": "H̄_z", "hbar_z_gx2": "H̄_z ||g̃_x||²", "A_hat": "Â", "abs_phi": "|g̃_xᵀΔg̃_x|",
          "dgw_norm": "||Δg_W||"}

CLAIM = ("C.5: adversarial training boosts the influence of samples with large H̄_z, H̄_z||g̃_x||² and Â: "
         "they have larger |g̃_xᵀΔg̃_x| and ||Δg_W|| (Fig. 3)")


def clean_A(model, variables, x, y):
    """``H_z(x) ||g̃_x||²`` at the clean inputs (the ``A`` of Theorem 3 per unit β): ``[N]``."""

    @jax.jit
    def run(variables, x, y):
        f = logits_fn(model, variables)

        def one(xi, yi):
            gt = jax.grad(lambda t: f(t)[0])(xi)
            return hessian_z(f(xi), yi)[0, 0] * jnp.vdot(gt, gt)

        return jax.vmap(one)(x, y)

    return np.asarray(run(variables, x, y))


def influence_quantities(model, variables, x, y, *, beta, steps: int, eta, gating: str = "free") -> dict:
    """Fig. 3/4's per-sample quantities on a binary network (see :func:`influence_fn`)."""
    return influence_fn(model, variables, steps=steps, gating=gating)(variables, x, y, beta=beta, eta=eta)


def influence_fn(model, variables, *, steps: int, gating: str = "free"):
    """A function ``(variables, x, y, *, beta, eta) -> dict`` computing Fig. 3/4's per-sample
    quantities on a binary network, compiled once (``beta`` and ``eta`` are traced).

    Args:
      model, variables: a binary (``num_classes=1``) network (``variables`` locate its first layer;
        the returned function takes the variables as an argument).
      steps: the raw attack's number of steps ``m`` (static).
      gating: ``"free"`` (the real network, default) or ``"frozen"`` (A2) for the attack and for
        the gradients at ``x + δ``.

    The returned function takes ``x: [N, 28, 28, 1]``, ``y: [N]`` labels in {-1, +1}, ``beta`` (the
    raw attack's total strength, ``α = β/steps``), ``eta`` (``η`` in ``Δg̃_x = -η Δg_W g̃_h``) and
    ``chunk`` (samples per compiled call, :func:`figures.chunked`) and returns a dict of ``[N]``
    arrays: ``hbar_z``, ``gx2`` (``||g̃_x||²``), ``hbar_z_gx2``, ``A``
      (``β H̄_z ||g̃_x||²``), ``A_hat``, ``phi``, ``abs_phi``, ``dgw_norm``, ``cos_to_mean``
      (``cos(Δg_W|_x, mean_x Δg_W)``), ``delta_norm``, ``success`` (the attack flipped the label);
      and ``first_layer`` (the path of ``W``).
    """
    path = first_layer_path(model, variables)

    def run(variables, x, y, beta, eta):
        f = logits_fn(model, variables)
        z_of, W, _ = first_layer_fn(model, variables, path=path)

        def one(xi, yi):
            r = attack(f, xi, yi, steps=steps, beta=beta, norm="raw", gating=gating, record=True)
            tr = r.trajectory
            gz = jax.vmap(lambda z: grad_z(z, yi)[0])(tr["logits"])  # [m+1]
            gt2 = (tr["grad_norm"] / jnp.abs(gz)) ** 2  # ||g̃_{x+δ^(t)}||², t = 0..m
            hbar = r.hbar_z[0, 0]
            alpha = beta / steps
            a_hat = alpha * hbar * jnp.sum(gt2[1:])
            m = measure(z_of, W, xi, yi, r.delta, eta=eta, gating=gating)
            if gating == "frozen":
                def z_at(Wk, x2):
                    z, dz = jax.jvp(lambda t: z_of(Wk, t), (xi,), (x2 - xi,))
                    return z + dz
            else:
                z_at = z_of
            gw = jax.grad(lambda Wk, x2: loss(z_at(Wk, x2), yi))
            dgw = gw(W, xi + r.delta) - gw(W, xi)
            return dict(hbar_z=hbar, gx2=m.gx_norm2, hbar_z_gx2=hbar * m.gx_norm2, A=beta * hbar * m.gx_norm2,
                        A_hat=a_hat, phi=m.phi, abs_phi=jnp.abs(m.phi), dgw_norm=m.dgw_norm,
                        dgw=jnp.ravel(dgw), delta_norm=jnp.linalg.norm(r.delta),
                        success=r.success_step >= 0)

        return jax.vmap(one)(x, y)

    jrun = jax.jit(run)

    def call(variables, x, y, *, beta, eta, chunk=None):
        dt = jax.tree.leaves(variables)[0].dtype
        b, e = jnp.asarray(beta, dt), jnp.asarray(eta, dt)
        res = F.chunked(lambda xc, yc: jrun(variables, jnp.asarray(xc, dt), jnp.asarray(yc, dt), b, e),
                        np.asarray(x), np.asarray(y), chunk=chunk)
        dgw = np.asarray(res.pop("dgw"))
        mean = dgw.mean(axis=0)
        cos = dgw @ mean / (np.linalg.norm(dgw, axis=1) * np.linalg.norm(mean) + 1e-300)
        out = {k: np.asarray(v) for k, v in res.items()}
        out["cos_to_mean"] = cos
        out["first_layer"] = "/".join(path)
        return out

    return call


def correlations(q: dict, mask=None) -> dict:
    """Spearman ρ (and p) of every (x, y) pair of Fig. 3: ``{"x|y": {"rho", "p", "n"}}``, over the
    samples where ``mask`` is true (all by default)."""
    m = np.ones(len(np.asarray(q[X_KEYS[0]])), bool) if mask is None else np.asarray(mask, bool)
    return {f"{a}|{b}": F.spearman(np.asarray(q[a])[m], np.asarray(q[b])[m]) for a in X_KEYS for b in Y_KEYS}


def verdict(per_model: dict) -> dict:
    """``holds`` if every model's every pair has ρ > 0 with p < 0.05 (:func:`figures.rank_verdict`)."""
    rhos = [r for m in per_model.values() for r in m["spearman"].values()]
    by_model = {m: F.rank_verdict(list(d["spearman"].values())) for m, d in per_model.items()}
    n_sig = sum(1 for r in rhos if np.isfinite(r["rho"]) and r["rho"] > 0 and r["p"] < 0.05)
    return {"influence": F.rank_verdict(rhos), "by_model": by_model, "pairs_significant_positive": n_sig,
            "pairs": len(rhos)}


def plot(json_path: Path, png_path: Path) -> Path:
    """Fig. 3 from ``fig3.json``: per model a 2 x 3 grid of log-log scatter plots with ρ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    data = json.loads(Path(json_path).read_text())
    models = list(data["models"])
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
    fig.suptitle(f"Fig. 3 ({data['scale']} scale, {data['dtype']}): per-sample effect of adversarial training "
                 "(ρ over all digits)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def measure_models(*, scale: str, seed: int, progress: bool) -> dict:
    """Train/load the networks and compute every sample's quantities (shared with Fig. 4)."""
    F.enable_x64()
    from jaxdyn.data import binary_task, load_mnist, subset

    cfg = SCALES[scale]
    x_tr, y_tr = load_mnist("train")
    x_b, y_b = binary_task(x_tr, y_tr, cfg["train"]["binary"])
    x_pool, y_pool = subset(x_b, y_b, max(3 * cfg["n_samples"], 100), seed=seed + 1)
    data = dict(scale=scale, seed=seed, dtype="float64", config=cfg, models={})
    for name in F.progress_bar(cfg["models"], enabled=progress, desc="fig3 models"):
        width = cfg["widths"].get(name, cfg["width"])
        t0 = time.perf_counter()
        model, variables, info = F.load_model(name, width=width, seed=seed, progress=progress, **cfg["train"])
        t1 = time.perf_counter()
        xs, ys, acc = F.correct_subset(model, variables, x_pool, y_pool, cfg["n_samples"])
        a_clean = clean_A(model, variables, jnp.asarray(xs, jnp.float64), jnp.asarray(ys, jnp.float64))
        fn = influence_fn(model, variables, steps=cfg["steps"])
        beta = float(cfg["A0"] / np.median(a_clean))
        q = fn(variables, xs, ys, beta=beta, eta=cfg["eta"], chunk=cfg["chunk"])
        layer = q.pop("first_layer")
        sens = {}
        for a0 in cfg["A0_extra"]:  # the same measurement at other strengths (no verdict rests on it)
            b = float(a0 / np.median(a_clean))
            qa = fn(variables, xs, ys, beta=b, eta=cfg["eta"], chunk=cfg["chunk"])
            sens[str(a0)] = dict(beta=b, attack_success_rate=float(np.mean(qa["success"])), spearman=correlations(qa),
                                 dominance_spearman=F.spearman(qa["A_hat"], qa["cos_to_mean"]))
        data["models"][name] = dict(
            width=width, test_accuracy=info.get("test_accuracy"), robust_accuracy=info.get("robust_accuracy"),
            train=F.train_summary(info), beta=beta, alpha=beta / cfg["steps"], steps=cfg["steps"], eta=cfg["eta"],
            n_samples=int(len(xs)), first_layer=layer, attack_success_rate=float(np.mean(q["success"])),
            samples={k: np.asarray(v).tolist() for k, v in q.items()},
            spearman=correlations(q), A0=cfg["A0"], sensitivity=sens,
            # Lemma 1 (H_z ≥ g_z²) and Theorem 3 assume the attack has not completed (y z > 0):
            # the same correlations on the digits that the attack did not flip (no verdict rests on it)
            spearman_not_flipped=correlations(q, ~np.asarray(q["success"], bool)),
            time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1},
        )
    return data


def run_experiment(*, scale: str = "quick", out: Path, seed: int = 0, progress: bool = True) -> dict:
    """Fig. 3 at ``scale``: writes ``fig3.json`` (per-sample numbers, also used by Fig. 4) and
    ``fig3_influence.png`` into ``out``."""
    F.check_scale(scale)
    out = Path(out)
    data = measure_models(scale=scale, seed=seed, progress=progress)
    data.update(figure="fig3", claim=CLAIM)
    data["verdict"] = verdict(data["models"])
    json_path = out / "fig3.json"
    write_json_atomic(json_path, data)
    png = plot(json_path, out / "fig3_influence.png")
    return {"figure": "fig3", "json": str(json_path), "png": [str(png)], "claim": CLAIM, "scale": scale,
            "dtype": "float64", "verdict": data["verdict"], "config": F.jsonable_config(data["config"]),
            "models": {m: {k: v for k, v in d.items() if k != "samples"} for m, d in data["models"].items()}}


def add_arguments(parser) -> None:
    F.add_scale_arguments(parser)


def run(args) -> dict:
    return run_experiment(scale=args.scale, out=args.out, seed=args.seed, progress=not args.no_progress)
