"""What Figures 3 and 4 share: the binary, adversarially trained networks, the digits they
measure, and the per-sample influence quantities (one definition, so both figures measure the
same networks on the same digits)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from jaxdyn.experiments._common.core import (FIGURE_ADV_BINARY, NetworksConfig, by_piece, chunked, correct_subset, fixed_digits, load_model,
                                             train_summary)
from jaxdyn.experiments._common.core import help_field as _help
from jaxdyn.experiments._common.fields import check_keys
from jaxdyn.experiments.claims import ACCURACY_FLOOR

__all__ = ["BinaryInfluenceConfig", "BINARY_INFLUENCE_SCALES", "influence_baselines", "binary_influence", "binary_influence_runs"]


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


_BINARY_BASE = dict(models=("alexnet", "vgg11", "resnet50"), A0=1.0, eta=1e-3, seed=0, accuracy_floor=ACCURACY_FLOOR)
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
    and measure them (:func:`binary_influence`).

    Returns ``{name: entry(name, meta, runs)}``; ``meta`` has ``width, test_accuracy,
    robust_accuracy, train, n_samples, first_layer, time_s``. With ``out``, each network's entry is
    a piece of the run (:class:`~jaxdyn.experiments.runner.Pieces`: stored when done, reused when
    the run resumes)."""
    pool = []

    def one(name):
        from jaxdyn.core import influence

        if not pool:
            pool.extend(fixed_digits(max(3 * cfg.n_samples, 100), seed=cfg.seed + 1, binary=cfg.train["binary"],
                                     split="train"))
        x_pool, y_pool = pool
        width = cfg.widths.get(name, cfg.width)
        t0 = time.perf_counter()
        model, variables, info = load_model(name, cfg.train, seed=cfg.seed, overrides=dict(width=width),
                                            progress=progress)
        t1 = time.perf_counter()
        xs, ys, _ = correct_subset(model, variables, x_pool, y_pool, cfg.n_samples)
        layer, runs = binary_influence(model, variables, xs, ys, A0=cfg.A0, steps=cfg.steps, eta=cfg.eta,
                                       chunk=cfg.chunk, betas_A0=betas_A0)
        meta = dict(width=width, dgw_dim=int(np.size(influence.get_param(variables, influence.first_layer_path(
                        model, variables)))), test_accuracy=info.get("test_accuracy"), robust_accuracy=info.get("robust_accuracy"),
                    train=train_summary(info), n_samples=int(len(xs)), first_layer=layer,
                    time_s={"train_or_load": t1 - t0, "compute": time.perf_counter() - t1})
        return entry(name, meta, runs)

    return by_piece(one, cfg.models, out=out, progress=progress, desc=desc)


def influence_baselines(z_of, W, x, y, *, beta, eta) -> dict:
    """One digit's baselines for Figs. 3-4 (no curvature, no attack): ``gw_norm = ||g_W||`` at the
    clean ``x`` (the vanilla scale of the weight gradient), and the first-order surrogate of the
    attack, ``δ = β g_x`` (:func:`jaxdyn.core.influence.theorem3`'s ``first_order`` perturbation, one
    step of the whole strength), measured like the attack on the real network (free gating):
    ``phi_fo``, ``abs_phi_fo``, ``dgw_norm_fo``. ``z_of``/``W``: :func:`jaxdyn.core.influence.first_layer_fn`."""
    import jax
    import jax.numpy as jnp

    from jaxdyn.core import influence
    from jaxdyn.core.losses import loss

    lw = lambda W, xx: loss(z_of(W, xx), y)  # noqa: E731
    gx = jax.grad(lw, argnums=1)(W, x)
    m = influence.measure(z_of, W, x, y, beta * gx, eta=eta, gating="free")
    return dict(gw_norm=jnp.linalg.norm(jax.grad(lw)(W, x)), phi_fo=m.phi, abs_phi_fo=jnp.abs(m.phi),
                dgw_norm_fo=m.dgw_norm)


