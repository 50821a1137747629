import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.cli import app as cli

from jaxdyn.analyses import kappa_beta
from jaxdyn.core import models
from jaxdyn.experiments import kappa_sweep


def _tiny():
    net = models.get_model("two_layer", num_classes=10, width=0.1)
    v = models.cast(net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32)), jnp.float64)
    xs = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1), jnp.float64)
    return net, v, xs, jnp.arange(3, dtype=jnp.int32)


def test_sweep_paths_agree_and_first_order_is_worse(tmp_path):
    net, v, xs, ys = _tiny()
    kw = dict(betas=[1e-3, 1e-1], steps=40, progress=False)
    a = kappa_beta.kappa_vs_beta(net, v, xs, ys, path="network", **kw)
    b = kappa_beta.kappa_vs_beta(net, v, xs, ys, path="logit", **kw)
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra["kappa"], rb["kappa"], rtol=1e-6)
        assert ra["kappa"] < ra["kappa_first_order"]
    result = {"rows": [dict(r, model="two_layer", steps=40, n_samples=3, dtype="float64",
                            test_accuracy=0.0, gating="frozen") for r in a]}
    kappa_sweep.plot(result, tmp_path)
    assert (tmp_path / "kappa_vs_beta.png").stat().st_size > 1000


def test_cli_help_and_bad_input(tmp_path, capsys):
    out = subprocess.run([sys.executable, "-m", "jaxdyn", "kappa-sweep", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--betas" in out.stdout
    rc = cli.main(["kappa-sweep", "--betas", "0.1,-1", "--out", str(tmp_path)])
    assert rc == 2 and "beta" in capsys.readouterr().err
    rc = cli.main(["kappa-sweep", "--model", "nope", "--out", str(tmp_path)])
    assert rc == 2 and "known models" in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()  # nothing written for a failed run


def test_long_sweep_warns_with_an_estimate(monkeypatch):
    """A sweep of many sample-steps times a few steps first and says how long it will take."""
    net, v, xs, ys = _tiny()
    monkeypatch.setattr(kappa_beta, "LONG_WORK", 100)
    with pytest.warns(UserWarning, match=r"3 digits × 40 steps × 2 β will take about .* min"):
        kappa_beta.kappa_vs_beta(net, v, xs, ys, betas=[1e-3, 1e-2], steps=40, path="logit", progress=True)


def test_verdict_can_fail_kappa_sweep():
    """The extension claim "Theorem 2 beats first order" fails when κ is above its baseline at
    every β, and holds only partly when it is above at some."""
    row = dict(model="mlp3", test_accuracy=0.97, n_samples=4, steps=40, gating="frozen", dtype="float64",
               success_rate=0.5)
    worse = [dict(row, beta=b, kappa=0.9, kappa_first_order=0.5) for b in (1e-2, 1.0)]
    assert [c["verdict"] for c in kappa_sweep.claims({"rows": worse})] == ["does not hold"]
    mixed = [dict(worse[0], kappa=0.1), worse[1]]
    assert [c["verdict"] for c in kappa_sweep.claims({"rows": mixed})] == ["holds partly"]
