"""Table 2 (the ``jaxdyn.experiments.table2`` package; its measurement ``jaxdyn.analyses.real_attack``):
the protocol, config validation, the claims' verdict rules, and a smoke test of the command at the
tiny scale."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import real_attack
from jaxdyn.core import influence
from jaxdyn.experiments import runner, table2
from tests.helpers import assert_protocol
from tests.test_influence import _binary_net, _image

pytestmark = pytest.mark.timeout(600)


def test_protocol():
    assert_protocol(table2, "table2", "Table 2 — κ′ (Theorem 3)")
    assert table2.config("tiny").adv == "none" and table2.config("quick").adv == "pgd-linf"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown Table 2 model"):
        table2.config("quick", models=("alexnet",))
    with pytest.raises(ValueError, match="adv"):
        table2.config("quick", adv="fgsm")
    with pytest.raises(ValueError, match="eta"):
        table2.config("quick", eta=0.0)


def _results(rows):
    return dict(rows=rows, beta=1e-3, steps=10, sweep_steps=5, n_samples=4, dtype="float64", done=dict(bound=1e-3))


def _real(A, kp, fo, nu, gating="free", eq11=None):
    """A real-attack row: one record per equation (κ′, first order, null), ``eq11`` updating Eq. 11's."""
    rec = dict(kappa_prime=kp, first_order=fo, null=nu)
    return dict(beta=1.0, A_median=A, gating=gating, flip_fraction=0.5, eq9=dict(rec, sign_agreement=0.9),
                eq10=dict(rec), eq11=dict(rec, sign_agreement=0.9, c_median=1.0, **(eq11 or {})))


def _row(model, kp_paper, real):
    return dict(model=model, test_accuracy=0.99, kappa_prime=kp_paper, kappa_prime_first_order=1e-3,
                kappa_prime_eq10_null=1e-4, one_scalar_rel_err=1e-14, protocols=dict(paper={}, real_attack=real))


IDS = ["table2.paper_protocol", "table2.real_attack_free", "table2.real_attack_frozen", "table2.real_attack_eq10_free",
       "table2.real_attack_eq11_free"]


def test_claims_verdicts():
    good = [_real(1e-3, 1e-6, 1e-3, 1.0, g) for g in ("free", "frozen")] + \
           [_real(0.3, 1e-2, 0.1, 1.0, g) for g in ("free", "frozen")]
    claims = table2.claims(_results([_row("mlp3", 1e-6, good)]))
    assert [c["id"] for c in claims] == IDS
    assert [c["verdict"] for c in claims] == ["holds"] * 5
    assert "A 0.3" in claims[1]["measured"]  # the verdict row is the one at A ≈ 0.3, not the A = 1e-3 row
    assert table2.verdict_row(good, "frozen")["A_median"] == 0.3


def test_verdict_can_fail_paper_protocol():
    bad = [_row(m, 0.5, []) for m in ("mlp3", "cnn3")]
    assert table2.claims(_results(bad))[0]["verdict"] == "does not hold"


def test_verdict_can_fail_real_attack():
    # κ′ small at A = 1e-3 but not below the baselines by ×2 at A ≈ 0.3
    rows = [_real(1e-3, 1e-6, 1e-3, 1.0, g) for g in ("free", "frozen")] + \
           [_real(0.3, 0.06, 0.1, 1.0, g) for g in ("free", "frozen")]
    assert [c["verdict"] for c in table2.claims(_results([_row("mlp3", 1e-6, rows)]))[1:]] == ["does not hold"] * 4
    # worse than the null predictor
    rows = [_real(0.3, 0.6, 2.0, 1.0, g) for g in ("free", "frozen")]
    assert [c["verdict"] for c in table2.claims(_results([_row("mlp3", 1e-6, rows)]))[1:]] == ["does not hold"] * 4
    # the sweep never reaches A ≈ 0.3: no verdict row, fails
    rows = [_real(1e-2, 1e-6, 1e-3, 1.0, g) for g in ("free", "frozen")]
    assert [c["verdict"] for c in table2.claims(_results([_row("mlp3", 1e-6, rows)]))[1:]] == ["does not hold"] * 4
    # one network of two fails: partly
    good = [_real(0.3, 1e-2, 0.1, 1.0, g) for g in ("free", "frozen")]
    bad = [_real(0.3, 0.6, 2.0, 1.0, g) for g in ("free", "frozen")]
    res = _results([_row("mlp3", 1e-6, good), _row("cnn3", 1e-6, bad)])
    assert [c["verdict"] for c in table2.claims(res)[1:]] == ["holds partly"] * 4


def test_verdict_can_fail_eq11():
    """Eq. 11 against the real ℓ2 attack: κ′ of Eq. 11 no better than its first-order baseline (or
    worse than the null φ̂ = 0) at A ≈ 0.3 is "does not hold", whatever Eqs. 9-10 do."""
    for eq11 in (dict(kappa_prime=0.08, first_order=0.1), dict(kappa_prime=0.9, first_order=5.0, null=1.0)):
        rows = [_real(0.3, 1e-2, 0.1, 1.0, g, eq11=eq11) for g in ("free", "frozen")]
        c = table2.claims(_results([_row("mlp3", 1e-6, rows)]))
        assert [x["verdict"] for x in c[1:]] == ["holds"] * 3 + ["does not hold"]
        assert "C = ‖δ^(ℓ2)‖ 1" in c[4]["measured"] and "ℓ2 PGD" in c[4]["protocol"]


