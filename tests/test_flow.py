"""``jaxdyn.attacks.flow``: the gradient flow ``dδ/dt = g_{x+δ}`` (A3's limit), solved by diffrax (Dopri5).

Checked against closed forms: a quadratic loss on an affine model (where the flow is Theorem 2's δ̂
exactly, with ``H̄_z`` the constant Hessian); the m-step raw attack converges to the flow at O(1/m);
the logit-space A2 flow equals the A2 flow through the network; ``t_success`` (the label flip, a
diffrax event) against a bisection on a dense solve; running out of steps and bad input are
reported (:class:`FlowStatus`), never a silent answer."""

import json

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn
from jaxdyn import attacks
from jaxdyn.attacks import flow
from jaxdyn.attacks.multistep import attack, logit_space_attack
from jaxdyn.core.losses import loss
from jaxdyn.core.theory import theorem2

TOL = dict(rtol=1e-11, atol=1e-13)


def _affine_quadratic(n=7, C=3, seed=0):
    """An affine model ``z = W x + b`` and a quadratic loss ``½ (z − c)ᵀ A (z − c)`` (constant ``H_z = A``)."""
    k = jax.random.split(jax.random.key(seed), 5)
    W = jax.random.normal(k[0], (C, n), jnp.float64)
    b = jax.random.normal(k[1], (C,), jnp.float64)
    B = jax.random.normal(k[2], (C, C), jnp.float64)
    A = B @ B.T / C + 0.1 * jnp.eye(C)
    c = jax.random.normal(k[3], (C,), jnp.float64)
    x = jax.random.normal(k[4], (n,), jnp.float64)
    return (lambda x: W @ x + b), (lambda z, y: 0.5 * (z - c) @ A @ (z - c)), W, A, c, x


@pytest.mark.parametrize("how", [pytest.param("free", marks=pytest.mark.slow), "frozen", "logit"])
def test_quadratic_affine_flow_is_theorem2(how):
    f, L, W, A, c, x = _affine_quadratic()
    beta = 0.8
    gz = A @ (f(x) - c)
    want = theorem2(W, gz, A, beta).delta
    assert float(beta * jnp.linalg.eigvalsh(W.T @ A @ W)[-1]) > 2  # curvature matters: far from β g_x
    if how == "logit":
        r = flow.logit_space_flow(f, x, 0, beta=beta, loss_fn=L, **TOL)
    else:
        r = flow.gradient_flow(f, x, 0, beta=beta, gating=how, loss_fn=L, **TOL)
    assert int(r.status) == flow.OK
    np.testing.assert_allclose(r.delta, want, rtol=1e-8, atol=1e-10 * float(jnp.linalg.norm(want)))
    np.testing.assert_allclose(r.hbar_z, A, rtol=1e-9)  # the flow's H̄_z of a constant H_z
    assert float(jnp.linalg.norm(r.delta - beta * W.T @ gz)) > 0.1 * float(jnp.linalg.norm(want))


def _tanh_net(n=10, C=3, seed=1):
    k = jax.random.split(jax.random.key(seed), 3)
    W1 = jax.random.normal(k[0], (8, n), jnp.float64) / 2
    W2 = jax.random.normal(k[1], (C, 8), jnp.float64)
    return (lambda x: W2 @ jnp.tanh(W1 @ x)), jax.random.normal(k[2], (n,), jnp.float64)


def test_error_control_adapts_the_step():
    f, x = _tanh_net()
    tight = flow.gradient_flow(f, x, 0, beta=1.5, **TOL)
    loose = flow.gradient_flow(f, x, 0, beta=1.5, rtol=1e-4, atol=1e-6)
    assert int(tight.status) == int(loose.status) == flow.FlowStatus.OK and float(tight.t) == 1.5
    assert 10 < int(tight.accepted) < 400 and int(loose.accepted) < int(tight.accepted)
    np.testing.assert_allclose(loose.delta, tight.delta, rtol=1e-3, atol=1e-4 * float(jnp.linalg.norm(tight.delta)))


def test_m_step_attack_converges_at_first_order():
    f, x = _tanh_net()
    beta = 1.5
    ref = flow.gradient_flow(f, x, 0, beta=beta, **TOL)
    assert int(ref.status) == flow.OK
    err = [float(jnp.linalg.norm(attack(f, x, 0, steps=m, beta=beta).delta - ref.delta)) for m in (20, 40, 80)]
    ratios = [a / b for a, b in zip(err, err[1:])]
    assert all(1.8 < q < 2.2 for q in ratios), (err, ratios)  # Euler: global error O(1/m)
    assert err[-1] > 1e-6 * float(jnp.linalg.norm(ref.delta))  # far above the solver's tolerance


