"""Figure 2: the Theorem-2 curves and the growth curves on small random-init networks (float64),
the protocol and the verdict rules (no training here: ``test_reproduce.py`` runs it end to end)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import growth, growth_runs
from jaxdyn.core import theory
from jaxdyn.attacks.multistep import NORMS, attack
from jaxdyn.attacks.traced import free_attack_traced_norm
from jaxdyn import cli
from jaxdyn.experiments import fig2
from jaxdyn.core.gating import input_jacobian
from jaxdyn.core.losses import grad_z
from jaxdyn.core.models import logits_fn

from tests.helpers import check_protocol, digits, zoo_net

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow  # default-suite time: the norm curves are tested against the C x C path in test_theory
def test_fig2_theory_curves_match_the_cxc_path():
    """The eigenpair sums of fig2 for ``||g(β)||`` and ``||δ̂(β)||`` equal ``||Jᵀ e^{βH̄_zG} g_z||``
    and ``||δ̂||`` of :func:`jaxdyn.core.theory.theorem2` (one matrix exponential, no eigenpairs)."""
    model, v = zoo_net("mlp3", num_classes=10, width=1 / 32)
    x = digits(2)
    f = logits_fn(model, v)
    y = jnp.argmax(jax.vmap(f)(x), axis=1)
    steps, alpha = 6, 0.3
    res = jax.vmap(lambda xi, yi: attack(f, xi, yi, steps=steps, alpha=alpha, norm="raw", record=True))(x, y)
    tr = res.trajectory
    succ = jnp.full((2,), steps, jnp.int32)  # average over the whole trajectory
    th = growth_runs.growth_theory_fn(model, steps)(v, x, y, jnp.full((2,), alpha), tr["H_z"], tr["step_norm"], succ)
    for i in range(2):
        J = input_jacobian(f, x[i])
        gz = grad_z(f(x[i]), y[i])
        w = tr["step_norm"][i, 1:steps]
        hbar = jnp.einsum("t,tij->ij", w, tr["H_z"][i, 1:steps]) / jnp.sum(w)
        for t in (1, 3, 6):
            pred = theory.theorem2(J, gz, hbar, alpha * t)
            np.testing.assert_allclose(float(th["grad_norm"][i, t]), float(jnp.linalg.norm(pred.grad)), rtol=1e-9)
            np.testing.assert_allclose(float(th["delta_norm"][i, t]), float(jnp.linalg.norm(pred.delta)), rtol=1e-9)
        lam, _ = theory.structured_eigenpairs(J, hbar)
        np.testing.assert_allclose(float(th["lambda1"][i]), float(lam[0]), rtol=1e-9)


def test_fig2_growth_curves_smoke_and_frozen_agreement():
    """All attacks run; under frozen gating the raw attack's recorded norms (logit-space path)
    are those of the network attack with gates frozen; the first step has the documented length."""
    model, v = zoo_net("cnn3", num_classes=10, width=1 / 16)
    x = digits(3)
    f = logits_fn(model, v)
    y = np.asarray(jnp.argmax(jax.vmap(f)(x), axis=1))
    res = growth_runs.growth_curves(model, v, x, y, step=0.5, max_steps=8, progress=False)
    runs = res["runs"]
    assert set(runs) == {"free", "frozen"} and set(runs["free"]) == {"raw", "l2", "linf"}
    for g in runs:
        for nm, r in runs[g].items():
            d = np.asarray(r["delta_norm"])
            assert d.shape == (3, 9) and np.all(d[:, 0] == 0)
            # first step: ℓ2 length `step` for l2 and linf, median length `step` for raw
            first = d[:, 1]
            if nm == "raw":
                np.testing.assert_allclose(np.median(first), 0.5, rtol=1e-9)
            elif nm == "l2":
                np.testing.assert_allclose(first, 0.5, rtol=1e-9)
            else:  # sign(g) is 0 where a pixel's gradient is exactly 0: at most `step`
                assert np.all(first <= 0.5 + 1e-12) and np.all(first > 0.45)
    ref = jax.vmap(lambda xi, yi: attack(f, xi, yi, steps=8, alpha=res["alpha"]["raw"], norm="raw",
                                              gating="frozen", record=True))(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(runs["frozen"]["raw"]["grad_norm"]), np.asarray(ref.trajectory["grad_norm"]),
                               rtol=1e-8)
    s = growth.summarize_run(runs["frozen"]["raw"])
    assert s["n"] == 3 and "grad_rate_ratio" in s


def test_fig2_protocol():
    assert len(fig2.config("quick").seeds) >= 2 and len(fig2.config("full").seeds) == 5
    check_protocol(fig2, "fig2")
    with pytest.raises(ValueError, match="raw_target"):
        fig2.config("tiny", raw_target=50, max_steps=20)


def _run(rng, n, dr2, late_early, ratio, spread, never=0):
    """A synthetic raw-attack run of ``n`` digits whose per-digit ΔR² (both norms), late/early rate
    ratio and measured/Theorem-2 rate ratio scatter around the given centres (``never`` digits unflipped)."""
    e = rng.normal(0, spread, (4, n))
    r2l = np.clip(0.5 + 0.1 * e[0], 0, 1)
    rate = np.full(n, 0.1)
    fit = dict(r2=r2l + dr2 + spread * e[1], r2_linear=r2l, rate=rate, rate_early=rate,
               rate_late=rate * late_early * np.exp(spread * e[2]))
    succ = np.where(np.arange(n) < n - never, 40, -1)
    th = dict(rate_fit_grad=rate / (ratio * np.exp(spread * e[3])), rate_fit_grad_clean=rate * 2,
              rate_fit_grad_t1=rate / ratio, grad_late_over_early=np.ones(n), lambda1=np.full(n, 3.0),
              lambda1_clean=np.ones(n))
    return dict(success_step=succ, n=n, n_success=int(np.sum(succ > 0)), fits={"delta": fit, "grad": dict(fit)},
                theory=th, growth_grad=np.ones(n))


def _results(dr2=0.3, late_early=1.0, ratio=1.0, *, spread=0.02, seeds=(0, 1), models=("cnn3", "mlp3"), n=8,
             acc=0.95, never=0):
    rng = np.random.default_rng(0)
    nets = {f"{m}-seed{s}": dict(model=m, seed=s, test_accuracy=acc,
                                 runs={g: {"raw": _run(rng, n, dr2, late_early, ratio, spread, never)}
                                       for g in ("free", "frozen")})
            for m in models for s in seeds}
    return dict(dtype="float64", seeds=list(seeds), models=nets,
                config=dict(n_samples=n, width=0.1, raw_target=8, step=0.2, max_steps=20, seeds=list(seeds)))


def _verdicts(**kw):
    cs = fig2.claims(_results(**kw))
    assert [c["id"] for c in cs] == ["fig2.growth", "fig2.constant_rate", "fig2.rate_vs_theorem2"]
    for c in cs:  # claims as data: a statistic with its interval, per-seed verdicts, a cause unless "holds"
        st = c["statistic"]
        assert {"name", "value", "ci", "n_digits", "n_seeds"} <= set(st) and len(st["ci"]) == 2
        assert [r["seed"] for r in c["per_seed"]] == sorted({int(s) for s in _results(**kw)["seeds"]})
        assert (c["verdict"] == "holds") == ("cause" not in c)
    return [c["verdict"] for c in cs]


def test_fig2_claims_hold():
    """Exponential (ΔR² 0.3), constant rate, rate as predicted: all three hold, in every seed too."""
    assert _verdicts() == ["holds"] * 3
    c = fig2.claims(_results())[0]
    assert c["statistic"]["n_seeds"] == 2 and c["statistic"]["n_digits"] == 2 * 2 * 8
    assert all(r["verdict"] == "holds" for r in c["per_seed"]) and len(c["statistic"]["cells"]) == 4


def test_verdict_can_fail_fig2():
    """Linear growth (ΔR² -0.3), a rate tripling along the window, a rate 5x below Theorem 2's: all
    three do not hold, each with its measured cause."""
    assert _verdicts(dr2=-0.3, late_early=3.0, ratio=0.2) == ["does not hold"] * 3
    cs = fig2.claims(_results(late_early=3.0, ratio=5.0))
    assert "×3" in cs[1]["cause"] and "faster than predicted" in cs[2]["cause"]
    assert _verdicts(ratio=5.0)[2] == "does not hold"  # above the band too


def test_fig2_inconclusive():
    """Medians on the thresholds with the digits scattered: every interval straddles."""
    v = _verdicts(dr2=0.0, late_early=1.5, ratio=2.0, spread=0.5)
    assert v == ["inconclusive"] * 3


def test_fig2_holds_partly_and_holm():
    """One architecture exponential, the other linear: holds partly (each cell decided after Holm)."""
    a, b = _results(dr2=0.3), _results(dr2=-0.3, models=("mlp3",))
    a["models"].update(b["models"])
    c = fig2.claims(a)[0]
    assert c["verdict"] == "holds partly"
    assert {x["cell"]: x["verdict"] for x in c["statistic"]["cells"]} == {
        "cnn3/free": "holds", "cnn3/frozen": "holds", "mlp3/free": "does not hold", "mlp3/frozen": "does not hold"}


def test_fig2_not_testable():
    """No digit flipped, or every network below the accuracy floor: not testable, never "does not hold"."""
    assert _verdicts(never=8) == ["not testable"] * 3
    assert _verdicts(dr2=-0.3, acc=0.5) == ["not testable"] * 3


def test_fig2_bootstrap_test_and_holm():
    """The bootstrap test: its p-values follow the interval (one cell, 95 %), and the Holm family
    corrects: a cell whose one-sided p-value is 0.007 holds alone but not among eight."""
    hi = growth.bootstrap_test([np.full(5, 1.0), np.full(5, 1.2)], low=0.0)
    assert hi["p_claim"] < 0.001 and hi["p_against"] > 0.99 and hi["n_seeds"] == 2
    assert growth.bootstrap_test([[]], low=0.0)["n_digits"] == 0
    # a rate that turns negative on one half (+inf in |ln(late/early)|) fails the constant-rate rule
    assert growth.cell_family({"a": [np.full(6, np.inf)]}, high=0.4, seeds=[0])["verdict"] == "does not hold"
    rng = np.random.default_rng(1)
    weak = [rng.normal(0.3, 1.0, 40)]
    one = growth.bootstrap_test(weak, low=0.0)
    assert 0.05 / 16 < one["p_claim"] < 0.025 and one["ci"][0] > 0  # the fixture: significant alone, not after Holm
    assert growth.cell_family({"a": weak}, low=0.0, seeds=[0])["verdict"] == "holds"
    assert growth.cell_family({k: weak for k in "abcdefgh"}, low=0.0, seeds=[0])["verdict"] == "inconclusive"


@pytest.mark.slow  # four compiles of a 12-step attack
def test_free_attack_traced_norm_is_the_attack_for_every_norm():
    """Fig. 2's one-compile free-gating attack (norm traced) records what
    :func:`jaxdyn.attacks.multistep.attack` records for each norm, to float64 rounding, and flags a
    non-finite input as the attack does."""
    model, v = zoo_net("mlp3", num_classes=10, width=1 / 32)
    x = digits(2, seed=3)
    f = logits_fn(model, v)
    y = jnp.argmax(jax.vmap(f)(x), axis=1)
    run = jax.jit(jax.vmap(lambda xi, yi, k: free_attack_traced_norm(f, xi, yi, steps=12, alpha=0.4, norm_index=k),
                           in_axes=(0, 0, None)))
    for k, norm in enumerate(NORMS):
        succ, tr = run(x, y, jnp.int32(k))
        ref = jax.vmap(lambda xi, yi: attack(f, xi, yi, steps=12, alpha=0.4, norm=norm, record=True))(x, y)
        np.testing.assert_array_equal(succ, ref.success_step)
        for key in ("delta_norm", "grad_norm", "step_norm", "H_z"):
            np.testing.assert_allclose(tr[key], ref.trajectory[key], rtol=1e-10, atol=1e-15, err_msg=f"{norm} {key}")
    bad = x.at[0, 0, 0, 0].set(jnp.nan)
    ref = jax.jit(lambda xi, yi: attack(f, xi, yi, steps=12, alpha=0.4).success_step)(bad[0], y[0])
    assert int(run(bad, y, jnp.int32(0))[0][0]) == int(ref) < 0


@pytest.mark.slow  # trains two tiny networks (~40 s CPU)
def test_fig2_command_tiny_two_seeds(tiny_env):
    """Two seeds at the tiny scale: one network and one draw of digits per seed, every claim with its
    statistic and a per-seed row for each seed."""
    out = tiny_env / "fig2"
    assert cli.main(["fig2", "--scale", "tiny", "--seeds", "0,1", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "fig2.json").read_text())
    assert set(res["models"]) == {"cnn3-seed0", "cnn3-seed1"} and res["seeds"] == [0, 1]
    assert [res["models"][k]["seed"] for k in ("cnn3-seed0", "cnn3-seed1")] == [0, 1]
    x0, x1 = (np.asarray(res["models"][k]["runs"]["free"]["raw"]["grad_norm"])[:, 0] for k in res["models"])
    assert not np.allclose(x0, x1)  # other networks, other digits
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == ["fig2.growth", "fig2.constant_rate", "fig2.rate_vs_theorem2"]
    for c in claims:
        assert [r["seed"] for r in c["per_seed"]] == [0, 1] and c["statistic"]["n_seeds"] == 2
        assert c["verdict"] == "holds" or c["cause"]
