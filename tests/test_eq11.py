"""Theorem 5 (Eq. 11) against a real ℓ2 attack (``jaxdyn.analyses.real_attack``), float64.

Under frozen gating (A2) with a loss quadratic in the logit, an ℓ2 attack moves along ``g̃_x`` and
Eq. 11 with ``C`` the attack's measured norm is exact; ``e^A`` cancels (binary head), so the
prediction does not depend on β while the literal first-order reading does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.analyses import real_attack
from jaxdyn.core import influence
from tests.test_influence import _binary_net, _image, _quadratic_loss

pytestmark = pytest.mark.timeout(300)


def _one(q):
    return {k: jnp.asarray(v)[None] for k, v in q.items()}


def test_eq11_exact_for_quadratic_loss_under_a2():
    model, variables = _binary_net("mlp3", 1 / 32, seed=1)
    z_of, W, _ = influence.first_layer_fn(model, variables)
    x, eta = _image(2), 0.05
    z0 = float(z_of(W, x)[0])
    quad, c = _quadratic_loss(abs(z0))
    y = float(np.sign(z0))
    gx2 = float(jnp.sum(jax.grad(lambda t: z_of(W, t)[0])(x) ** 2))
    eps = 0.7
    q = jax.jit(lambda: real_attack.l2_attack_phi(z_of, W, x, y, eps=eps, steps=5, eta=eta, gating="frozen",
                                               loss_fn=quad))()
    np.testing.assert_allclose(float(q["c"]), eps, rtol=1e-12)  # the ball's surface is reached
    np.testing.assert_allclose(float(q["hbar_z"]), c, rtol=1e-12)
    beta = 1.0 / (c * gx2)  # A = 1: e^A - 1 and A differ by 40 %
    k = real_attack.eq11_kappa(_one(q), beta=beta, eta=eta)
    assert k["kappa_prime"] < 1e-9
    assert k["null"] == 1.0 and k["sign_agreement"] == 1.0
    np.testing.assert_allclose(k["A_median"], 1.0, rtol=1e-9)
    assert k["first_order"] > 0.1


def test_eq11_does_not_depend_on_A_for_a_binary_head():
    rng = np.random.default_rng(0)
    q = dict(phi=rng.normal(size=5), phi_ori=rng.normal(size=5), g_z=rng.uniform(-1, -0.1, 5),
             gx_norm2=rng.uniform(1, 3, 5), q=rng.uniform(1, 2, 5), hbar_z=rng.uniform(0.05, 0.25, 5),
             c=rng.uniform(0.1, 2, 5))
    p = [np.asarray(real_attack.eq11_predict(q, beta=b, eta=0.1)) for b in (1e-3, 1.0, 5.0)]
    np.testing.assert_allclose(p[0], p[1], rtol=1e-10)
    np.testing.assert_allclose(p[0], p[2], rtol=1e-10)
    p1 = [np.asarray(real_attack.eq11_predict(q, beta=b, eta=0.1, first_order=True)) for b in (1e-3, 1.0)]
    assert np.max(np.abs(p1[1] / p[1] - 1)) > 0.1 and np.max(np.abs(p1[0] / p[0] - 1)) < 1e-2
    # ||δ̂|| is Theorem 2's: C = ||δ̂|| turns Eq. 11 into Eq. 9
    A = influence.influence_A(1.0, q["hbar_z"], q["gx_norm2"])
    qq = dict(q, c=real_attack.delta_hat_norm(A=A, g_z=q["g_z"], hbar_z=q["hbar_z"], gx_norm2=q["gx_norm2"]))
    np.testing.assert_allclose(np.asarray(real_attack.eq11_predict(qq, beta=1.0, eta=0.1)),
                               np.asarray(influence.theorem3(A=A, phi_ori=q["phi_ori"], g_z=q["g_z"],
                                                             hbar_z=q["hbar_z"], q=q["q"], eta=0.1)), rtol=1e-10)
