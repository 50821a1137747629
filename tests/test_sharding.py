"""jaxdyn._internal.sharding: the batch axis over a 1-D device mesh gives the same results as one device.

The multi-device check runs in a subprocess with ``--xla_force_host_platform_device_count=8``
(the flag must be set before jax is imported, and this test process has jax imported already).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.core import models


from jaxdyn._internal import sharding

from jaxdyn.core import theory
REPO = Path(__file__).resolve().parents[1]

# float64 throughout. Per example the sharded and unsharded programs do the same arithmetic, but
# XLA may block a batched dot differently for a shard of 2 examples than for 13, which can change
# the last bits of a sum: allow a few ulps, far below any real difference (a wrong padding or
# shard order would move results by O(1)).
RTOL, ATOL = 1e-12, 1e-14


def _setup(B, hidden=16, seed=0):
    model = models.TwoLayer(hidden=hidden, num_classes=10)
    variables = models.cast(models.init_variables(model, jax.random.key(seed)), jnp.float64)
    x = jax.random.uniform(jax.random.key(seed + 1), (B, 28, 28, 1), jnp.float64)
    y = jnp.arange(B, dtype=jnp.int32) % 10
    return model, variables, x, y


def _predict(model):
    def one(v, x, y, beta):
        return theory.predict(models.logits_fn(model, v), x, y, beta=beta).delta_hat

    return one


def test_pad_batch_repeats_last_example():
    x = jnp.arange(5 * 3, dtype=jnp.float64).reshape(5, 3)
    y = jnp.arange(5, dtype=jnp.int32)
    (xp, yp), B = sharding.pad_batch((x, y), 4)
    assert B == 5 and xp.shape == (8, 3) and yp.shape == (8,)
    np.testing.assert_array_equal(xp[:5], x)
    np.testing.assert_array_equal(xp[5:], jnp.broadcast_to(x[-1], (3, 3)))
    np.testing.assert_array_equal(yp[5:], jnp.full(3, 4, jnp.int32))
    same, B = sharding.pad_batch((x, y), 5)
    assert B == 5 and same[0] is x


def test_bad_inputs_raise():
    model, v, x, y = _setup(4)
    g = sharding.shard_batch(_predict(model), in_axes=(None, 0, 0, None))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        g(v, x, y[:3], 1.0)
    with pytest.raises(ValueError, match="in_axes has"):
        g(v, x, y)
    with pytest.raises(ValueError, match="0 or None"):
        sharding.shard_batch(_predict(model), in_axes=(None, 1, 0, None))(v, x, y, 1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        sharding.shard_batch(_predict(model), chunk_size=0)
    with pytest.raises(ValueError, match="multiple"):
        sharding.pad_batch(x, 0)


def test_one_device_matches_vmap_and_chunks():
    """On this process's device(s): shard_batch == jit(vmap), with and without chunking."""
    model, v, x, y = _setup(5)
    ref = jax.jit(jax.vmap(_predict(model), in_axes=(None, 0, 0, None)))(v, x, y, 1.5)
    out = sharding.shard_batch(_predict(model), in_axes=(None, 0, 0, None))(v, x, y, 1.5)
    chunked = sharding.shard_batch(_predict(model), in_axes=(None, 0, 0, None), chunk_size=2)(v, x, y, 1.5)
    assert out.shape == ref.shape == chunked.shape == x.shape
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(chunked, ref, rtol=RTOL, atol=ATOL)


_CHILD = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from jaxdyn.attacks import multistep as attacks
    from jaxdyn.analyses import metrics
    from jaxdyn.core import models
    from jaxdyn._internal import sharding
    from jaxdyn.core import theory
    from tests.test_sharding import _setup

    model, v, x, y = _setup(13)          # 13: not a multiple of 8, so the batch is padded
    beta, steps = 2.0, 8

    def one(v, x, y, beta):              # an attack and its Theorem 2 prediction (a κ sample)
        f = models.logits_fn(model, v)
        r = attacks.attack(f, x, y, steps=steps, beta=beta)
        d_hat = theory.predict(f, x, y, r.hbar_z, beta=beta).delta_hat
        return r.delta, d_hat, r.hbar_z, r.success_step

    ref = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))(v, x, y, beta)
    sh = sharding.shard_batch(one, in_axes=(None, 0, 0, None))(v, x, y, beta)
    ch = sharding.shard_batch(one, in_axes=(None, 0, 0, None), chunk_size=1)(v, x, y, beta)

    # a batch that fills the mesh exactly stays sharded: one shard per device
    x16, y16 = jnp.concatenate([x, x[:3]]), jnp.concatenate([y, y[:3]])
    g = sharding.shard_batch(one, in_axes=(None, 0, 0, None))
    placed, B = g.place(v, x16, y16, beta)
    o16 = g.jitted(*placed)[0]
    out = dict(
        n_devices=len(jax.devices()),
        ref_devices=sorted({len(l.sharding.device_set) for l in jax.tree.leaves(ref)}),
        out16_devices=len(o16.sharding.device_set),
        out16_shard_rows=sorted({s.data.shape[0] for s in o16.addressable_shards}),
        kappa={k: float(metrics.kappa(r[0], r[1])) for k, r in (("ref", ref), ("sharded", sh), ("chunked", ch))},
        leaves=[dict(ref=np.asarray(a).tolist(), sharded=np.asarray(b).tolist(), chunked=np.asarray(c).tolist())
                for a, b, c in zip(ref, sh, ch)],
    )
    print("JSON" + json.dumps(out))
    """
)


@pytest.mark.slow  # default-suite time: a subprocess with 8 fake devices; one device is tested by default
def test_eight_fake_cpu_devices_match_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    # The child inherits this process's CPU affinity (conftest pins it to one core).
    proc = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("JSON"))
    out = json.loads(line[4:])
    assert out["n_devices"] == 8
    # the batch really is spread: 16 examples -> 8 shards of 2 rows, on 8 devices
    assert out["out16_devices"] == 8 and out["out16_shard_rows"] == [2]
    # the reference ran on one device
    assert out["ref_devices"] == [1]
    names = ("delta", "delta_hat", "hbar_z", "success_step")
    for name, leaf in zip(names, out["leaves"]):
        ref = np.asarray(leaf["ref"])
        assert ref.shape[0] == 13, name
        for key in ("sharded", "chunked"):
            np.testing.assert_allclose(np.asarray(leaf[key]), ref, rtol=RTOL, atol=ATOL,
                                       err_msg=f"{name} / {key}")
    k = out["kappa"]
    assert np.isfinite(k["ref"]) and k["ref"] > 0
    np.testing.assert_allclose([k["sharded"], k["chunked"]], [k["ref"]] * 2, rtol=RTOL)


def test_map_in_chunks_equals_vmap():
    """All at once (``chunk=None``) or in sequential chunks (with a remainder), under ``jit``: the
    same numbers as ``vmap``, a pytree in and out."""
    xs = (jnp.arange(10.0).reshape(5, 2), jnp.arange(5.0))

    def fn(a):
        return {"s": a[0].sum() * a[1], "v": a[0] * 2}

    want = jax.vmap(fn)(xs)
    for chunk in (None, 2, 5):
        got = jax.jit(lambda t, c=chunk: sharding.map_in_chunks(fn, t, c))(xs)
        np.testing.assert_array_equal(got["s"], want["s"])
        np.testing.assert_array_equal(got["v"], want["v"])
