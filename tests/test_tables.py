"""Tables 1 and 2 and the appendix command: helpers against independent computations, and a smoke
test of each command at the tiny scale (tiny widths, a few digits, models trained into a
temporary cache)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import cli
from jaxdyn.experiments import appendix, table1, table2
from jaxdyn.theory import theorem2

pytestmark = pytest.mark.timeout(600)


def test_fmt_and_md_table():
    assert table1.fmt(1.5e-5) == "1.5×10⁻⁵"
    assert table1.fmt(9.96e-3) == "1.0×10⁻²"
    assert table1.fmt(None) == "—" and table1.fmt(float("nan")) == "—" and table1.fmt(0.0) == "0"
    assert table1.md_table(["a", "b"], [["1", "2"]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_verdict():
    rows = [dict(model="a", kappa=1e-5, kappa_first_order=1e-3), dict(model="b", kappa=2e-3, kappa_first_order=1e-3)]
    v = table1.verdict(rows)
    assert not v["all_below_bound"] and not v["all_below_first_order"]
    assert v["below_bound"] == {"a": True, "b": False}
    assert table1.verdict(rows[:1])["all_below_bound"] and table1.verdict(rows[:1])["all_below_first_order"]


def test_run_chunked_pads_and_compiles_once():
    traces = []

    @jax.jit
    def fn(v, x, y, s):
        traces.append(1)
        return dict(a=x * s + v, b=y)

    x = np.arange(5 * 3, dtype=np.float64).reshape(5, 3)
    y = np.arange(5)
    out = table1.run_chunked(fn, 1.0, x, y, jnp.asarray(2.0), chunk=2)
    np.testing.assert_array_equal(out["a"], 2 * x + 1)
    np.testing.assert_array_equal(out["b"], y)
    assert len(traces) == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_match_beta_solves_the_norm_equation(seed):
    rng = np.random.default_rng(seed)
    C, n = 4, 30
    J = jnp.asarray(rng.normal(size=(C, n)))
    gz = jnp.asarray(rng.normal(size=C))
    P = rng.normal(size=(C, C))
    hbar = jnp.asarray(P @ P.T / C)
    target = 3.0 * float(jnp.linalg.norm(J.T @ gz)) * 0.7
    match = jax.jit(appendix.match_beta)
    beta = match(J, gz, hbar, target)
    np.testing.assert_allclose(float(jnp.linalg.norm(theorem2(J, gz, hbar, beta).delta)), target, rtol=1e-10)
    # no curvature: δ̂ = β g_x exactly
    b0 = match(J, gz, jnp.zeros((C, C)), target)
    np.testing.assert_allclose(float(b0), target / float(jnp.linalg.norm(J.T @ gz)), rtol=1e-10)
    assert float(beta) < float(b0)  # curvature only makes δ̂ longer


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        table1.check_scale("huge")
    with pytest.raises(ValueError, match="unknown Table 1 model"):
        table1.run_experiment(scale="quick", out="/tmp/unused", models=("vgg11",), progress=False)
    with pytest.raises(ValueError, match="unknown Table 2 model"):
        table2.run_experiment(scale="quick", out="/tmp/unused", models=("alexnet",), progress=False)


def test_plot_fig1_reads_only_the_json(tmp_path):
    rng = np.random.default_rng(0)
    k = 2
    arr = lambda: rng.normal(size=(k, 28, 28, 1)).tolist()  # noqa: E731
    fig1 = {key: dict(attack=key, delta=arr(), target=arr(), delta_hat=arr())
            for key in ("raw", *appendix.FIG1_VARIANTS)}
    fig1.update(x=rng.uniform(size=(k, 28, 28, 1)).tolist(), y=[1, 2])
    (tmp_path / "appendix.json").write_text(json.dumps(dict(dtype="float64", rows=[dict(model="mlp3", fig1=fig1)])))
    appendix.plot_fig1(tmp_path / "appendix.json", tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    (tmp_path / "empty.json").write_text(json.dumps(dict(dtype="float64", rows=[])))
    with pytest.raises(ValueError, match="no Figure 1"):
        appendix.plot_fig1(tmp_path / "empty.json", tmp_path / "g.png")


# --- smoke tests: the commands end to end at the tiny scale ---------------------------------


@pytest.fixture(scope="module")
def tiny_env(data_dir, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXDYN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("MPLBACKEND", "Agg")
    yield tmp_path_factory.mktemp("out")
    mp.undo()


def _finite(v):
    return v is None or (isinstance(v, float) and np.isfinite(v)) or isinstance(v, (int, str, bool, list, dict))


def test_table1_command_tiny(tiny_env):
    out = tiny_env / "t1"
    assert cli.main(["table1", "--scale", "tiny", "--models", "mlp3", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "table1.json").read_text())
    (row,) = res["rows"]
    for k in ("model", "beta", "steps", "n_samples", "dtype", "test_accuracy", "kappa", "kappa_theorem1",
              "kappa_first_order", "kappa_free", "kappa_vs_beta", "kappa_vs_m", "paper_kappa"):
        assert k in row and _finite(row[k]), k
    assert row["dtype"] == "float64" and row["n_samples"] == table1.SCALES["tiny"]["n_samples"]
    assert 0 < row["kappa"] < 1 and 0 < row["kappa_first_order"]
    # the logit-space attack used by the grids is the network's A2 attack up to rounding
    assert row["logit_space_agreement"] < 1e-10
    # the headline column is one of the grid's β and agrees with it (two different A2 attacks)
    g = next(g for g in row["kappa_vs_beta"] if g["beta"] == row["beta"])
    np.testing.assert_allclose(g["kappa"], row["kappa"], rtol=1e-6)
    assert [c["steps"] for c in row["kappa_vs_m"]] == list(table1.SCALES["tiny"]["m_grid"])
    assert "| 3-layer MLP |" in (out / "table1.md").read_text()
    assert json.loads((out / "config.json").read_text())["scale"] == "tiny"


def test_table2_command_tiny(tiny_env):
    out = tiny_env / "t2"
    assert cli.main(["table2", "--scale", "tiny", "--models", "cnn3", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "table2.json").read_text())
    (row,) = res["rows"]
    for k in ("model", "beta", "steps", "n_samples", "dtype", "test_accuracy", "kappa_prime",
              "kappa_prime_first_order", "kappa_prime_eq10", "kappa_prime_eq11", "kappa_prime_free",
              "kappa_prime_attack", "kappa_prime_vs_beta"):
        assert k in row and _finite(row[k]), k
    assert row["first_layer_kind"] == "conv" and row["first_layer"] == "Conv_0"
    assert row["logit_space_agreement"] < 1e-10
    assert 0 < row["kappa_prime"] < 1
    assert "κ′ (Eq. 9)" in (out / "table2.md").read_text()


def test_appendix_command_tiny(tiny_env):
    out = tiny_env / "app"
    figs = tiny_env / "figs"
    assert cli.main(["appendix", "--scale", "tiny", "--models", "mlp3", "--out", str(out), "--no-progress",
                     "--figures-dir", str(figs)]) == 0
    res = json.loads((out / "appendix.json").read_text())
    (row,) = res["rows"]
    labels = {a["attack"] for a in row["appendix_d"]}
    assert labels == set(appendix.SCALES["tiny"]["variants"])
    for a in row["appendix_d"]:
        for gating in ("frozen", "free"):
            assert 0 <= a[gating]["one_minus_cos"] < 1 and 0 <= a[gating]["flip_fraction"] <= 1
    assert (figs / "fig1_perturbations.png").exists() and (out / "fig1_perturbations.png").exists()
