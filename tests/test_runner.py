"""``jaxdyn.experiments.runner.execute`` on a tiny fake experiment (no jax, no training): the files
it writes, reuse of the same config, refusal to replace another config without ``force``, and
the "could not read" claim for results a ``claims`` function cannot evaluate. Also the protocol
example of ``docs/design.md``, executed."""

import dataclasses
import json
import re
import types
from pathlib import Path

import pytest

from jaxdyn.experiments import _common, runner
from jaxdyn.experiments.claims import VERDICTS, claim


def _fake(calls):
    @dataclasses.dataclass(frozen=True)
    class Config:
        scale: str
        n: int = 3
        seed: int = 0

    def run(cfg, out, progress=True):
        calls.append(cfg)
        return {"values": list(range(cfg.n))}

    def plot(results, out):
        (Path(out) / "fake.md").write_text(f"{results['values']}\n")

    def claims(results):
        ok = len(results["values"]) == results["config"]["n"]
        n = len(results["values"])
        return [claim("fake.n", "n values", paper="—", protocol="fake", measured=str(results["values"]),
                      rule="holds: n values", verdict="holds" if ok else "does not hold",
                      statistic=dict(name="n", value=n, ci=[n, n], n_digits=n, n_seeds=1),
                      per_seed=[dict(seed=0, value=n, verdict="holds" if ok else "does not hold")],
                      cause=None if ok else f"{n} values, not {results['config']['n']}")]

    mod = types.ModuleType("fake")
    mod.name, mod.title, mod.Config = "fake-exp", "Fake", Config
    mod.SCALES = {"tiny": {}, "quick": {"n": 5}}
    mod.config = lambda scale="quick", **kw: _common.make_config(Config, mod.SCALES, scale, kw)
    mod.run, mod.plot, mod.claims = run, plot, claims
    return mod


def test_execute_writes_reuses_and_refuses_to_overwrite(tmp_path):
    calls = []
    exp = _fake(calls)
    rec = runner.execute(exp, exp.config("tiny"), tmp_path, progress=False)
    assert not rec["cached"] and len(calls) == 1
    for f in ("config.json", "fake_exp.json", "claims.json", "run.json", "fake.md"):
        assert (tmp_path / f).exists(), f
    assert json.loads((tmp_path / "config.json").read_text()) == {"scale": "tiny", "n": 3, "seed": 0}
    res = json.loads((tmp_path / "fake_exp.json").read_text())
    assert res["verdict"] == {"fake.n": "holds"} and res["scale"] == "tiny" and res["values"] == [0, 1, 2]
    assert json.loads((tmp_path / "claims.json").read_text())[0]["verdict"] == "holds"
    assert oct((tmp_path / "claims.json").stat().st_mode & 0o777) == oct(0o644)

    again = runner.execute(exp, exp.config("tiny"), tmp_path, progress=False)
    assert again["cached"] and len(calls) == 1 and again["claims"] == rec["claims"]
    with pytest.raises(ValueError, match="--force"):
        runner.execute(exp, exp.config("tiny", n=4), tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["n"] == 3  # untouched
    forced = runner.execute(exp, exp.config("tiny", n=4), tmp_path, progress=False, force=True)
    assert not forced["cached"] and len(calls) == 2 and forced["results"]["values"] == [0, 1, 2, 3]


def test_config_rejects_unknown_fields_and_scales():
    exp = _fake([])
    with pytest.raises(ValueError, match="unknown config field"):
        exp.config("tiny", nope=1)
    with pytest.raises(ValueError, match="scale must be one of"):
        exp.config("full")
    cfg = exp.config("quick", n=None)  # an unset flag keeps the preset
    assert cfg.n == 5 and dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 1


def test_unreadable_results_give_a_failing_claim():
    exp = _fake([])
    (c,) = runner.safe_claims(exp, {"unexpected": 1})
    assert c["verdict"] == "does not hold" and "could not read" in c["measured"]
    assert set(c) == {"id", "claim", "paper", "protocol", "measured", "baselines", "controls", "rule", "verdict",
                      "statistic", "per_seed", "cause"}
    assert c["statistic"]["n_digits"] == 0 and c["per_seed"] == [] and "could not read" in c["cause"]


def test_unwritable_out_fails_before_any_work(tmp_path):
    calls = []
    exp = _fake(calls)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot write"):
        runner.execute(exp, exp.config("tiny"), blocker / "sub", progress=False)
    assert calls == []


def test_design_doc_example_follows_the_protocol():
    text = (Path(__file__).parents[1] / "docs" / "design.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Experiments"):], re.S).group(1)
    assert len(code.strip().splitlines()) <= 45
    mod = types.ModuleType("gradnorm")
    exec(compile(code, "design.md", "exec"), mod.__dict__)
    cfg = mod.config("tiny")
    assert cfg.n_samples == 4 and cfg.scale == "tiny"
    fake = {"norms": [0.5, 1.0], "config": {"model": "mlp3"}}
    assert [c["verdict"] for c in mod.claims(fake)] == ["holds"]
    assert [c["verdict"] for c in mod.claims(dict(fake, norms=[0.0, 0.0]))] == ["does not hold"]
    assert mod.claims(fake)[0]["verdict"] in VERDICTS


def test_a_failed_run_keeps_its_pieces_and_a_rerun_resumes(tmp_path):
    """Kill-resume at the protocol level: pieces finished before a failure are kept; a rerun of the
    same config recomputes only the missing ones; a different config discards them (with --force)."""
    calls = []
    exp = _fake(calls)
    computed = []

    def run(cfg, out, progress=True):
        pieces = runner.Pieces(out)
        vals = []
        for i in range(cfg.n):
            if i == 2 and len(computed) < 3 and not calls:
                calls.append("failed")
                raise RuntimeError("killed")
            vals.append(pieces.get(f"item{i}", lambda i=i: computed.append(i) or i * 10))
        return {"values": vals}

    exp.run = run
    with pytest.raises(RuntimeError):
        runner.execute(exp, exp.config("quick"), tmp_path, progress=False)
    assert computed == [0, 1] and runner.Pieces(tmp_path).done() == ["item0", "item1"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    rec = runner.execute(exp, exp.config("quick"), tmp_path, progress=False)
    assert computed == [0, 1, 2, 3, 4] and rec["results"]["values"] == [0, 10, 20, 30, 40]
    assert runner.Pieces(tmp_path).done() == []  # folded into the results
    # pieces of an unfinished run of another config are not mixed in
    (tmp_path / "fake_exp.json").unlink()
    runner.Pieces(tmp_path).get("item0", lambda: -1)
    with pytest.raises(ValueError, match="--force"):
        runner.execute(exp, exp.config("quick", n=2), tmp_path, progress=False)
    rec = runner.execute(exp, exp.config("quick", n=2), tmp_path, progress=False, force=True)
    assert rec["results"]["values"] == [0, 10]
