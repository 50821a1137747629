"""Table 2's figure: κ′ of a real attack against the median A, one panel per gating (private)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdyn.experiments import _common as C

#: (field, line style, label) of the curves of each network
CURVES = (("kappa_prime", "-", "κ′ (Eq. 9)"), ("kappa_prime_first_order", "--", "first order (e^A → 1 + A)"),
          ("kappa_prime_null", ":", "null (φ̂ = 0)"))


def plot_real_attack(results: dict, path: Path) -> None:
    """κ′ of Eq. 9 (solid), its first-order baseline (dashed) and the null predictor (dotted)
    against the median A of the real-attack sweep, frozen (A2) and free gating apart, one colour
    per network; the shaded band is A ≈ 0.3, where the verdict is read."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, r in enumerate(results["rows"]):
        sweep = (r.get("protocols") or {}).get("real_attack") or []
        for j, gating in enumerate(("frozen", "free")):
            pts = sorted((q["A_median"], q) for q in sweep if q.get("gating") == gating and q.get("A_median"))
            if not pts:
                continue
            a = [p[0] for p in pts]
            for key, ls, _ in CURVES:
                y = [p[1].get(key) for p in pts]
                if all(v is not None for v in y):
                    axes[j].plot(a, y, ls, color=colors[i % 10], marker="." if ls == "-" else None,
                                 label=r["model"] if ls == "-" else None)
    for j, g in enumerate(("frozen gating (A2)", "free gating (real network)")):
        axes[j].axvspan(0.2, 0.45, color="0.9", zorder=0)
        axes[j].set(xscale="log", yscale="log", xlabel="median A = βH̄_z‖g̃_x‖²")
        axes[j].set_title(f"{g}: κ′ (solid), first order (dashed), null (dotted)", fontsize=9)
    axes[0].set_ylabel("κ′")
    axes[0].legend(fontsize=7, ncol=2)
    C.save_figure(fig, path, title=f"Table 2 with a real raw attack: {results['n_samples']} digits, "
                                   f"{results['dtype']}, attack m = {results['config'].get('sweep_steps', '?')}")
