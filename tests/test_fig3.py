"""Figure 3: the per-sample quantities on a small random-init binary network (float64), the
protocol and the verdict rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import influence
from jaxdyn.experiments import _common as C
from jaxdyn.experiments import fig3
from jaxdyn.models import logits_fn

from tests.helpers import check_protocol, digits, zoo_net

pytestmark = pytest.mark.timeout(300)


# exact float64 identities
EXACT = 1e-10


def test_fig3_quantities_consistent_and_A_hat_equals_A_under_frozen_gating():
    """Under A2, ``z`` is affine in ``x`` so ``g̃`` is constant along the attack and
    ``Â = Σ_{t=1}^m α H̄_z ||g̃||² = β H̄_z ||g̃_x||² = A`` exactly; ``||Δg_W||`` computed here equals
    :func:`jaxdyn.influence.measure`'s (see ``test_influence.py``)."""
    model, v = zoo_net("cnn3", num_classes=1, width=1 / 16)
    x = digits(4, seed=1)
    z = jax.vmap(logits_fn(model, v))(x)[:, 0]
    y = jnp.where(z > 0, 1.0, -1.0)
    assert "/".join(influence.first_layer_path(model, v)) == "Conv_0"
    z_of, W, _ = influence.first_layer_fn(model, v)
    for gating in ("frozen", "free"):
        q = jax.vmap(lambda xi, yi: influence.attack_influence(z_of, W, xi, yi, beta=0.5, steps=5, eta=1e-2,
                                                               gating=gating))(x, y)
        q = {k: np.asarray(a) for k, a in q.items()}
        if gating == "frozen":
            np.testing.assert_allclose(q["A_hat"], q["A"], rtol=1e-9)
        assert np.all(q["A_hat"] > 0) and np.all(q["dgw_norm"] > 0)
        np.testing.assert_allclose(q["hbar_z_gx2"], q["hbar_z"] * q["gx2"], rtol=EXACT)
    # the experiments' batched form (free gating, β from A0, chunked): the same numbers per sample
    layer, [(a0, beta, qb)] = C.binary_influence(model, v, x, y, A0=1.0, steps=5, eta=1e-2, chunk=3)
    assert layer == "Conv_0" and a0 == 1.0 and beta > 0
    one = influence.attack_influence(z_of, W, x[3], y[3], beta=beta, steps=5, eta=1e-2)
    np.testing.assert_allclose(qb["A_hat"][3], float(one["A_hat"]), rtol=1e-10)
    assert np.all(np.abs(qb["cos_to_mean"]) <= 1 + 1e-12)
    corr = fig3.correlations(qb)
    assert set(corr) == {f"{a}|{b}" for a in fig3.X_KEYS for b in fig3.Y_KEYS}


def test_fig3_protocol():
    check_protocol(fig3, "fig3")
    with pytest.raises(ValueError):
        fig3.config("tiny", A0=-1.0)


def _results(rho, p):
    s = {f"{a}|{b}": {"rho": rho, "p": p, "n": 12} for a in fig3.X_KEYS for b in fig3.Y_KEYS}
    return dict(dtype="float64", models={"cnn3": dict(test_accuracy=0.9, beta=1.0, steps=5, n_samples=12,
                                                      first_layer="Conv_0", attack_success_rate=0.5, spearman=s)})


def test_fig3_claims_hold_and_do_not_hold():
    c = fig3.claims(_results(0.8, 0.001))
    assert [x["id"] for x in c] == ["fig3.influence"] and c[0]["verdict"] == "holds"
    assert fig3.claims(_results(-0.6, 0.01))[0]["verdict"] == "does not hold"
    assert fig3.claims(_results(0.2, 0.4))[0]["verdict"] == "holds partly"
