"""Training callbacks: trackers that record numbers along training (the ``callbacks=`` of
:func:`jaxdyn.training.cache.load_or_train`, protocol :class:`jaxdyn.training.cache.Tracker`).

* :class:`SharpnessTracker`: ``λ_max`` of the loss Hessian w.r.t. all parameters (power iteration on
  Hessian-vector products, :func:`jaxdyn.core.hessian.param_hessian_top_eigenvalue`) on a fixed
  probe batch, for the clean loss and for the ℓ∞-PGD adversarial loss (Fig. 5's sharpness along
  training).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn._internal.results import append_line_atomic, to_json_tree
from jaxdyn.attacks.multistep import pgd
from jaxdyn.core.hessian import param_hessian_top_eigenvalue
from jaxdyn.core.losses import loss
from jaxdyn.datasets import loading as data

__all__ = ["SharpnessTracker"]

#: the jitted λ_max function per architecture and tracker config: one compile shared by the
#: standard and the adversarial run of an architecture
_LAM_CACHE: dict = {}


class SharpnessTracker:
    """A training callback recording ``λ_max`` of the clean and the adversarial probe loss at
    ``points`` evenly spaced steps (the first and the last included).

    The records (``{"step", "lambda_clean", "lambda_adv", "train_loss"}``) are written to
    ``<run_dir>/sharpness.jsonl`` as they come, so a resumed run keeps them.
    """

    name = "sharpness_fig5"

    def __init__(self, *, points: int, probe: int, iters: int, pgd_cfg: dict, seed: int = 0):
        if points < 1 or probe < 1 or iters < 1:
            raise ValueError("points, probe and iters must be >= 1")
        self.points, self.probe, self.iters, self.pgd_cfg, self.seed = points, probe, iters, dict(pgd_cfg), seed

    def config(self) -> dict:
        return to_json_tree(dict(points=self.points, probe=self.probe, iters=self.iters, pgd=self.pgd_cfg,
                                 seed=self.seed, version=1))

    def start(self, model, cfg, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / "sharpness.jsonl"
        if not (self.run_dir / "checkpoint.msgpack").exists():
            self.log.unlink(missing_ok=True)  # a fresh run: no stale records
        x, y = data.load_mnist("train")
        if cfg.binary is not None:
            x, y = data.binary_task(x, y, cfg.binary)
        x, y = data.subset(x, y, self.probe, seed=10_000 + self.seed)
        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        n = cfg.n_train if cfg.n_train is not None else len(data.load_mnist("train")[0])
        total = cfg.epochs * (n // cfg.batch_size)
        self.schedule = sorted({int(round(s)) for s in np.linspace(1, total, self.points)})
        p = self.pgd_cfg

        def lam(params, extra, x, y, key, eps, alpha):
            def batch_loss(params, xx):
                z = model.apply({"params": params, **extra}, xx)
                return jnp.mean(jax.vmap(loss)(z, y))

            v = {"params": params, **extra}
            f = lambda t: model.apply(v, t[None])[0]  # noqa: E731
            d = jax.vmap(lambda xi, yi, k: pgd(f, xi, yi, eps=eps, alpha=alpha, steps=p["steps"], norm="linf", key=k))(
                x, y, jax.random.split(key, x.shape[0]))
            d = jax.lax.stop_gradient(d)
            k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
            lc, _ = param_hessian_top_eigenvalue(lambda q: batch_loss(q, x), params, key=k1, num_iters=self.iters)
            la, _ = param_hessian_top_eigenvalue(lambda q: batch_loss(q, x + d), params, key=k2, num_iters=self.iters)
            return lc, la

        # the seed only picks the probe digits and the key, both arguments of the compiled function
        shape = {k: v for k, v in self.config().items() if k != "seed"}
        ckey = (cfg.model, cfg.width, cfg.num_classes, json.dumps(shape, sort_keys=True))
        if ckey not in _LAM_CACHE:  # one compile per architecture: standard, adversarial runs and seeds share it
            _LAM_CACHE[ckey] = jax.jit(lam)
        self._lam = _LAM_CACHE[ckey]

    def callback(self, step, state, loss_value) -> None:
        if step not in self.schedule:
            return
        extra = {"batch_stats": state["batch_stats"]} if "batch_stats" in state else {}
        dt = self.x.dtype
        lc, la = self._lam(state["params"], extra, self.x, self.y, jax.random.key(self.seed),
                           jnp.asarray(self.pgd_cfg["eps"], dt), jnp.asarray(self.pgd_cfg["alpha"], dt))
        append_line_atomic(self.log, json.dumps({"step": int(step), "lambda_clean": float(lc),
                                                 "lambda_adv": float(la), "train_loss": float(loss_value)}))

    def records(self, run_dir: Path) -> list:
        log = Path(run_dir) / "sharpness.jsonl"
        recs = {}
        if log.exists():
            for line in log.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    recs[r["step"]] = r
        return [recs[s] for s in sorted(recs)]