def _relu_net(n=12, C=4, seed=2):
    """A plain-JAX ReLU MLP on ``[n]`` inputs (gates flip along an attack)."""
    k = jax.random.split(jax.random.key(seed), 3)
    W1 = jax.random.normal(k[0], (16, n), jnp.float64) / 2
    W2 = jax.random.normal(k[1], (C, 16), jnp.float64)
    return (lambda x: W2 @ jax.nn.relu(W1 @ x)), jax.random.normal(k[2], (n,), jnp.float64)


def test_frozen_logit_space_equals_network_and_attack_limit():
    f, x = _relu_net()
    y = jnp.int32(1)
    beta = 3.0
    net = flow.gradient_flow(f, x, y, beta=beta, gating="frozen", **TOL)
    lsf = flow.logit_space_flow(f, x, y, beta=beta, **TOL)
    assert int(net.status) == int(lsf.status) == flow.OK
    scale = float(jnp.linalg.norm(net.delta))
    np.testing.assert_allclose(lsf.delta, net.delta, atol=1e-8 * scale)
    g_x = jax.grad(lambda x: jax.nn.logsumexp(f(x)) - f(x)[1])(x)
    assert float(jnp.linalg.norm(net.delta - beta * g_x)) > 1e-3 * scale
    np.testing.assert_allclose(lsf.hbar_z, net.hbar_z, rtol=1e-7, atol=1e-12)


@pytest.mark.slow  # the free-gating version runs by default (test_m_step_attack_converges_at_first_order)
def test_logit_space_attack_converges_to_logit_space_flow():
    f, x = _relu_net()
    y, beta = jnp.int32(1), 3.0
    lsf = flow.logit_space_flow(f, x, y, beta=beta, **TOL)
    e = [float(jnp.linalg.norm(logit_space_attack(f, x, y, steps=m, beta=beta).delta - lsf.delta)) for m in (50, 100)]
    assert 1.7 < e[0] / e[1] < 2.3, e


