"""``python -m jaxdyn reproduce``: a smoke test at the tiny scale, result reuse, failure handling,
and the report's verdict rules.

The default smoke test runs the four figure stages end to end (training tiny networks into the
shared model cache); the complete run with the tables and the appendix is marked slow (their own
tiny smoke tests are in their test files), and a fast test checks that every experiment module
has the protocol (``name``, ``title``, ``Config``, ``config``, ``run``, ``plot``, ``claims``)
that ``reproduce`` and the runner call.
"""

import dataclasses
import json

import pytest

from jaxdyn.cli import app as cli
from jaxdyn.experiments import EXPERIMENTS, REPRODUCE, claims, load, reproduce, runner
from jaxdyn.experiments import report
from jaxdyn.experiments._common import QUICK_TABLE_MODELS, TABLE_MODELS

pytestmark = pytest.mark.timeout(600)

FIGURE_STAGES = ["fig5", "fig2", "fig3", "fig4"]


def test_every_experiment_has_the_protocol():
    assert list(REPRODUCE) == ["table1", "table2", "appendix", "fig5", "fig2", "fig3", "fig4"]
    assert set(REPRODUCE) <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        mod = load(name)
        for attr in ("name", "title", "Config", "SCALES", "config", "run", "plot", "claims"):
            assert hasattr(mod, attr), (name, attr)
        assert mod.name == name, name
        fields = [f.name for f in dataclasses.fields(mod.Config)]
        assert fields[0] == "scale" and ("seeds" in fields or "seed" in fields), name
        assert "tiny" in mod.SCALES and "quick" in mod.SCALES and "full" in mod.SCALES, name
        cfg = mod.config("tiny")
        assert cfg.scale == "tiny", name
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.scale = "full"


def test_reproduce_one_stage_tiny(tmp_path, data_dir):
    """The default-suite version of the test below on one cheap stage: files, merged claims,
    --figures-dir with links rewritten, reuse, and the report rebuilt from stored results."""
    out, figs = tmp_path / "out", tmp_path / "figures"
    res = reproduce.reproduce(scale="tiny", out=out, figures_dir=figs, only=["fig4"], progress=False)
    assert res["stages"]["fig4"]["status"] == "ok" and not res["stages"]["fig4"]["cached"]
    assert (out / "fig4" / "fig4.json").exists() and (figs / "fig4_dominance.png").exists()
    merged = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in merged] == [v["id"] for v in res["verdicts"]] and merged
    assert all(c["verdict"] in claims.VERDICTS and c["stage"] == "fig4" for c in merged)
    assert "](fig4/fig4_dominance.png)" in (out / "REPORT.md").read_text()
    assert "](fig4_dominance.png)" in (figs / "REPORT.md").read_text()
    again = reproduce.reproduce(scale="tiny", out=out, only=["fig4"], progress=False)
    assert again["stages"]["fig4"]["cached"] and again["verdicts"] == res["verdicts"]
    rep = reproduce.reproduce(scale="tiny", out=out, progress=False, report_only=True)
    assert rep["verdicts"] == res["verdicts"] and rep["stages"]["table1"]["status"] == "missing"
    assert res["stages"]["fig4"]["cpu_s"] > 0 and rep["stages"]["fig4"]["cpu_s"] == res["stages"]["fig4"]["cpu_s"]
    assert "| fig4 | reused |" in (out / "REPORT.md").read_text()


def test_table_models_resolve_and_fail_early(tmp_path):
    """``--table-models``: 'all' is the ten networks, a comma list is kept; a bad name fails before
    any stage runs or anything is written; the quick scale's tables run one network per family."""

    assert reproduce.resolve_table_models("all") == TABLE_MODELS
    assert reproduce.resolve_table_models(" mlp3, cnn4 ") == ("mlp3", "cnn4")
    assert reproduce.resolve_table_models(None) is None
    with pytest.raises(ValueError, match="at least one"):
        reproduce.resolve_table_models(" , ")
    for st in reproduce.TABLE_STAGES:
        assert load(st).config("quick").models == QUICK_TABLE_MODELS and load(st).config("full").models == TABLE_MODELS
    with pytest.raises(ValueError, match="vgg11"):
        reproduce.reproduce(scale="quick", out=tmp_path / "out", only=["table1"], table_models="mlp3,vgg11",
                            progress=False)
    assert not (tmp_path / "out").exists()


def test_report_stage_times():
    """The stage-time table: wall, CPU and training apart per stage, totals; missing stages shown."""

    res = dict(rows=[dict(time_s=dict(train_or_load=60.0, experiment=5.0)),
                     dict(nested=[dict(time_s=dict(train_or_load=30.0, compute=1.0))])])
    assert report.train_seconds(res) == 90.0 and report.train_seconds({"rows": []}) is None
    recs = [dict(stage="table1", status="ok", runtime_s=180.0, cpu_s=150.0, cached=False, results=res),
            dict(stage="fig2", status="ok", runtime_s=60.0, cpu_s=None, cached=True, results={}),
            dict(stage="fig3", status="failed", runtime_s=6.0)]
    lines = report.stage_times(recs)
    assert "| table1 | computed | 3.0 | 2.5 | 1.5 | 1.5 |" in lines
    assert "| fig2 | reused | 1.0 | — | — | — |" in lines and "| fig3 | failed | 0.1 | — | — | — |" in lines
    assert lines[-1] == "| **all** | | **4.0** | **—** | **1.5** | **2.5** |"


