"""The experiments' shared toolbox (``jaxdyn.experiments._common``): number formats, Markdown
tables, chunked per-sample work, config checks and the tables' "done" criterion."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.experiments import _common as C


def test_fmt_and_md_table():
    assert C.fmt_sci(1.5e-5) == "1.5×10⁻⁵"
    assert C.fmt_sci(9.96e-3) == "1.0×10⁻²"
    assert C.fmt_sci(None) == "—" and C.fmt_sci(float("nan")) == "—" and C.fmt_sci(0.0) == "0"
    assert C.md_table(["a", "b"], [["1", "2"]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_chunked_pads_and_compiles_once():
    traces = []

    @jax.jit
    def fn(v, x, y, s):
        traces.append(1)
        return dict(a=x * s + v, b=y)

    x = np.arange(5 * 3, dtype=np.float64).reshape(5, 3)
    y = np.arange(5)
    s = jnp.asarray(2.0)
    out = C.chunked(lambda xb, yb: fn(1.0, xb, yb, s), x, y, chunk=2)
    np.testing.assert_array_equal(out["a"], 2 * x + 1)
    np.testing.assert_array_equal(out["b"], y)
    assert len(traces) == 1


def test_done_criterion():
    rows = [dict(model="a", kappa=1e-5, kappa_first_order=1e-3), dict(model="b", kappa=2e-3, kappa_first_order=1e-3)]
    v = C.done_criterion(rows, key="kappa", base="kappa_first_order")
    assert not v["all_below_bound"] and not v["all_below_first_order"]
    assert v["below_bound"] == {"a": True, "b": False}
    one = C.done_criterion(rows[:1], key="kappa", base="kappa_first_order")
    assert one["all_below_bound"] and one["all_below_first_order"]


def test_check_fields_and_table_models():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        beta: float = 1e-3
        betas: tuple = (1e-3, 1.0)
        steps: int = 10
        grid: tuple = (1, 2)

    C.check_fields(Cfg(), positive=("beta", "betas"), counts=("steps", "grid"))
    for bad, field in ((dict(beta=0.0), "beta"), (dict(betas=(1.0, float("nan"))), "betas"),
                       (dict(steps=0), "steps"), (dict(grid=(1, 2.5)), "grid")):
        with pytest.raises(ValueError, match=field):
            C.check_fields(Cfg(**bad), positive=("beta", "betas"), counts=("steps", "grid"))
    assert C.check_table_models(["mlp3"], "quick", what="Table 1") == ("mlp3",)
    with pytest.raises(ValueError, match="unknown Table 1 model"):
        C.check_table_models(["two_layer"], "quick", what="Table 1")
    assert C.check_table_models(["two_layer"], "tiny", what="Table 1") == ("two_layer",)  # any zoo model
    with pytest.raises(ValueError, match="unknown Table 1 model"):
        C.check_table_models(["nope"], "tiny", what="Table 1")
