"""The traced-variant PGD attack (jaxdyn.attacks.variants) against the static attack of
jaxdyn.attacks.multistep, and the Appendix-D function built on it (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attacks import multistep as attacks

from jaxdyn.analyses import variant_matching as matching

from jaxdyn.attacks import variants as pgd_variants
from tests.helpers import small_input, small_label, small_net

# (norm, eps, alpha, clip): unclipped ball steps, a clip, Madry's α (projection active)
VARIANTS = [("l2", 0.3, 0.03, None), ("l2", 1.0, 0.25, (0.0, 1.0)), ("linf", 0.01, 0.001, None),
            ("linf", 0.1, 0.025, (0.0, 1.0))]


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("gating", [pytest.param("frozen", marks=pytest.mark.slow), "free"])  # frozen: slow suite
def test_traced_variant_attack_equals_static_attack(gating):
    _, _, f = small_net(3, 4)
    run = jax.jit(lambda x, y, v: pgd_variants.variant_attack(f, x, y, v, steps=6, gating=gating))
    for i, (norm, eps, alpha, clip) in enumerate(VARIANTS[1:3]):  # both norms, with and without clip
        x, y = small_input(i), small_label(4, i)
        ref = attacks.attack(f, x, y, steps=6, alpha=alpha, norm=norm, eps=eps, clip=clip, gating=gating)
        got = run(x, y, pgd_variants.variant(norm, eps, alpha, clip))  # one compile for every variant
        assert float(jnp.linalg.norm(ref.delta)) > 0
        for k in ("delta", "hbar_z", "delta_effective", "success_step"):
            _close(getattr(got, k), getattr(ref, k))
    assert run._cache_size() == 1


def test_traced_variant_nan_in_nan_out():
    _, _, f = small_net(3, 4)
    x = small_input(0).at[0, 0, 0].set(jnp.nan)
    with pytest.raises(ValueError):  # found before tracing
        pgd_variants.variant_attack(f, x, small_label(4, 0), pgd_variants.variant("l2", 1.0, 0.1), steps=3)
    r = jax.jit(lambda x, y, v: pgd_variants.variant_attack(f, x, y, v, steps=3))(
        x, small_label(4, 0), pgd_variants.variant("l2", 1.0, 0.1))  # under jit: NaN out
    assert np.all(np.isnan(r.delta)) and int(r.success_step) == attacks.SuccessStep.INVALID


def test_variant_rejects_bad_input():
    for bad in (dict(norm="raw", eps=1.0, alpha=0.1), dict(norm="l2", eps=0.0, alpha=0.1),
                dict(norm="l2", eps=1.0, alpha=-1.0), dict(norm="l2", eps=1.0, alpha=0.1, clip=(1.0, 0.0))):
        with pytest.raises(ValueError):
            pgd_variants.variant(**bad)


@pytest.mark.slow
def test_make_pgd_fn_target_follows_the_norm():
    net, variables, f = small_net(5, 3)
    x = jnp.stack([small_input(i) for i in range(2)])
    y = jnp.stack([small_label(3, i) for i in range(2)])
    fn = matching.make_pgd_fn(net, steps=4, gating="frozen")
    for norm, eps, alpha, clip in VARIANTS:
        out = fn(variables, x, y, pgd_variants.variant(norm, eps, alpha, clip))
        ref = attacks.attack(f, x[0], y[0], steps=4, alpha=alpha, norm=norm, eps=eps, clip=clip, gating="frozen")
        _close(out["target"][0], ref.delta if norm == "l2" else ref.delta_effective)
        assert np.all(np.isfinite(np.asarray(out["one_minus_cos"])))
    assert fn._cache_size() == 1
