"""The evaluation ε follows the training ε (cache keys of the presets unchanged), APGD beside PGD-40
in a trained network's info (stored beside a cached run), and ``python -m jaxdyn models``."""

import json

import jax
import pytest

from jaxdyn.cli import app as cli

from jaxdyn.core import models
from jaxdyn.training import TrainConfig, presets
from jaxdyn.training import cache as cache_mod
from jaxdyn.training import evaluation


def test_eval_eps_follows_the_training_eps():
    c = TrainConfig(model="mlp3", adv="pgd-linf", eps=0.1)
    assert c.eval_eps == 0.1
    assert TrainConfig(model="mlp3", adv="pgd-linf", eps=0.1, n_eval_robust=0).eval_eps == 0.3
    assert TrainConfig(model="mlp3", adv="pgd-linf", eps=0.1, eval_eps=0.2).eval_eps == 0.2
    assert TrainConfig(model="mlp3", adv="pgd-l2", eps=2.0).eval_eps == 0.3  # l2 training, linf evaluation
    assert TrainConfig(model="mlp3").eval_eps == 0.3
    assert TrainConfig.from_dict(c.to_dict()) == c
    # 0.3 is left out of the hash (the former default): a config evaluated at 0.3 keeps its key
    assert TrainConfig(model="mlp3", eval_eps=0.3).hash() == TrainConfig(model="mlp3").hash()
    assert TrainConfig(model="mlp3", adv="pgd-linf", eps=0.1, eval_eps=0.3).hash() != c.hash()


@pytest.mark.parametrize("preset, kw, want", [
    # the keys these configs had before eval_eps could follow eps (computed on the earlier code)
    ("quick", dict(model="mlp3", adv="pgd-linf"), "74dd90178ee1e462178c94325e3a905f86daaca5a9529a0ed0d144de0c13ebf6"),
    ("quick", dict(model="mlp3", adv="pgd-linf", binary=(3, 5)),
     "088393987fb6d643b69a3b3c82644aeec41ff401047a168be0781ffedb53dc33"),
    # Fig. 5's quick adversarial preset changed on purpose (lr 1e-3, 2 PGD steps, 10k digits, batches
    # of 64: the earlier one left VGG-11 below the accuracy floor); these are its keys since then
    ("fig5-adv", dict(model="mlp3"), "5857fd5e5b42ded7c4cc3725825903e0f9c1d2ce0f764648b59a581fb243fb7f"),
    ("fig5-adv", dict(model="cnn3"), "59324d8df7391e2e0acb7978cf37ec27087d48b5f36b7cb9704b46b2b32e70a0"),
])
def test_preset_cache_keys_unchanged(preset, kw, want):
    kw = dict(kw, scale="quick")
    if preset == "quick":
        cfg = TrainConfig(model=kw["model"], **presets.quick_config(kw["model"], adv=kw["adv"],
                                                                     binary=kw.get("binary")))
    else:
        cfg = TrainConfig(model=kw["model"], **presets.get(preset, model=kw["model"], scale="quick"))
    assert cfg.hash() == want


def test_apgd_stored_beside_a_cached_run_and_computed_once(tmp_path, data_dir, monkeypatch):
    cfg = TrainConfig(model="mlp3", width=1 / 32, adv="pgd-linf", eps=0.1, n_eval_robust=8)
    calls = []

    def fake(cfg_, model, variables, xr, yr, pgd):
        calls.append((len(xr), pgd))
        return {"robust_accuracy_apgd": 0.25}

    monkeypatch.setattr(evaluation, "apgd_evaluation", fake)
    for _ in range(2):
        info = cache_mod.with_apgd(tmp_path, cfg, None, None, {"robust_accuracy": 0.5}, data_dir)
        assert info == {"robust_accuracy": 0.5, "robust_accuracy_apgd": 0.25}
    assert calls == [(8, 0.5)] and (tmp_path / cache_mod.APGD_FILE).exists()
    # in info.json already (trained since APGD was added), standard training, no robust evaluation: nothing to do
    have = {"robust_accuracy": 0.5, "robust_accuracy_apgd": 0.5}
    assert cache_mod.with_apgd(tmp_path / "x", cfg, None, None, have, data_dir) == have
    plain = TrainConfig(model="mlp3", width=1 / 32)
    assert cache_mod.with_apgd(tmp_path / "x", plain, None, None, {"robust_accuracy": 0.0}) == {"robust_accuracy": 0.0}
    assert len(calls) == 1


