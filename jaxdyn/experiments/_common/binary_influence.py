"""What Figures 3 and 4 share: the binary, adversarially trained networks and the digits they
measure (one config, so both figures measure the same networks on the same digits); the
measurement itself is :func:`jaxdyn.analyses.influence_measure.binary_influence`."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

from jaxdyn.analyses.influence_measure import binary_influence, first_layer_size
from jaxdyn.experiments._common.core import (FIGURE_ADV_BINARY, NetworksConfig, by_piece, correct_subset, fixed_digits,
                                             load_model, train_summary)
from jaxdyn.experiments._common.core import help_field as _help
from jaxdyn.experiments._common.fields import check_keys
from jaxdyn.experiments.claims import ACCURACY_FLOOR

__all__ = ["BinaryInfluenceConfig", "BINARY_INFLUENCE_SCALES", "binary_influence_runs"]


@dataclasses.dataclass(frozen=True)
class BinaryInfluenceConfig(NetworksConfig):
    """The knobs Figs. 3 and 4 share (their ``Config`` adds its own after these): binary (3 vs 5)
    networks, ℓ∞-PGD adversarially trained (``train`` has ``binary``), ``n_samples`` correctly
    classified training digits each."""

    width: float = _help("width multiplier of the networks")
    widths: Any = _help("per-model width overriding --width (JSON dict)")
    steps: int = _help("steps m of the raw attack (α = β/m)")
    A0: float = _help("β is set so that the median clean-input A = β H_z ||g̃_x||² is A0")
    eta: float = _help("learning rate η of Δg̃_x = -η Δg_W g̃_h (scales φ only)")
    chunk: Optional[int] = _help("samples per compiled call (bounds memory; none: all at once)")
    accuracy_floor: float = _help("test accuracy below which a network counts as collapsed: its tests are "
                                  "'not testable' (claims only)")

    def check(self) -> None:
        """``ValueError`` for a bad value of the shared knobs."""
        for k in ("width", "n_samples", "steps", "A0", "eta", "chunk"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ValueError(f"{k} must be > 0, got {v}")
        if not 0 <= self.accuracy_floor < 1:
            raise ValueError(f"accuracy_floor must lie in [0, 1), got {self.accuracy_floor}")
        if not (isinstance(self.widths, dict) and isinstance(self.train, dict) and "binary" in self.train):
            raise ValueError("widths must be a dict, and train a dict of load_or_train arguments with 'binary'")
        check_keys("widths", self.widths, self.models)  # a width for a network not measured is a typo
        for k, w in self.widths.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                raise ValueError(f"widths: the width of {k} must be a number > 0, got {w!r}")


_BINARY_BASE = dict(models=("alexnet", "vgg11", "resnet50"), A0=1.0, eta=1e-3, seeds=(0,),
                    accuracy_floor=ACCURACY_FLOOR)
#: the presets of :class:`BinaryInfluenceConfig` per scale: Figs. 3 and 4 measure the same networks
#: on the same digits
BINARY_INFLUENCE_SCALES = {
    "tiny": dict(_BINARY_BASE, models=("cnn3",), width=1 / 16, widths={}, n_samples=12, steps=5, chunk=None,
                 train=FIGURE_ADV_BINARY["tiny"]),
    # quick: ResNet-18 stands in for ResNet-50 (the full scale keeps ResNet-50): on one CPU core the
    # ResNet-50's training and compiles alone took ~7 min, and at width 0.0625 it reached 0.71 test
    # accuracy against ResNet-18's 0.92 at width 0.125 (docs/performance.md, "reproduce --quick")
    "quick": dict(_BINARY_BASE, models=("alexnet", "vgg11", "resnet18"), width=0.125, widths={}, n_samples=60,
                  steps=20, chunk=None, train=FIGURE_ADV_BINARY["quick"]),
    "full": dict(_BINARY_BASE, width=1.0, widths={}, n_samples=1000, steps=100, chunk=50,
                 train=FIGURE_ADV_BINARY["full"]),
}


def binary_influence_runs(cfg: BinaryInfluenceConfig, entry: Callable, *, progress: bool, desc: str, out=None,
                          betas_A0: Sequence[float] = ()) -> dict:
    """Figs. 3-4's measurement, network by network: train or load (cached) each of ``cfg.models``,
    take ``cfg.n_samples`` correctly classified training digits of the binary task (a seeded pool)
    and measure them (:func:`jaxdyn.analyses.influence_measure.binary_influence`).

    Returns ``{name: entry(name, meta, runs)}``; ``meta`` has ``width, test_accuracy,
    robust_accuracy, train, n_samples, first_layer, time_s``. With ``out``, each network's entry is
    a piece of the run (:class:`~jaxdyn.experiments.runner.Pieces`: stored when done, reused when
    the run resumes)."""
    pool = []

    def one(name):
        if not pool:
            pool.extend(fixed_digits(max(3 * cfg.n_samples, 100), seed=cfg.seeds[0] + 1, binary=cfg.train["binary"],
                                     split="train"))
        x_pool, y_pool = pool
        width = cfg.widths.get(name, cfg.width)
        t0 = time.perf_counter()
        model, variables, info = load_model(name, cfg.train, seed=cfg.seeds[0], overrides=dict(width=width),
                                            progress=progress)
        t1 = time.perf_counter()
        xs, ys, _ = correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
        layer, runs = binary_influence(model, variables, xs, ys, A0=cfg.A0, steps=cfg.steps, eta=cfg.eta,
                                       chunk=cfg.chunk, betas_A0=betas_A0)
        meta = dict(width=width, dgw_dim=first_layer_size(model, variables), test_accuracy=info.get("test_accuracy"),
                    robust_accuracy=info.get("robust_accuracy"),
                    train=train_summary(info), n_samples=int(len(xs)), first_layer=layer,
                    time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        return entry(name, meta, runs)

    return by_piece(one, cfg.models, out=out, progress=progress, desc=desc)
