"""The per-digit progress measurement (:mod:`jaxdyn.analyses.progress`): its scan is the raw attack
(A2 in logit space and through the network), its checkpoints are the shorter attacks at s·t_success,
and t_success interpolates the margin's crossing."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.analyses import progress as P
from jaxdyn.attacks.multistep import attack, logit_space_attack
from jaxdyn.core.theory import prepare


def _net():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    W1 = jax.random.normal(k1, (12, 16), jnp.float64) / 3.0
    W2 = jax.random.normal(k2, (4, 16), jnp.float64) / 2.0
    f = lambda x: W2 @ jax.nn.relu(x @ W1)  # noqa: E731
    xs = jax.random.normal(k3, (3, 12), jnp.float64)
    ys = jnp.argmax(jax.vmap(f)(xs), axis=1)
    J, z, gz = jax.vmap(lambda x, y: prepare(f, x, y))(xs, ys)
    return f, xs, ys, J, z, gz


def test_checkpoints_are_the_shorter_attacks():
    jax.config.update("jax_enable_x64", True)
    f, xs, ys, J, z, gz = _net()
    assert P.checkpoints((0.5, 1.0, 1.5), 8) == (4, 8, 12)
    ks = (3, 6)
    alpha = jnp.full(3, 0.05)
    for gating in ("frozen", "free"):
        out = P.scan_fn(gating, 6, ks, f)(xs, ys, J, z, jnp.zeros((3, 12)), alpha)
        for j, k in enumerate(ks):
            if gating == "frozen":
                r = jax.vmap(lambda x, y, Ji: logit_space_attack(f, x, y, steps=k, alpha=0.05, jacobian=Ji))(xs, ys, J)
            else:
                r = jax.vmap(lambda x, y: attack(f, x, y, steps=k, alpha=0.05, norm="raw", gating="free"))(xs, ys)
            np.testing.assert_allclose(out["d"][:, j], r.delta.reshape(3, -1), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(out["h_paper"][:, j], r.hbar_z, rtol=1e-8, atol=1e-12)
        assert out["margin"].shape == (3, 7)


def test_t_success_interpolates_and_reports_apart():
    m = np.array([[1.0, 0.5, -0.5, -1.0], [2.0, 1.0, 0.5, 0.1], [-1.0, -1.0, -1.0, -1.0]])
    t = P.t_success(m, 0.1)
    np.testing.assert_allclose(t[0], 0.1 * 1.5)
    assert np.isnan(t[1]) and t[2] == 0.0
    np.testing.assert_allclose(P.t_success(m[:1], 0.1, offset=np.array([10]))[0], 0.1 * 11.5)
    np.testing.assert_allclose(P.t_success(m, np.array([0.1, 0.2, 0.3]), interpolate=False)[0], 0.2)


def test_compare_ablation_grid_contains_the_paper_weights():
    f, xs, ys, J, z, gz = _net()
    ks = (4, 8)
    out = P.scan_fn("frozen", 8, ks, f)(xs, ys, J, z, jnp.zeros((3, 12)), jnp.full(3, 0.05))
    beta = np.array([[0.2, 0.4]] * 3)
    cmp = P.compare_fn(J, gz, out["d"], out["h_paper"], out["h_uniform"], beta, cs=(0.5, 1.0))
    np.testing.assert_allclose(cmp["err_c"][..., 1], cmp["err_hat"], rtol=1e-10)
    assert cmp["err_hat"].shape == (3, 2) and np.all(cmp["err_hat"] < cmp["err_fo"])
