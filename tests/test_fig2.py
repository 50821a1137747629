"""Figure 2: the Theorem-2 curves and the growth curves on small random-init networks (float64),
the protocol and the verdict rules (no training here: ``test_reproduce.py`` runs it end to end)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import growth, growth_runs
from jaxdyn.core import theory
from jaxdyn.attacks.multistep import NORMS, attack
from jaxdyn.attacks.traced import free_attack_traced_norm
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
    check_protocol(fig2, "fig2")
    with pytest.raises(ValueError, match="raw_target"):
        fig2.config("tiny", raw_target=50, max_steps=20)


def _summary(r2, r2_linear, ratio, late_over_early=1.0):
    s = dict(n=4, n_success=4, median_success_step=8.0, median_growth_grad=10.0, grad_rate=0.1, grad_rate_theory=0.1,
             grad_rate_theory_clean=0.05, grad_rate_ratio_t1=ratio, delta_rate_ratio=ratio, grad_frac_rate_between=0.5,
             grad_rate_ratio=ratio, grad_rate_late_over_early_theory=1.1)
    for k in ("delta", "grad"):
        s.update({f"{k}_r2": r2, f"{k}_r2_linear": r2_linear, f"{k}_frac_exp_better": float(r2 > r2_linear),
                  f"{k}_rate_late_over_early": late_over_early})
    return s


def _results(summary):
    return dict(dtype="float64", config=dict(n_samples=4, width=0.1, raw_target=8, step=0.2, max_steps=20),
                models={"cnn3": {"test_accuracy": 0.9}}, summary={"cnn3": summary})


def _verdicts(free, frozen):
    cs = fig2.claims(_results({"free": {"raw": free}, "frozen": {"raw": frozen}}))
    assert [c["id"] for c in cs] == ["fig2.growth", "fig2.rate_vs_theorem2"]
    return [c["verdict"] for c in cs]


GOOD = _summary(0.99, 0.8, 1.2)


def test_fig2_claims_hold():
    assert _verdicts(GOOD, GOOD) == ["holds", "holds"]


def test_verdict_can_fail_fig2_linear_growth():
    """Linear growth (the log fit worse than the linear one) and a rate 5x off Theorem 2's."""
    bad = _summary(0.7, 0.99, 5.0)
    assert _verdicts(bad, bad) == ["does not hold", "does not hold"]


def test_verdict_can_fail_fig2_every_cell_needed():
    """One failing cell of two makes both verdicts "does not hold" (no "partly" for a fit that fails)."""
    assert _verdicts(GOOD, _summary(0.7, 0.99, 5.0)) == ["does not hold", "does not hold"]
    # a cell without any successful attack, or missing, fails too
    assert _verdicts(GOOD, dict(GOOD, n_success=0))[0] == "does not hold"
    cs = fig2.claims(_results({"free": {"raw": GOOD}}))
    assert [c["verdict"] for c in cs] == ["does not hold", "does not hold"]


def test_verdict_can_fail_fig2_rate_not_constant():
    """R² 0.99 and better than linear, but the rate triples in the second half: faster than
    exponential; in every cell -> does not hold; in one of two -> holds partly; a falling rate
    (slower than exponential) -> does not hold."""
    fast = _summary(0.99, 0.8, 1.2, late_over_early=3.0)
    assert growth.classify_cell(fast) == "faster than exponential"
    assert _verdicts(fast, fast)[0] == "does not hold"
    c = fig2.claims(_results({"free": {"raw": GOOD}, "frozen": {"raw": fast}}))[0]
    assert c["verdict"] == "holds partly"
    assert "FASTER THAN EXPONENTIAL" in c["measured"] and "cnn3/frozen" in c["measured"]
    slow = _summary(0.99, 0.8, 1.2, late_over_early=0.3)
    assert growth.classify_cell(slow) == "slower than exponential"
    assert _verdicts(GOOD, slow)[0] == "does not hold"
    assert growth.classify_cell(_summary(0.99, 0.8, 1.2, late_over_early=float("nan"))) == "not exponential"


def test_verdict_can_fail_fig2_rate_vs_theorem2():
    """Measured/predicted 0.3 (outside ×2, inside ×4): partly; 0.11 in one cell: does not hold."""
    assert _verdicts(_summary(0.99, 0.8, 0.3), _summary(0.99, 0.8, 1.5))[1] == "holds partly"
    assert _verdicts(_summary(0.99, 0.8, 0.11), GOOD)[1] == "does not hold"
    assert _verdicts(GOOD, dict(GOOD, grad_rate_ratio=float("nan")))[1] == "does not hold"


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
