"""Table 2 (the ``jaxdyn.experiments.table2`` package; its measurement ``jaxdyn.analyses.real_attack``):
the protocol, config validation, the claims' verdict rules, and a smoke test of the command at the
tiny scale."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import real_attack
from jaxdyn.attacks.multistep import attack
from jaxdyn.core import influence
from jaxdyn.experiments import runner, table2
from jaxdyn.experiments.claims import ACCURACY_FLOOR
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


TARGETS = (1e-3, 0.3)


def _results(rows, targets=TARGETS):
    return dict(rows=rows, beta=1e-3, steps=10, sweep_steps=5, n_samples=4, dtype="float64", A_targets=list(targets))


def _real(a_t, ratio, gating, *, n=6, flips=0.0, A=None, rng=None):
    """A real-attack row at target ``a_t``: ``n`` digits with the per-digit ratio ``ratio`` (a number or
    a callable of the digit index) for every equation, reached A ``A`` (default the target)."""
    rng = np.random.default_rng(0) if rng is None else rng
    r = [float(ratio(i) if callable(ratio) else ratio) * (1 + 0.01 * rng.standard_normal()) for i in range(n)]
    rec = dict(kappa_prime=0.1, first_order=0.2, null=1.0, sign_agreement=1.0, ratio=r, err=[0.1 * v for v in r],
               err_first_order=[0.1] * n, c_median=1.0)
    return dict(beta=1.0, A_target=a_t, A_median=a_t, gating=gating, flip_fraction=0.5,
                digits=dict(A=[a_t if A is None else A] * n, gate_flips=[flips] * n,
                            gate_flip_fraction=[flips / 1e4] * n),
                eq9=dict(rec), eq10=dict(rec), eq11=dict(rec))


def _row(model, seed, sweep, *, kp=1e-6, acc=0.99):
    return dict(model=model, seed=seed, test_accuracy=acc, n_samples=6, kappa_prime=kp, kappa_prime_first_order=1e-3,
                one_scalar_rel_err=1e-14, mean_A=1e-3, protocols=dict(paper={}, real_attack=sweep))


def _table(ratio_small, ratio_large, *, free=None, seeds=(0, 1, 2), flips=0.0, **kw):
    """Three networks; frozen ratio ``ratio_small`` at A 1e-3 and ``ratio_large`` at 0.3; free ``free``."""
    free = (ratio_small, ratio_large) if free is None else free
    return _results([_row("mlp3", s, [_real(1e-3, ratio_small, "frozen"), _real(0.3, ratio_large, "frozen"),
                                      _real(1e-3, free[0], "free", flips=flips), _real(0.3, free[1], "free")], **kw)
                     for s in seeds])


IDS = ["table2.paper_protocol", "table2.real_attack_frozen", "table2.real_attack_free",
       "table2.real_attack_eq10_frozen", "table2.real_attack_eq11_frozen"]


def _verdicts(res):
    return [c["verdict"] for c in table2.claims(res)]


def test_regime_holds():
    claims = table2.claims(_table(0.1, 0.2))
    assert [c["id"] for c in claims] == IDS
    assert [c["verdict"] for c in claims] == ["holds"] * 5
    c = claims[1]
    assert c["statistic"]["A_star"] == 0.3 and c["statistic"]["n_seeds"] == 3 and c["statistic"]["n_digits"] == 18
    assert c["statistic"]["ci"][1] < 1 and len(c["per_seed"]) == 3 and c["per_seed"][0]["model"] == "mlp3"
    assert "up to A* = 0.3 on 3 of 3 networks" in c["measured"] and "beats first order by ×" in c["measured"]
    assert "by ×2 or more up to A = 0.3" in c["measured"]
    np.testing.assert_allclose(1 / c["statistic"]["value"], 5, rtol=0.02)  # the ratio at A*
    assert [p["verdict_x2"] for p in c["statistic"]["regime"]] == ["holds", "holds"]


def test_regime_does_not_hold():
    v = _verdicts(_table(3.0, 5.0))
    assert v[1:] == ["does not hold"] * 4
    c = table2.claims(_table(3.0, 5.0))[1]
    assert "at no A target" in c["measured"] and "at A 0.3 does not hold" in c["cause"]


def test_regime_holds_partly_and_the_factor_two_beside():
    res = _table(0.7, 3.0)
    c = table2.claims(res)[1]
    assert c["verdict"] == "holds partly" and c["statistic"]["A_star"] == 1e-3
    assert [p["verdict_x2"] for p in c["statistic"]["regime"]] == ["does not hold", "does not hold"]
    assert "up to A* = 0.001" in c["measured"] and "at A 0.3" in c["cause"] and "×2 or more" not in c["measured"]


def test_regime_inconclusive():
    # each network's digits straddle 1 (half at 0.5, half at 2): the median's interval contains 1
    c = table2.claims(_table(lambda i: (0.5, 2.0)[i % 2], lambda i: (0.5, 2.0)[i % 2]))[1]
    assert c["verdict"] == "inconclusive" and c["statistic"]["ci"][0] < 1 < c["statistic"]["ci"][1]
    assert c["cause"]


def test_regime_not_testable():
    # every network below the accuracy floor
    assert _verdicts(_table(0.1, 0.2, acc=0.5)) == ["not testable"] * 5
    # no digit reaches its target within ×2
    res = _results([_row("mlp3", s, [_real(a, 0.1, g, A=10 * a) for a in TARGETS for g in ("free", "frozen")])
                    for s in (0, 1)])
    c = table2.claims(res)
    assert [x["verdict"] for x in c[1:]] == ["not testable"] * 4
    assert c[1]["statistic"]["regime"][0]["off_target"] == 12


def test_free_gating_cause_names_gate_flips():
    c = table2.claims(_table(0.1, 0.2, free=(1.0, 1.0), flips=3.0))[2]
    assert c["verdict"] != "holds"
    assert "gate flips" in c["cause"] and "median 3 ReLU units" in c["cause"] and "A2" in c["claim"]


def test_one_network_below_the_floor_is_left_out():
    res = _table(0.1, 0.2)
    res["rows"].append(_row("cnn3", 0, [_real(a, 9.0, g) for a in TARGETS for g in ("free", "frozen")], acc=0.3))
    c = table2.claims(res)
    assert c[1]["verdict"] == "holds" and c[1]["statistic"]["n_seeds"] == 3


def test_paper_protocol_rule_both_directions():
    assert _verdicts(_table(0.1, 0.2, kp=1e-6))[0] == "holds"
    c = table2.claims(_table(0.1, 0.2, kp=0.5))[0]
    assert c["verdict"] == "does not hold" and "above" in c["cause"] and c["statistic"]["unit"] == "network"
    res = _table(0.1, 0.2)
    for r, kp in zip(res["rows"], (1e-6, 1e-3, 1e-2)):  # networks straddle the paper's largest κ′
        r["kappa_prime"] = kp
    assert _verdicts(res)[0] == "inconclusive"
    assert _verdicts(_table(0.1, 0.2, kp=1e-6, acc=0.1))[0] == "not testable"


def test_beta_for_A_hits_the_target():
    """Per digit, the secant steps on the real attack reach A = βH̄_z‖g̃_x‖² within 1 % (frozen and free)."""
    model, variables = _binary_net("mlp3", 1 / 32, seed=3)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x = _image(1)
    f = lambda t: z_of(W, t)  # noqa: E731
    y = float(jnp.sign(f(x)[0]))
    g2 = float(jnp.sum(jax.grad(lambda t: f(t)[0])(x) ** 2))
    for gating in ("frozen", "free"):
        for a_t in (1e-3, 0.5):
            beta = real_attack.beta_for_A(f, x, y, a_target=a_t, steps=5, gating=gating)
            r = attack(f, x, y, steps=5, beta=beta, norm="raw", gating=gating)
            np.testing.assert_allclose(float(beta * r.hbar_z[0, 0] * g2), a_t, rtol=1e-2)


def test_digit_errors():
    d = real_attack.digit_errors([1.0, -2.0], [1.1, -2.0], [1.2, -1.0])
    np.testing.assert_allclose(d["err"], [0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(d["err_first_order"], [0.2, 0.5])
    np.testing.assert_allclose(d["ratio"], [0.5, 0.0], atol=1e-12)


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
    assert "κ′ (Eq. 9)" in (out / "table2.md").read_text() and "Regime map" in (out / "table2.md").read_text()
    assert (out / "table2_real_attack.png").stat().st_size > 0  # the regime map, frozen and free
    assert json.loads((out / "config.json").read_text())["models"] == ["cnn3"]
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c["id"] for c in rec["claims"]] == IDS
    for c in claims:  # claims as data
        assert {"statistic", "per_seed", "verdict", "rule"} <= set(c) and (c["verdict"] == "holds" or c["cause"])
        assert {"value", "ci", "n_digits", "n_seeds"} <= set(c["statistic"])
    assert row["protocols"]["paper"]["one_scalar_rel_err"] < 1e-10
    real = row["protocols"]["real_attack"]
    assert {a["gating"] for a in real} == {"free", "frozen"} and len(real) == 2 * len(res["A_targets"])
    for a in real:
        for k in ("beta", "A_median", "flip_fraction"):
            assert _finite(a[k]), k
        np.testing.assert_allclose(a["digits"]["A"], a["A_target"], rtol=0.5)  # each digit at its own β
        assert len(a["eq9"]["ratio"]) == len(a["digits"]["gate_flips"]) == res["n_samples"]
        for eq in real_attack.EQUATIONS[:2 if a["gating"] == "free" else 3]:  # Eq. 11's ℓ2 attack: under A2
            for k in real_attack.RECORD_FIELDS + ("sign_agreement",) * (eq != "eq10"):
                assert _finite(a[eq][k]), (eq, k)
        assert a["eq9"]["null"] == 1.0 and ("eq11" not in a) == (a["gating"] == "free")
        if a["gating"] == "frozen":
            assert a["eq11"]["null"] == 1.0 and 0 < a["eq11"]["c_median"] <= a["delta_l2"] * (1 + 1e-9)


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


@pytest.mark.slow
def test_table2_two_seeds_tiny(tiny_env):
    """Two seeds at the tiny scale: one row per (network, seed), each seed its own network and digits;
    the regime map's per-seed rows name both (the accuracy floor lowered: tiny networks are below it)."""
    out = tiny_env / "t2seeds"
    runner.execute(table2, table2.config("tiny", models=("mlp3",), seeds=(0, 1), A_targets=(1e-3,)), out,
                   progress=False)
    res = json.loads((out / "table2.json").read_text())
    assert [(r["model"], r["seed"]) for r in res["rows"]] == [("mlp3", 0), ("mlp3", 1)]
    a, b = (r["protocols"]["real_attack"][0]["digits"]["beta"] for r in res["rows"])
    assert a != b
    (p,) = table2.regime(res["rows"], "frozen", "eq9", res["A_targets"], floor=0.0)
    assert [s["seed"] for s in p["per_seed"]] == [0, 1] and p["n_seeds"] == 2
    above = sum(r["test_accuracy"] >= ACCURACY_FLOOR for r in res["rows"])  # the networks a claim can test
    claims = json.loads((out / "claims.json").read_text())
    assert claims[0]["statistic"]["n_seeds"] == above
    for c in claims:
        assert c["statistic"]["n_seeds"] <= above and (c["verdict"] == "holds" or c["cause"])
