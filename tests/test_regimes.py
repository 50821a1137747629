"""``jaxdyn.analyses.regimes.sweep``: the numbers of each row against the same quantities computed directly
(attack + predict + metrics.kappa), one compile over β, free == frozen where no gate flips, the
flip fraction rising with β, and the grid's extension to a flip range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import metrics
from jaxdyn.analyses.regimes import C3_FIELDS, FREE_FIELDS, ODE_FIELDS, ROW_FIELDS, convergence, sweep
from jaxdyn.attacks import flow
from jaxdyn.attacks.multistep import attack
from jaxdyn.core.losses import is_success
from jaxdyn.core.theory import predict, structured_eigenpairs
from tests.helpers import small_input, small_net

STEPS = 12


def _batch(n=5, num_classes=4):
    _, _, f = small_net(num_classes=num_classes)
    xs = jnp.stack([small_input(i) for i in range(n)])
    ys = jnp.asarray([i % num_classes for i in range(n)], jnp.int32)
    return f, xs, ys


def _direct(f, xs, ys, beta, gating):
    """One row's numbers the slow way: attack, Theorem 2/1 via predict, metrics.kappa."""
    ds, hats, t1s, gxs, lam, flips, cos = [], [], [], [], [], [], []
    # jitted per digit (the same calls, compiled once instead of dispatched op by op)
    att = jax.jit(lambda x, y: attack(f, x, y, steps=STEPS, beta=beta, norm="raw", gating=gating))
    pred = jax.jit(lambda x, y, h: (predict(f, x, y, h, beta=beta), predict(f, x, y, h, beta=beta, steps=STEPS)))
    for x, y in zip(xs, ys):
        res = att(x, y)
        p2, p1 = pred(x, y, res.hbar_z)
        ds.append(res.delta), hats.append(p2.delta_hat), t1s.append(p1.delta_hat), gxs.append(p2.g_x)
        lam_i, V = structured_eigenpairs(p2.J, res.hbar_z)
        lam.append(beta * lam_i[0])
        z_end = f(x + res.delta) if gating == "free" else f(x) + p2.J @ res.delta.ravel()
        flips.append(bool(is_success(z_end, y)))
        cos.append(abs(float(metrics.cosine(res.delta, V[:, 0]))))
    ds, hats, t1s, gxs = map(jnp.stack, (ds, hats, t1s, gxs))
    correct = ~np.asarray(jax.vmap(is_success)(jax.vmap(f)(xs), ys))
    return dict(kappa=metrics.kappa(ds, hats), kappa_theorem1=metrics.kappa(ds, t1s),
                kappa_first_order=metrics.kappa_first_order(ds, gxs, beta), beta_lambda_max=np.median(lam),
                delta_l2=np.median(metrics.per_sample_norm(ds)), cos_delta_v1=np.median(cos),
                delta_linf=np.median(np.max(np.abs(np.reshape(ds, (len(ds), -1))), axis=1)),
                flip_fraction=np.mean(np.asarray(flips)[correct]))


@pytest.mark.parametrize("gating", ["frozen", pytest.param("free", marks=pytest.mark.slow)])
def test_rows_match_direct_computation(gating):
    f, xs, ys = _batch()
    betas = (0.5, 20.0)
    # ode=(): the rows' attack numbers only (the ODE fields: tests/test_flow.py, test_table1.py)
    rows = sweep(f, xs, ys, betas=betas, steps=STEPS, gating=(gating,), chunk=2, ode=())
    assert [r["beta"] for r in rows] == list(betas)
    sfx = "" if gating == "frozen" else "_free"
    for r, b in zip(rows, betas):
        want = _direct(f, xs, ys, b, gating)
        got = dict(r)
        if sfx:
            got.update(kappa=r["kappa_free"], kappa_first_order=r["kappa_free_first_order"],
                       **{k: r[k + sfx] for k in ("kappa_theorem1", "beta_lambda_max", "delta_l2", "delta_linf",
                                                  "flip_fraction", "cos_delta_v1")})
        for k, v in want.items():
            # float64; the logit-space attack equals the network's A2 attack up to rounding
            np.testing.assert_allclose(got[k], float(v), rtol=1e-9, atol=1e-12, err_msg=f"{k} at β={b}")


def test_fields_and_one_compile_over_beta():
    _, _, g = small_net()

    def counted():
        traces = []

        def f(x):  # a fresh function each time: nothing compiled for one sweep serves the other
            traces.append(1)
            return g(x)

        return f, traces

    _, xs, ys = _batch()
    f1, t1 = counted()
    (row,) = sweep(f1, xs, ys, betas=(0.1,), steps=STEPS)
    assert set(ROW_FIELDS) | set(C3_FIELDS) | set(FREE_FIELDS) <= set(row)
    f5, t5 = counted()
    rows = sweep(f5, xs, ys, betas=(0.1, 0.3, 1.0, 3.0, 10.0), steps=STEPS)
    assert len(rows) == 5 and len(t5) == len(t1)  # more β, no more traces: β is traced