def test_phi_star_is_measured_without_the_theory(monkeypatch):
    """φ* comes from real gradients only: replacing Eqs. 9-10 by garbage changes κ′, never φ*."""
    model, variables = _binary_net("mlp3", 1 / 32, seed=3)
    path = influence.first_layer_path(model, variables)
    x = jnp.stack([_image(s) for s in range(3)])
    z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
    y = jnp.sign(jax.vmap(lambda t: z_of(W, t)[0])(x))

    def measured():
        fn = real_attack.make_sweep_fn(model, path, 5, eta=0.1)
        return jax.tree.map(np.asarray, fn(variables, x, y, jnp.asarray(1.0)))

    before = measured()
    kp = {g: real_attack.real_attack_kappa(before[g], eta=0.1) for g in before}
    garbage = lambda **kw: 1e3 * jnp.ones_like(kw["A"])  # noqa: E731
    for mod in (influence, real_attack):  # where the theory is defined, and where κ′ applies it
        monkeypatch.setattr(mod, "theorem3", garbage)
        monkeypatch.setattr(mod, "theorem4", garbage)
    after = measured()
    for g in before:
        for k in ("phi", "phi_adv", "phi_ori", "A", "hbar_z"):
            np.testing.assert_array_equal(before[g][k], after[g][k])
        kp2 = real_attack.real_attack_kappa(after[g], eta=0.1)
        assert kp2["eq9"]["kappa_prime"] != kp[g]["eq9"]["kappa_prime"]
        assert kp2["eq10"]["kappa_prime"] != kp[g]["eq10"]["kappa_prime"]
        assert kp2["eq9"]["null"] == kp[g]["eq9"]["null"]


def _finite(v):
    return v is None or (isinstance(v, float) and np.isfinite(v)) or isinstance(v, (int, str, bool, list, dict))


def test_table2_command_tiny(tiny_env):
    out = tiny_env / "t2"
    rec = runner.execute(table2, table2.config("tiny", models=("cnn3",)), out, progress=False)
    res = json.loads((out / "table2.json").read_text())
    (row,) = res["rows"]
    for k in ("model", "beta", "steps", "n_samples", "dtype", "test_accuracy", "kappa_prime",
              "kappa_prime_first_order", "kappa_prime_eq10", "kappa_prime_eq11", "kappa_prime_free",
              "kappa_prime_attack", "kappa_prime_vs_beta", "protocols"):
        assert k in row and _finite(row[k]), k
    assert row["first_layer_kind"] == "conv" and row["first_layer"] == "Conv_0"
    assert row["logit_space_agreement"] < 1e-10
    assert 0 < row["kappa_prime"] < 1
    assert "κ′ (Eq. 9)" in (out / "table2.md").read_text()
    assert (out / "table2_real_attack.png").stat().st_size > 0  # κ′ against A, frozen and free
    assert json.loads((out / "config.json").read_text())["models"] == ["cnn3"]
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c["id"] for c in rec["claims"]] == IDS
    assert row["protocols"]["paper"]["one_scalar_rel_err"] < 1e-10
    real = row["protocols"]["real_attack"]
    assert {a["gating"] for a in real} == {"free", "frozen"} and len(real) == 2 * len(res["A_targets"])
    for a in real:
        for k in ("beta", "A_median", "flip_fraction"):
            assert _finite(a[k]), k
        for eq in real_attack.EQUATIONS:
            for k in real_attack.RECORD_FIELDS + ("sign_agreement",) * (eq != "eq10"):
                assert _finite(a[eq][k]), (eq, k)
        assert a["eq9"]["null"] == 1.0 and a["eq11"]["null"] == 1.0
        assert 0 < a["eq11"]["c_median"] <= a["delta_l2"] * (1 + 1e-9) or a["gating"] == "free"


@pytest.mark.slow
def test_batch_fn_one_compile_for_headline_and_grid():
    """The headline (network attack) and the β grid (logit-space attack) share one compiled function;
    ``network_attack`` picks the attack (A2: both give the same δ* to float64 rounding)."""
    model, variables = _binary_net("mlp3", 1 / 32, seed=3)
    path = influence.first_layer_path(model, variables)
    x = jnp.stack([_image(s) for s in range(2)])
    z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
    y = jnp.sign(jax.vmap(lambda t: z_of(W, t)[0])(x))
    fn = real_attack.make_batch_fn(model, path, 5, eta=0.1, norm_c=0.5)
    net, logit = (fn(variables, x, y, jnp.asarray(0.1), jnp.asarray(na)) for na in (True, False))
    np.testing.assert_array_equal(logit["delta_star"], logit["delta_logit_space"])
    np.testing.assert_allclose(net["delta_star"], net["delta_logit_space"], rtol=1e-9, atol=1e-14)
    assert np.any(net["delta_star"] != logit["delta_star"])  # the network attack did run
    assert fn._cache_size() == 1