def binary_influence(model, variables, x, y, *, A0: float, steps: int, eta: float, chunk: int | None,
                     betas_A0: Sequence[float] = ()):
    """Figs. 3-4's per-sample numbers on a binary network (:func:`jaxdyn.analyses.real_attack.attack_influence`,
    free gating) at ``β = A0 / median_x(H_z(x) ||g̃_x||²)`` and at the same rule for each of
    ``betas_A0``; one compile (β, η traced), ``chunk`` samples per call.

    Returns ``(first_layer, [(A0, β, {name: [N] arrays})])`` (``A0`` first, then ``betas_A0``):
    :func:`jaxdyn.analyses.real_attack.attack_influence`'s numbers, :func:`influence_baselines`', and three cosines of
    ``Δg_W|_x``: ``cos_to_mean`` with ``mean_x Δg_W`` (the paper's, ``x`` included), ``cos_loo``
    with the mean over the other digits, ``cos_unit_loo`` with the mean of the other digits' unit
    vectors (:func:`jaxdyn.analyses.stats.cos_to_mean`)."""
    import jax
    import jax.numpy as jnp

    from jaxdyn.analyses import real_attack
    from jaxdyn.core import influence

    from jaxdyn.analyses import stats
    from jaxdyn.core.models import logits_fn

    path = influence.first_layer_path(model, variables)
    dt = jax.tree.leaves(variables)[0].dtype
    xs, ys = jnp.asarray(x, dt), jnp.asarray(y, dt)
    memo = _memo_entry(model, variables, x, y, steps=steps, eta=eta, chunk=chunk)
    if "a_clean" not in memo:
        f = logits_fn(model, variables)
        memo["a_clean"] = np.asarray(jax.jit(jax.vmap(lambda xi, yi: influence.influence_A_clean(f, xi, yi)))(xs, ys))
    a_clean = memo["a_clean"]

    def one(z_of, W, xi, yi, beta, eta):
        q = real_attack.attack_influence(z_of, W, xi, yi, beta=beta, steps=steps, eta=eta)
        return dict(q, **influence_baselines(z_of, W, xi, yi, beta=beta, eta=eta))

    @jax.jit
    def run(variables, x, y, beta, eta):
        z_of, W, _ = influence.first_layer_fn(model, variables, path=path)
        # vmap, not lax.map: only the first layer's kernel is per digit here, and the batch over
        # digits pays (lax.map: compile 5.7 s + run 5.6 s against 4.8 + 4.7, AlexNet, quick)
        return jax.vmap(lambda xi, yi: one(z_of, W, xi, yi, beta, eta))(x, y)

    out = []
    for a0 in (A0, *betas_A0):
        if a0 in memo:  # measured before in this process (Fig. 3's A0 run is Fig. 4's)
            out.append((a0, memo[a0][0], {k: v.copy() for k, v in memo[a0][1].items()}))
            continue
        beta = float(a0 / np.median(a_clean))
        b, e = jnp.asarray(beta, dt), jnp.asarray(eta, dt)
        q = chunked(lambda xc, yc: run(variables, jnp.asarray(xc, dt), jnp.asarray(yc, dt), b, e),
                    np.asarray(x), np.asarray(y), chunk=chunk)
        dgw = np.asarray(q.pop("dgw")).reshape(len(x), -1)
        mean = dgw.mean(axis=0)
        q = {k: np.asarray(v) for k, v in q.items()}
        q["cos_to_mean"] = dgw @ mean / (np.linalg.norm(dgw, axis=1) * np.linalg.norm(mean) + 1e-300)
        q["cos_loo"] = stats.cos_to_mean(dgw)  # the mean of the other digits' Δg_W
        q["cos_unit_loo"] = stats.cos_to_mean(dgw, unit=True)  # ... of their directions
        memo[a0] = (beta, {k: v.copy() for k, v in q.items()})
        out.append((a0, beta, q))
    return "/".join(path), out


#: :func:`binary_influence`'s results in this process, per network (architecture, weights), digits
#: and settings: ``reproduce`` runs Fig. 3 and then Fig. 4, which measures the same networks on
#: the same digits at Fig. 3's A0 (a pure function of its inputs, so reusing it changes nothing)
_MEMO: dict = {}
_MEMO_MAX = 4  # the networks of one figure (full scale: tens of MB each)


def _memo_entry(model, variables, x, y, **settings) -> dict:
    import hashlib

    import jax

    h = hashlib.sha256(repr((model, jax.tree.structure(variables), sorted(settings.items()))).encode())
    for a in (*jax.tree.leaves(variables), x, y):
        a = np.asarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    key = h.hexdigest()
    if key not in _MEMO and len(_MEMO) >= _MEMO_MAX:
        _MEMO.pop(next(iter(_MEMO)))
    return _MEMO.setdefault(key, {})
