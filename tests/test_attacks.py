"""Attacks beyond the engine's reference tests (``test_engine.py``): the per-sample calibration of
the raw attack's step size (Fig. 2)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import attacks

from tests.helpers import SHAPE, small_net


def test_calibrate_raw_alpha_hits_the_target_step():
    """The calibrated α makes each sample succeed by ``target`` under A2 (checked with the network
    attack with frozen gates, not the logit-space attack the bisection uses), and half of it does
    not (the bisection brackets the boundary)."""
    _, _, f = small_net(31, 4)
    xs = jax.random.uniform(jax.random.key(32), (5,) + SHAPE, jnp.float64)
    ys = jnp.argmax(jax.vmap(f)(xs), axis=1).astype(jnp.int32)  # correctly classified by definition
    g0 = np.asarray(jax.vmap(lambda x, y: jnp.linalg.norm(attacks.attack(f, x, y, steps=1, alpha=1.0).delta))(xs, ys))
    target, m = 8, 30
    cal = attacks.calibrate_raw_alpha(f, xs, ys, target=target, max_steps=m, alpha0=0.1 / g0)
    assert cal["alpha"].shape == (5,) and np.all(cal["success_step"] >= 1) and np.all(cal["success_step"] <= target)

    def succ(alpha):
        return np.asarray(jax.vmap(lambda x, y, a: attacks.attack(f, x, y, steps=m, alpha=a, norm="raw",
                                                                  gating="frozen").success_step)(xs, ys, alpha))

    s = succ(jnp.asarray(cal["alpha"]))
    np.testing.assert_array_equal(s, cal["success_step"])
    s_half = succ(jnp.asarray(cal["alpha"] / 2))
    assert np.all((s_half > target) | (s_half < 0)), s_half
