"""The device check (``python -m benchmarks.device``): the plan, the runner's budget/timeout/failure handling and
the summary (fast, no jax: the items are tiny Python one-liners), and the whole ``--tiny`` run on the
CPU end to end (slow)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxdyn.experiments import REPRODUCE

from benchmarks import projection as pj
from benchmarks.device import plan, report, run
from benchmarks.device.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def _args(tmp_path, *extra, data=True):
    """The parsed arguments :func:`plan` reads."""
    p = argparse.Namespace(out=(tmp_path / "out").resolve(), tiny="--tiny" in extra,
                              data_dir=tmp_path if data else None, work_dir=tmp_path / "work",
                              train_steps=200, only=None)
    return p


def test_plan_covers_every_item_and_sizes(tmp_path):
    names = [it["name"] for it in plan.plan(_args(tmp_path))]
    exp = [plan.exp_item_name(st) for st in plan.EXP_PIECES]
    assert names == ["env", *(b[0] for b in plan.BENCH_GPU), *(f"train_{k}" for k in plan.SLICES), *exp]
    # every reproduce stage has a piece, the first run's item name is kept; a piece that trains a
    # network runs before the piece that loads it, Table 1 (measured in the first run) last
    assert sorted(plan.EXP_PIECES) == sorted(REPRODUCE) and "exp_table1_cnn3" in exp
    assert set(plan.EXP_SCALING) == set(REPRODUCE)
    order = list(plan.EXP_PIECES)
    assert order[-1] == "table1" and order.index("appendix") < order.index("table1")
    assert order.index("fig5") < order.index("fig2") and order.index("fig3") < order.index("fig4")
    gpu = {it["name"]: it for it in plan.plan(_args(tmp_path))}
    tiny = {it["name"]: it for it in plan.plan(_args(tmp_path, "--tiny"))}
    assert "--tiny" in tiny["bench_theorem2"]["argv"] and "--tiny" not in gpu["bench_theorem2"]["argv"]
    assert "1024" in gpu["bench_theorem2"]["argv"]
    # every item runs as `python -m` from the repository root: a benchmark's module, the check's own bodies
    assert gpu["bench_theorem2"]["argv"][1:3] == ["-m", "benchmarks.theorem2"]
    assert gpu["train_table1_cnn3"]["argv"][1:4] == ["-m", "benchmarks.device", "--_train"]
    assert "full" in gpu["train_table1_cnn3"]["argv"] and "tiny" in tiny["train_table1_cnn3"]["argv"]
    present = (REPO / "benchmarks" / "adv_training.py").exists()
    assert gpu["bench_adv_training"]["skip"] == (None if present else "not present")
    # every result lands in --out
    assert all(str(it["json"]).startswith(str(tmp_path / "out")) for it in gpu.values())
    # without MNIST the slices and the experiment are skipped (the benchmarks use random images)
    nodata = {it["name"]: it for it in plan.plan(_args(tmp_path, data=False))}
    assert nodata["train_table1_cnn3"]["skip"].startswith("skipped: no MNIST")
    assert all(nodata[n]["skip"] for n in exp) and all("--_experiment" in gpu[n]["argv"] for n in exp)
    assert nodata["bench_theorem2"]["skip"] is None
    # the GPU plan's timeouts alone would overrun 9 minutes: the budget has to cut them
    assert sum(it["timeout_s"] for it in gpu.values()) > 540


def _item(tmp_path, name, code, timeout_s=30, min_s=0):
    js = tmp_path / "out" / f"{name}.json"
    return dict(name=name, argv=[sys.executable, "-c", code.replace("JSON", repr(str(js)))],
                timeout_s=timeout_s, min_s=min_s, json=str(js), skip=None)


def test_runner_failure_timeout_and_budget_do_not_stop_the_others(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write = "import json; json.dump({'models': {'mlp3': {'speedup': 2.5, 'runs_s': [1]}}}, open(JSON, 'w'))"
    items = [
        _item(tmp_path, "fails", "import sys; sys.exit(3)"),
        _item(tmp_path, "hangs", "import time; time.sleep(60)", timeout_s=1.0),
        _item(tmp_path, "no_json", "pass"),
        _item(tmp_path, "ok", write),
        dict(_item(tmp_path, "absent", "pass"), skip="not present"),
        _item(tmp_path, "cut", "import time; time.sleep(60)", timeout_s=100),  # cut to what is left
        _item(tmp_path, "late", write, min_s=50),
    ]
    (out / "no_json.json").write_text("{}")  # left by an earlier run
    t0 = time.monotonic()
    recs = {r["name"]: r for r in run.run_items(items, out, budget_s=5, reserve_s=0)}
    took = time.monotonic() - t0
    assert recs["fails"]["status"].startswith("failed (exit 3)")
    assert recs["hangs"]["status"].startswith("timeout after") and recs["hangs"]["time_s"] < 10
    assert recs["no_json"]["status"] == "failed: no JSON written"
    assert recs["ok"]["status"] == "ok" and recs["ok"]["key_numbers"] == {"models.mlp3.speedup": 2.5}
    assert recs["absent"]["status"] == "not present"
    assert recs["cut"]["status"].startswith("timeout after") and recs["cut"]["timeout_s"] < 5
    assert recs["late"]["status"].startswith("skipped: budget spent")
    assert took < 5 + 5  # never past the budget (plus process start-up slack)
    assert (out / "logs" / "fails.log").exists()


def test_summary_json_and_markdown(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "env.json").write_text(json.dumps(dict(device_kind="NVIDIA H100", devices=["cuda:0"], backend="gpu",
                                                  versions={"jax": "x"}, tfds_imported=False)))
    recs = [dict(name="bench_x", status="ok", time_s=1.0, key_numbers={"speedup": 3.0}),
            dict(name="bench_y", status="timeout after 5 s", time_s=5.0, key_numbers={})]
    args = argparse.Namespace(tiny=False, budget_s=540.0, data_dir=None, train_steps=200)
    s = report.write_summary(out, recs, args, 6.0)
    assert json.loads((out / "device_check.json").read_text())["device"] == "NVIDIA H100" == s["device"]
    md = (out / "device_check.md").read_text()
    assert "NVIDIA H100" in md and "| bench_x | ok | 1.0 | speedup = 3 |" in md and "timeout after 5 s" in md


def test_projection_from_a_folder(tmp_path):
    """Training × networks plus each stage's projected measurement; a part without JSON is reported
    missing and left out of the total, never counted as zero time; --weight replaces the count."""
    (tmp_path / "train_table1_cnn3.json").write_text(json.dumps(dict(
        model="cnn3", projected_full_train_s=30.0, steps_done=200, steps_per_s=500.0, full_steps=4680, device="GPU X")))
    (tmp_path / "exp_table1_cnn3.json").write_text(json.dumps(dict(
        experiment="table1", model="cnn3", experiment_time_s=40.0, n_samples=250, n_samples_full_scale=1000,
        networks_full_scale=["mlp3", "cnn3"], projected_per_network_s=160.0, projected_full_scale_measure_s=320.0,
        scaling="digits × networks", device="GPU X")))
    nets = {"train_table1_cnn3": ["cnn3", "mlp3", "mlp4"], "train_fig5_alexnet_adv": ["alexnet", "vgg11"]}
    p = pj.project(tmp_path, networks=nets)
    by = {r["part"]: r for r in p["rows"]}
    assert by["train_table1_cnn3"]["projected_s"] == 90.0 and by["table1"]["projected_s"] == 320.0
    assert p["total_s"] == 410.0 and p["device"] == "GPU X"
    assert "train_fig5_alexnet_adv" in p["missing"] and "fig2" in p["missing"] and "table1" not in p["missing"]
    w = pj.project(tmp_path, weights={"table1": 16, "train_table1_cnn3": 13.8}, networks=nets)
    assert {r["part"]: r["projected_s"] for r in w["rows"]}["table1"] == 160.0 * 16
    md = pj.markdown(p)
    assert "not measured" in md and "Total: 7 min" in md
    assert "cnn3, mlp3, mlp4" in md
    with pytest.raises(SystemExit):
        pj.main([str(tmp_path), "--weight", "nope=2"])
    pj.main([str(tmp_path)])  # the real network lists: the full run trains the ten table networks once
    from jaxdyn.experiments._common.tables import TABLE_MODELS  # noqa: PLC0415 (a stage's own table, here only)

    rows = {r["part"]: r for r in json.loads((tmp_path / "projection.json").read_text())["rows"]}
    assert rows["train_table1_cnn3"]["networks"] == sorted(TABLE_MODELS) and (tmp_path / "projection.md").exists()
    assert rows["train_table1_cnn3"]["projected_s"] == 300.0


def test_sum_key_adds_every_training():
    from benchmarks.device import items  # noqa: PLC0415 (imports jax; the other tests here do not need it)

    res = dict(models=dict(a=dict(instability=dict(standard=dict(time_s=dict(train_or_load=2.0, compute=9.0)),
                                                   adversarial=dict(time_s=dict(train_or_load=3.0)))),
                           b=[dict(time_s=dict(train_or_load=1.5))]))
    assert items.sum_key(res, "train_or_load") == 6.5


def test_key_numbers_skips_machine_and_raw_runs():
    res = dict(machine=dict(speedup=1), config=dict(ratio=2),
               rows=[dict(model="cnn3", kappa=0.1, runs_s=[1, 2])], steps_per_s=5.0, other=1)
    assert report.key_numbers(res) == {"rows[cnn3].kappa": 0.1, "steps_per_s": 5.0}


def test_bad_arguments_fail_early(tmp_path):
    with pytest.raises(SystemExit):
        main(["--budget-s", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--train-steps", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--only", "bench_nope", "--out", str(tmp_path), "--dry-run"])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(6000)
def test_tiny_run_end_to_end(tmp_path, data_dir):
    """The whole ``--tiny`` check on the CPU (19 min wall, 3 min CPU on one core shared with other
    jobs, 2026-11-26): every item runs (or is
    absent), the slices time their steps and project the full run, nothing imports tfds, the
    scratch is removed and nothing is written outside ``--out``."""
    out = tmp_path / "dc"
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]]
                                                                    if os.environ.get("PYTHONPATH") else [])))
    subprocess.run([sys.executable, "-m", "benchmarks.device", "--tiny", "--out", str(out), "--data-dir", data_dir,
                    "--budget-s", "5400"], cwd=tmp_path, env=env, check=True, timeout=5600)
    s = json.loads((out / "device_check.json").read_text())
    status = {r["name"]: r["status"] for r in s["items"]}
    allowed = {"ok", "not present"}
    assert set(status.values()) <= allowed, status
    assert s["tfds_imported"] is False and s["device"]
    for key in plan.SLICES:
        t = json.loads((out / f"train_{key}.json").read_text())
        assert t["steps_per_s"] > 0 and t["projected_full_train_s"] > 0 and t["tfds_imported"] is False
        assert 0 <= t["test_accuracy"] <= 1
    e = json.loads((out / "exp_table1_cnn3.json").read_text())
    assert e["kappa"] is not None and e["claims"]
    for st in plan.EXP_PIECES:  # every stage's piece ran its real code and projected its cost
        e = json.loads((out / f"{plan.exp_item_name(st)}.json").read_text())
        assert e["experiment"] == st and e["claims"] and e["experiment_time_s"] > 0
        assert e["projected_full_scale_measure_s"] >= e["experiment_time_s"] and e["tfds_imported"] is False
    assert json.loads((out / "projection.json").read_text())["missing"] == []
    assert not (out / "_work").exists()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    assert after == before


def test_experiment_pieces_resolve_at_full_scale():
    """Every piece's overrides are fields of its stage's ``Config`` and pass its checks, at the full
    scale: one network, whole chunks of digits, a brief training without robust evaluation."""
    for stage, (keys, n, _) in plan.EXP_PIECES.items():
        mod, cfg, f = plan.experiment_config(stage, "full", 200)
        assert cfg.scale == "full" and cfg.models == (plan.SLICES[keys[0]][1],) and cfg.n_samples == n
        chunk = getattr(cfg, "chunk", None)
        assert chunk is None or n % chunk == 0, (stage, n, chunk)  # whole chunks
        assert f["n_samples_full_scale"] == mod.SCALES["full"]["n_samples"] > n
        train = cfg.train_overrides if "train_overrides" in mod.SCALES["full"] else cfg.train
        assert train["epochs"] == 1 and train["n_eval_robust"] == 0 and train["n_train"] < 60_000
        for k, v in mod.SCALES["full"].items():  # nothing else differs from the full scale
            if k not in ("models", "n_samples", "train", "train_overrides", "adv_train"):
                assert getattr(cfg, k) == v, (stage, k)