def test_free_equals_frozen_without_gate_flips():
    f, xs, ys = _batch()
    (r,) = sweep(f, xs, ys, betas=(1e-6,), steps=STEPS)  # a perturbation far too small to flip a gate
    for k in ("kappa", "kappa_theorem1", "beta_lambda_max", "delta_l2", "cos_delta_gx", "cos_delta_v1"):
        fk = "kappa_free" if k == "kappa" else k + "_free"
        # κ and κ_T1 are at rounding level here (~1e-15): compare them absolutely
        np.testing.assert_allclose(r[fk], r[k], rtol=1e-7, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(r["kappa_free_first_order"], r["kappa_first_order"], rtol=1e-7)
    assert r["cos_delta_gx"] > 1 - 1e-9  # C.3: δ* ∥ g_x at small β


@pytest.mark.slow  # default-suite time: the grid extension runs in test_table1_command_tiny
def test_flip_fraction_rises_and_grid_extends():
    f, xs, ys = _batch(n=8)
    ys = jnp.argmax(jax.vmap(f)(xs), axis=1).astype(jnp.int32)  # every example correct at β = 0
    rows = sweep(f, xs, ys, betas=(1.0,), steps=STEPS, gating=("frozen",), flip_range=(0.05, 0.5), factor=4.0,
                 max_betas=12)
    flips = [r["flip_fraction"] for r in rows]
    assert rows[0]["n_correct"] == 8
    assert flips[0] <= 0.05 and flips[-1] >= 0.5, flips
    assert all(b >= a - 0.2 for a, b in zip(flips, flips[1:])), flips  # monotone up to sampling noise
    kfo = [r["kappa_first_order"] for r in rows]
    assert kfo[-1] > kfo[0]  # the curvature-free baseline degrades with strength
    capped = sweep(f, xs, ys, betas=(1e-3,), steps=STEPS, gating=("frozen",), flip_range=(0.05, 0.5), max_betas=2)
    assert len(capped) == 2  # the cap stops the extension; the caller sees flip < 0.5 in the last row


def test_bad_arguments():
    f, xs, ys = _batch(n=2)
    with pytest.raises(ValueError, match="gating"):
        sweep(f, xs, ys, betas=(1.0,), steps=3, gating=("both",))
    with pytest.raises(ValueError, match="betas"):
        sweep(f, xs, ys, betas=(-1.0,), steps=3)
    with pytest.raises(ValueError, match="steps"):
        sweep(f, xs, ys, betas=(1.0,), steps=0)


@pytest.mark.slow  # default-suite time: the ODE path runs by default in test_table1_command_tiny
def test_ode_reference_fields_match_direct_computation():
    f, xs, ys = _batch(n=3)
    beta, tol = 2.0, dict(rtol=1e-9, atol=1e-12, max_steps=4096)
    (r,) = sweep(f, xs, ys, betas=(beta,), steps=STEPS, gating=("frozen",), ode_tol=tol)
    assert set(ODE_FIELDS) <= set(r) and r["ode_solved"] == 3 and r["ode_rtol"] == 1e-9
    ds, hats, ms, fo = [], [], [], []
    for x, y in zip(xs, ys):
        sol = flow.gradient_flow(f, x, y, beta=beta, gating="frozen", **tol)  # through the network
        p = predict(f, x, y, sol.hbar_z, beta=beta)
        ds.append(sol.delta), hats.append(p.delta_hat), fo.append(p.g_x)
        ms.append(attack(f, x, y, steps=STEPS, beta=beta, norm="raw", gating="frozen").delta)
    ds, hats, ms, fo = map(jnp.stack, (ds, hats, ms, fo))
    np.testing.assert_allclose(r["kappa_ode"], float(metrics.kappa(ds, hats)), rtol=1e-6)
    np.testing.assert_allclose(r["kappa_ode_first_order"], float(metrics.kappa_first_order(ds, fo, beta)), rtol=1e-6)
    gap = float(np.sum(metrics.per_sample_norm(ms - ds)) / np.sum(metrics.per_sample_norm(ds)))
    np.testing.assert_allclose(r["euler_gap"], gap, rtol=1e-6)
    # κ(m): the m-step attack's distance to the flow halves as m doubles (Euler, O(1/m))
    c = convergence(f, xs, ys, beta=beta, m_grid=(40, 80), ode_tol=tol)
    g = [q["euler_gap"] for q in c["rows"]]
    assert 1.7 < g[0] / g[1] < 2.3, g
    np.testing.assert_allclose(c["kappa_ode"], r["kappa_ode"], rtol=1e-6)


def test_ode_bad_arguments():
    f, xs, ys = _batch(n=2)
    with pytest.raises(ValueError, match="ode must be a subset"):
        sweep(f, xs, ys, betas=(1.0,), steps=3, gating=("frozen",), ode=("free",))
    with pytest.raises(ValueError, match="ode_tol"):
        sweep(f, xs, ys, betas=(1.0,), steps=3, ode_tol=dict(tol=1.0))