@pytest.mark.slow  # default-suite time; the sweeps vmap and jit the flows too (tests/test_regimes.py)
def test_vmap_jit_one_compile_and_per_example_agreement():
    f, x = _tanh_net()  # smooth: free gating of a ReLU net may slide along a kink (docs/theory.md)
    xs = jnp.stack([x, -x, 2 * x])
    ys = jnp.asarray([0, 1, 2], jnp.int32)
    traces = []

    def run(xs, ys, b):
        traces.append(1)
        return jax.vmap(lambda x, y: flow.gradient_flow(f, x, y, beta=b, gating="free", rtol=1e-8, atol=1e-10))(xs, ys)

    fn = jax.jit(run)
    out = fn(xs, ys, jnp.float64(0.5))
    fn(xs, ys, jnp.float64(2.0))
    assert len(traces) == 1  # β traced
    assert np.all(np.asarray(out.status) == flow.OK)
    one = flow.gradient_flow(f, xs[1], ys[1], beta=0.5, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(out.delta[1], one.delta, rtol=1e-6, atol=1e-9)


def test_max_steps_reported_not_silent():
    f, x = _relu_net()
    y = jnp.int32(1)
    r = flow.gradient_flow(f, x, y, beta=3.0, max_steps=3, rtol=1e-10, atol=1e-12)
    assert int(r.status) == flow.MAX_STEPS and int(r.accepted) + int(r.rejected) == 3
    assert float(r.t) < 3.0 and np.all(np.isnan(r.delta)) and np.all(np.isnan(r.hbar_z))
    lsf = jax.jit(lambda b: flow.logit_space_flow(f, x, y, beta=b, max_steps=2))(jnp.float64(3.0))
    assert int(lsf.status) == flow.MAX_STEPS and np.all(np.isnan(lsf.delta))
    assert flow.FlowStatus(int(lsf.status)).message == "max_steps reached" and np.isnan(float(lsf.t_success))


def test_bad_input():
    f, x = _relu_net()
    y = jnp.int32(1)
    with pytest.raises(ValueError, match="beta"):
        flow.gradient_flow(f, x, y, beta=-1.0)
    with pytest.raises(ValueError, match="rtol"):
        flow.gradient_flow(f, x, y, beta=1.0, rtol=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        flow.logit_space_flow(f, x, y, beta=1.0, max_steps=0)
    with pytest.raises(ValueError, match="gating"):
        flow.gradient_flow(f, x, y, beta=1.0, gating="both")
    with pytest.raises(ValueError, match="NaN"):
        flow.gradient_flow(f, x.at[0].set(jnp.nan), y, beta=1.0)
    with pytest.raises(ValueError, match="out of range"):
        flow.logit_space_flow(f, x, jnp.int32(7), beta=1.0)
    with pytest.raises(ValueError, match="scalar label"):
        flow.gradient_flow(f, x, jnp.zeros(2, jnp.int32), beta=1.0)
    # under jit (no exception possible): NaN and a status, never a plausible δ
    bad = jax.jit(lambda x, y: flow.gradient_flow(f, x, y, beta=1.0, max_steps=50))(x.at[0].set(jnp.nan), y)
    assert int(bad.status) != flow.OK and np.all(np.isnan(bad.delta))
    lab = jax.jit(lambda y: flow.logit_space_flow(f, x, y, beta=1.0))(jnp.int32(9))
    assert int(lab.status) == flow.FlowStatus.INVALID and np.all(np.isnan(lab.delta))


def test_flow_status_is_an_int_enum():
    assert [int(s) for s in flow.FlowStatus] == [0, 1, 2, 3]
    assert flow.FlowStatus.OK == 0 and flow.FlowStatus(1) is flow.FlowStatus.MAX_STEPS
    assert flow.FlowStatus.FAILED.message.startswith("step size vanished") and flow.OK is flow.FlowStatus.OK
    assert json.dumps({"status": flow.FlowStatus.INVALID}) == '{"status": 3}'
    assert jaxdyn.FlowStatus is attacks.FlowStatus is flow.FlowStatus and "dopri5" not in attacks.__all__


def _margin_fn(f, x, y):
    def m(d):
        z = f(x + d)
        return z[y] - jnp.max(jnp.where(jnp.arange(z.shape[0]) == jnp.int64(y), -jnp.inf, z))
    return m


def test_t_success_matches_bisection_on_a_dense_solve():
    """The event time against an independent bracket: a dense diffrax solve (no event) to β, then
    bisection of the margin of ``f(x + δ(t))`` on its interpolant."""
    f, x = _tanh_net()
    y = int(jnp.argmax(f(x)))
    beta = 3.0
    r = flow.gradient_flow(f, x, y, beta=beta, **TOL)
    assert int(r.status) == flow.FlowStatus.OK and 0 < float(r.t_success) < beta
    grad = jax.grad(lambda d: loss(f(x + d), y))
    sol = dfx.diffeqsolve(dfx.ODETerm(lambda t, d, _: grad(d)), dfx.Dopri5(), 0.0, beta, None, jnp.zeros_like(x),
                          saveat=dfx.SaveAt(dense=True), stepsize_controller=dfx.PIDController(rtol=1e-12, atol=1e-14),
                          max_steps=100_000)
    m = _margin_fn(f, x, y)
    grid = np.linspace(0.0, beta, 301)
    vals = np.array([float(m(sol.evaluate(t))) for t in grid])
    i = int(np.argmax(vals <= 0))  # the first grid point past the flip
    assert vals[0] > 0 and i > 0
    lo, hi = grid[i - 1], grid[i]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(m(sol.evaluate(mid))) > 0 else (lo, mid)
    np.testing.assert_allclose(float(r.t_success), 0.5 * (lo + hi), rtol=1e-8)
    # the flow goes on past the flip to β: δ(β) is the single-leg solve's
    np.testing.assert_allclose(r.delta, sol.evaluate(beta), rtol=1e-8, atol=1e-10 * float(jnp.linalg.norm(r.delta)))
    # the frozen flow through the network and in logit space flip at the same time
    fr = flow.gradient_flow(f, x, y, beta=beta, gating="frozen", **TOL)
    ls = flow.logit_space_flow(f, x, y, beta=beta, **TOL)
    np.testing.assert_allclose(float(ls.t_success), float(fr.t_success), rtol=1e-7)


def test_t_success_never_flipped_misclassified_and_vmapped():
    f, x = _tanh_net()
    z = f(x)
    y_pred, y_other = int(jnp.argmax(z)), int(jnp.argmin(z))
    short = flow.gradient_flow(f, x, y_pred, beta=1e-3, **TOL)
    assert int(short.status) == flow.FlowStatus.OK and float(short.t_success) == np.inf  # no flip by β
    wrong = flow.logit_space_flow(f, x, y_other, beta=0.5, **TOL)
    assert float(wrong.t_success) == 0.0  # misclassified at t = 0
    ys = jnp.asarray([y_pred, y_pred, y_other], jnp.int32)
    run = jax.jit(jax.vmap(lambda y, b: flow.logit_space_flow(f, x, y, beta=b, **TOL)))
    out = run(ys, jnp.asarray([1e-3, 3.0, 0.5]))
    one = flow.logit_space_flow(f, x, y_pred, beta=3.0, **TOL)
    np.testing.assert_allclose(np.asarray(out.t_success), [np.inf, float(one.t_success), 0.0], rtol=1e-10)
