"""Figure 5: the per-layer instability on a small random-init network, the sharpness tracker,
the protocol and the verdict rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.experiments import fig5
from jaxdyn.models import get_model, logits_fn

from tests.helpers import check_protocol, digits, zoo_net

pytestmark = pytest.mark.timeout(300)


def _results(inst, sharp):
    return dict(dtype="float64", dtype_sharpness="float32", models={m: {"instability": d} for m, d in inst.items()},
                sharpness_summary=sharp, config=fig5.SCALES["tiny"] | {"scale": "tiny"})


def test_fig5_instability_shapes_and_verdict():
    model, v = zoo_net("cnn3", num_classes=10, width=1 / 16)
    x = digits(2, seed=2)
    y = jnp.argmax(jax.vmap(logits_fn(model, v))(x), axis=1)
    res = fig5.instability(model, v, x, y, eta=1e-3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=2), key=jax.random.key(0))
    assert res["layers"] == ["Conv_0", "Conv_1", "head"]
    assert res["ori"].shape == (2, 3) and np.all(res["ori"] > 0) and np.all(res["adv"] > 0)
    assert np.all(res["delta_linf"] <= 0.1 + 1e-12)
    s = fig5.summarize_instability(res)
    assert s["n_layers"] == 3 and 0 <= s["layers_adv_greater"] <= 3
    c5 = fig5.claims(_results({"cnn3": {"standard": s}}, {}))
    assert f"/3)" in c5[0]["rule"] and c5[1]["verdict"] == "does not hold"


def test_sharpness_tracker_records_on_schedule(tmp_path, data_dir):
    """The callback computes λ_max only on its schedule and its records survive in the log."""
    from jaxdyn.training import TrainConfig, create_state, make_optimizer

    cfg = TrainConfig(model="mlp3", width=1 / 64, n_train=64, batch_size=16, epochs=1, n_eval_robust=0)
    model = get_model("mlp3", width=1 / 64)
    tr = fig5.SharpnessTracker(points=2, probe=8, iters=3, pgd_cfg=dict(eps=0.1, alpha=0.05, steps=1))
    tr.start(model, cfg, tmp_path)
    assert tr.schedule == [1, 4]
    state = create_state(model, make_optimizer(cfg), jax.random.key(0))
    for step in (1, 2, 4):
        tr.callback(step, state, jnp.float32(0.5))
    recs = tr.records(tmp_path)
    assert [r["step"] for r in recs] == [1, 4]
    assert all(np.isfinite(r["lambda_clean"]) and np.isfinite(r["lambda_adv"]) for r in recs)
    # the same parameters and batch: the same power iteration result
    assert recs[0]["lambda_clean"] == pytest.approx(recs[1]["lambda_clean"], rel=1e-5)


def test_fig5_protocol():
    check_protocol(fig5, "fig5")
    with pytest.raises(ValueError, match="normalizer"):
        fig5.config("tiny", normalizer="rows")
    with pytest.raises(ValueError, match="pgd"):
        fig5.config("tiny", pgd={"eps": 0.1})


def test_fig5_claims_hold_and_do_not_hold():
    def layer(ori, adv):
        ori, adv = np.asarray(ori, float), np.asarray(adv, float)
        return dict(layers=[f"l{j}" for j in range(len(ori))], mean_ori=ori.tolist(), mean_adv=adv.tolist(),
                    ratio=(adv / ori).tolist(), layers_adv_greater=int(np.sum(adv > ori)), n_layers=len(ori),
                    test_accuracy=0.9)

    def sharp(r):
        return {"lambda_standard_end": 1.0, "lambda_adversarial_end": r, "ratio_end": r, "mean_ratio_along": r}

    up = fig5.claims(_results({"a": {"standard": layer([1, 1, 1], [2, 2, 2])}}, {"a": sharp(3.0)}))
    assert [c["id"] for c in up] == ["fig5.instability", "fig5.sharpness"]
    assert [c["verdict"] for c in up] == ["holds", "holds"]
    down = fig5.claims(_results({"a": {"standard": layer([2, 2, 2], [1, 1, 3])}}, {"a": sharp(0.5)}))
    assert [c["verdict"] for c in down] == ["does not hold", "does not hold"]
    half = fig5.claims(_results({"a": {"standard": layer([1, 1], [2, 0.5])}}, {"a": sharp(2.0), "b": sharp(0.5)}))
    assert [c["verdict"] for c in half] == ["holds partly", "holds partly"]