def test_report_summary_rows_follow_their_header():
    """Every claim row sits inside the Summary table; the stage-time table comes after it."""

    c = dict(id="table1.x", claim="a claim", paper="p", protocol="q", measured="m", rule="r", verdict="holds")
    recs = [dict(stage="table1", status="ok", runtime_s=60.0, cpu_s=50.0, cached=False, results={}, claims=[c])]
    text = report.render(recs, scale="tiny", seeds=(0,), total_s=60.0)
    summary = text[text.index("## Summary"):text.index("## Stage times")].strip().splitlines()
    assert summary[-1] == "1 claims: 1 holds, 0 holds partly, 0 does not hold, 0 inconclusive, 0 not testable."
    assert summary[-3].startswith("| ") and "a claim" in summary[-3] and summary[-4] == "|---|---|---|---|---|---|"


@pytest.mark.slow  # default-suite time: the four figure stages end to end (test_reproduce_one_stage_tiny by default)
def test_reproduce_figures_tiny(tmp_path, data_dir):
    out, figs = tmp_path / "out", tmp_path / "figures"
    res = reproduce.reproduce(scale="tiny", out=out, figures_dir=figs, only=FIGURE_STAGES, progress=False)
    assert all(r["status"] == "ok" and not r["cached"] for r in res["stages"].values()), res["stages"]
    for stage, png in (("fig2", "fig2_growth.png"), ("fig3", "fig3_influence.png"), ("fig4", "fig4_dominance.png"),
                       ("fig5", "fig5_oscillation.png")):
        assert (out / stage / f"{stage}.json").exists() and (out / stage / png).exists()
        assert (figs / png).exists()
        data = json.loads((out / stage / f"{stage}.json").read_text())
        assert data["verdict"] and data["scale"] == "tiny"
    text = (out / "REPORT.md").read_text()
    for title in ("Figure 2", "Figure 3", "Figure 4", "Figure 5"):
        assert title in text
    verdicts = [v["verdict"] for v in res["verdicts"]]
    # one verdict per claim of the four figures, each also in the merged claims.json beside REPORT.md
    merged = json.loads((out / "claims.json").read_text())
    assert len(verdicts) == len(merged) >= 8 and set(verdicts) <= set(claims.VERDICTS)
    assert {c["stage"] for c in merged} == set(FIGURE_STAGES)
    assert all(set(c) >= {"id", "claim", "protocol", "measured", "baselines", "controls", "rule", "verdict"}
               for c in merged)
    assert "](fig2/fig2_growth.png)" in text and "](fig2_growth.png)" in (figs / "REPORT.md").read_text()

    # a second run reuses every stage's results
    again = reproduce.reproduce(scale="tiny", out=out, only=FIGURE_STAGES, progress=False)
    assert all(r["cached"] for r in again["stages"].values())
    assert again["verdicts"] == res["verdicts"]
    # the report alone, from the stored results (the table stages never ran here: "not run")
    (out / "REPORT.md").unlink()
    rep = reproduce.reproduce(scale="tiny", out=out, progress=False, report_only=True)
    assert rep["verdicts"] == res["verdicts"] and rep["stages"]["table1"]["status"] == "missing"
    assert "Figure 5" in (out / "REPORT.md").read_text() and "**not run**" in (out / "REPORT.md").read_text()


def test_failing_stage_is_reported_and_the_command_fails(tmp_path, monkeypatch, capsys):
    mod = load("fig4")

    def boom(*args, **kw):
        raise RuntimeError("deliberate failure")

    monkeypatch.setattr(mod, "run", boom)
    assert cli.main(["reproduce", "--scale", "tiny", "--only", "fig4", "--out", str(tmp_path), "--no-progress"]) == 1
    assert [line for line in capsys.readouterr().err.splitlines() if "error:" in line] == [
        f"error: stage(s) not run or failed: fig4 (their errors are in REPORT.md and <stage>/error.txt in {tmp_path}; "
        "the same command reruns only those)"]
    text = (tmp_path / "REPORT.md").read_text()
    assert "**not run**" in text and "deliberate failure" in text
    assert "RuntimeError" in (tmp_path / "fig4" / "error.txt").read_text()
    assert json.loads((tmp_path / "reproduce.json").read_text())["stages"]["fig4"]["status"] == "failed"


def test_bad_arguments():
    with pytest.raises(ValueError):
        reproduce.reproduce(scale="huge", out="/tmp/never")
    with pytest.raises(ValueError):
        reproduce.reproduce(scale="tiny", out="/tmp/never", only=["fig9"])


def test_report_verdict_rules():
    assert claims.range_verdict([1e-6, 1e-5], 1e-4, 1e-3) == "holds"
    assert claims.range_verdict([1e-6, 5e-4], 1e-4, 1e-3) == "holds partly"
    assert claims.range_verdict([1e-2, 5e-2, 1e-5], 1e-4, 1e-3) == "does not hold"
    rows = [dict(model="a", kappa=1e-5, kappa_first_order=1e-3), dict(model="b", kappa=2e-3, kappa_first_order=1e-3)]
    old = dict(rows=rows, beta=1e-3, steps=10, n_samples=4, dtype="float64", done=dict(bound=1e-3))
    (c,) = runner.safe_claims(load("table1"), old)  # results of an earlier layout: no per-digit statistic
    assert c["verdict"] == "does not hold" and "could not read" in c["measured"]
    broken = runner.safe_claims(load("fig2"), {"unexpected": 1})
    assert broken[0]["verdict"] == "does not hold" and "could not read" in broken[0]["measured"]


@pytest.mark.slow
def test_reproduce_everything_tiny(tmp_path, data_dir):
    res = reproduce.reproduce(scale="tiny", out=tmp_path, progress=False)
    assert all(r["status"] == "ok" for r in res["stages"].values()), res["stages"]
    text = (tmp_path / "REPORT.md").read_text()
    assert "Table 1" in text and "Table 2" in text and "Appendix" in text and "**not run**" not in text