@pytest.mark.slow
def test_apgd_beside_pgd_computed_once_and_stored_beside(tmp_path, data_dir, monkeypatch):
    cfg = TrainConfig(model="mlp3", width=1 / 32, adv="pgd-linf", eps=0.1, n_eval_robust=8)
    model = models.get_model("mlp3", num_classes=10, width=1 / 32)
    variables = models.init_variables(model, jax.random.key(0))
    monkeypatch.setattr(evaluation, "APGD_STEPS", 5)
    info = cache_mod.with_apgd(tmp_path, cfg, model, variables, {"robust_accuracy": 1.0}, data_dir)
    assert 0 <= info["robust_accuracy_apgd"] <= 1 and info["robust_eval_apgd"]["eps"] == 0.1
    assert info["robust_eval_apgd"]["losses"] == ["apgd-ce", "apgd-dlr"] and info["robust_eval_apgd"]["n"] == 8
    gm = info["gradient_masking"]
    assert gm["gap"] == pytest.approx(1.0 - info["robust_accuracy_apgd"])
    assert gm["flag"] == (gm["gap"] > evaluation.MASKING_GAP)
    assert "APGD" in evaluation.summary_line(dict(info, model="mlp3", test_accuracy=0.5, robust_eval={
        "attack": "pgd-linf", "steps": 40, "eps": 0.1}))

    def boom(*a, **k):
        raise AssertionError("stored beside: not computed again")

    monkeypatch.setattr(evaluation, "apgd_evaluation", boom)
    again = cache_mod.with_apgd(tmp_path, cfg, model, variables, {"robust_accuracy": 1.0}, data_dir)
    assert again["robust_accuracy_apgd"] == info["robust_accuracy_apgd"]
    # standard training, or no robust evaluation: nothing added
    plain = TrainConfig(model="mlp3", width=1 / 32)
    assert cache_mod.with_apgd(tmp_path, plain, model, variables, {"robust_accuracy": 0.0}) == {"robust_accuracy": 0.0}


def _fake_run(d, cfg: TrainConfig, **info):
    d.mkdir(parents=True)
    (d / "info.json").write_text(json.dumps(dict(model=cfg.model, config=cfg.to_dict(), **info)))
    (d / "final.msgpack").write_bytes(b"")


def test_models_command_lists_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    adv = TrainConfig(model="mlp3", adv="pgd-linf", eps=0.1, binary=(3, 5))
    _fake_run(cache / adv.run_name(), adv, test_accuracy=0.9, robust_accuracy=0.6,
              robust_eval={"attack": "pgd-linf", "eps": 0.1, "steps": 40})
    (cache / adv.run_name() / "apgd.json").write_text(json.dumps(
        {"robust_accuracy_apgd": 0.5, "gradient_masking": {"gap": 0.1, "threshold": 0.05, "flag": True}}))
    std = TrainConfig(model="cnn3", width=0.5)
    _fake_run(cache / std.run_name(), std, test_accuracy=0.98)
    (cache / "not-a-run").mkdir()
    assert cli.main(["models", "--cache-dir", str(cache), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in recs] == sorted([adv.run_name(), std.run_name()])
    a = next(r for r in recs if r["name"] == adv.run_name())
    assert a["robust_accuracy"] == 0.6 and a["robust_accuracy_apgd"] == 0.5 and a["status"] == "finished"
    assert "binary 3v5" in a["summary"] and "eps=0.1" in a["summary"]
    assert cli.main(["models", "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "POSSIBLE GRADIENT MASKING" in text and "APGD 0.5000" in text and "eps=0.1" in text
    assert not (tmp_path / "results").exists()  # a listing writes nothing
    assert cli.main(["models", "--cache-dir", str(tmp_path / "empty")]) == 0
    assert "no trained networks" in capsys.readouterr().out
