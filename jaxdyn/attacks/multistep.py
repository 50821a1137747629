"""Multi-step gradient attacks as one ``lax.scan`` (A1, ℓ2, ℓ∞, PGD), free or frozen gating.

Every attack here is written for **one example** (``jax.vmap`` it for a batch). The step
count ``steps`` is static (it fixes the scan length); ``beta``, ``alpha`` and ``eps`` are traced,
so sweeping them under ``jit`` never recompiles.

Step rule (Eq. 4): ``d <- P(d + alpha * dir(g_{x+d}))`` with

* ``norm="raw"``: ``dir(g) = g`` (assumption A1),
* ``norm="l2"``: ``dir(g) = g / ||g||``,
* ``norm="linf"``: ``dir(g) = sign(g)``,

and ``P`` the projection onto the ε-ball (when ``eps`` is given) followed by clipping ``x + d``
to ``clip`` (when given). With ``beta`` the step size is ``alpha = beta / steps`` (A3's scaling).

Along the way the scan accumulates the weighted mean Hessian of docs/spec.md ("Theory"),
``H̄_z = Σ_{t=1}^{m-1} ||Δx^(t)|| H_z^(t) / Σ ||Δx^(t)||`` with ``Δx^(t) = d^(t) - d^(t-1)`` the
displacement actually taken (``alpha g`` for the raw attack) and ``H_z^(t)`` at ``x + d^(t)``,
and the effective ℓ∞ component ``Σ_t alpha (σ_tᵀ dir_t) σ_t``, ``σ_t = g_t/||g_t||`` (Sec. 3.2).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, ScalarLike, Shaped

from jaxdyn._internal import checks as _checks
from jaxdyn.attacks._loop import TINY as _TINY, SuccessStep, append as _append, mean_hessian as _mean_hessian, \
    record_step as _record, run as _run
from jaxdyn.core.gating import GATINGS, freeze, input_jacobian, logit_frame
from jaxdyn.core.losses import hessian_z, is_success, loss

__all__ = ["AttackResult", "SuccessStep", "attack", "pgd", "logit_space_attack", "calibrate_raw_alpha", "sample_ball"]

NORMS = ("raw", "l2", "linf")
PGD_UNROLL_MAX_STEPS = 50


class AttackResult(NamedTuple):
    """Result of one example's attack.

    Attributes:
      delta: final perturbation ``d^(m)``, shape of ``x``.
      hbar_z: ``[C, C]`` weighted mean ``H̄_z`` over the trajectory (docs/spec.md; falls back to
        ``H_z`` at ``x`` when ``steps == 1``).
      success_step: ``int32``, first ``t`` in ``0..m`` with ``x + d^(t)`` misclassified,
        :attr:`SuccessStep.NEVER` (``-1``) if none, :attr:`SuccessStep.INVALID` (``-2``) for invalid
        input found under ``jit`` (a NaN/inf value or a label outside the head); ``delta`` and
        ``hbar_z`` are then NaN.
      delta_effective: effective ℓ∞ component ``Σ_t alpha (σ_tᵀ dir_t) σ_t`` (Sec. 3.2), shape
        of ``x``; for the raw attack it equals the sum of unprojected steps.
      trajectory: ``None`` unless ``record=True``; then a dict of per-step arrays of length
        ``m + 1`` (index ``t`` is the state at ``x + d^(t)``): ``delta_norm``, ``grad_norm``
        (``||g_{x+d^(t)}||``), ``step_norm`` (``||Δx^(t)||``, 0 at ``t = 0``), ``loss``,
        ``logits`` ``[m+1, C]`` and ``H_z`` ``[m+1, C, C]``.
    """

    delta: Float[Array, "*x"]
    hbar_z: Float[Array, "C C"]
    success_step: Int[Array, ""]
    delta_effective: Float[Array, "*x"]
    trajectory: dict[str, Float[Array, "..."]] | None = None


def hessian_for(loss_fn):
    """Closed-form ``H_z`` for the cross-entropy, ``jax.hessian`` for any other loss."""
    return hessian_z if loss_fn is loss else jax.hessian(loss_fn)


def direction(g, norm):
    if norm == "raw":
        return g
    if norm == "l2":
        return g / jnp.maximum(jnp.linalg.norm(g), _TINY)
    return jnp.sign(g)


def project(x, d, eps, norm, clip):
    if eps is not None:
        if norm == "l2":
            n = jnp.linalg.norm(d)
            d = d * jnp.minimum(1.0, eps / jnp.maximum(n, _TINY))
        else:  # linf ball (also used for raw/linf steps)
            d = jnp.clip(d, -eps, eps)
    if clip is not None:
        lo, hi = clip
        d = jnp.clip(x + d, lo, hi) - x
    return d


def sample_ball(key: PRNGKeyArray, x: Float[Array, "*x"], eps: ScalarLike, norm: str) -> Float[Array, "*x"]:
    """A uniform random point of the ε-ball around 0 (shape of ``x``).

    ℓ∞: i.i.d. uniform on ``[-eps, eps]``. ℓ2: uniform in the ℓ2 ball, i.e. a uniform direction
    (normalised Gaussian) times ``eps * U^(1/n)`` — not a Gaussian scaled to radius ``eps``,
    which would sit on the sphere.
    """
    if norm == "l2":
        k1, k2 = jax.random.split(key)
        u = jax.random.normal(k1, x.shape, x.dtype)
        u = u / jnp.linalg.norm(u)
        r = jax.random.uniform(k2, (), x.dtype) ** (1.0 / x.size)
        return eps * r * u
    return jax.random.uniform(key, x.shape, x.dtype, -eps, eps)


def _step_size(beta, alpha, steps):
    if (beta is None) == (alpha is None):
        raise ValueError("give exactly one of beta (total strength, alpha = beta/steps) or alpha")
    if beta is not None:
        _checks.check_positive("beta", beta)
        return beta / (steps.astype(jnp.result_type(beta)) if _checks.traced_steps(steps) else steps)
    _checks.check_positive("alpha", alpha)
    return alpha


def invalid_to_nan(r: AttackResult, y: ScalarLike, C: int | None, *inputs, ok=True) -> AttackResult:
    """NaN in, NaN out: with a non-finite input or result, a label outside the head, or ``ok``
    false (``x`` outside ``clip``), found under ``jit`` where no exception can be raised, the
    perturbation and ``H̄_z`` become NaN and ``success_step`` :attr:`SuccessStep.INVALID`,
    never a zero perturbation that reads as an instant success."""
    ok = ok & _checks.valid(y, C, *inputs, r.delta, r.hbar_z)
    nan = lambda a: jnp.where(ok, a, jnp.nan)  # noqa: E731
    return r._replace(delta=nan(r.delta), hbar_z=nan(r.hbar_z), delta_effective=nan(r.delta_effective),
                      success_step=jnp.where(ok, r.success_step, jnp.int32(SuccessStep.INVALID)))


def attack(
    f: Callable[[jax.Array], jax.Array],
    x: Float[Array, "*x"],
    y: ScalarLike,
    *,
    steps: int,
    beta: ScalarLike | None = None,
    alpha: ScalarLike | None = None,
    norm: str = "raw",
    eps: ScalarLike | None = None,
    clip=None,
    random_start: bool = False,
    key: PRNGKeyArray | None = None,
    gating: str = "free",
    record: bool = False,
    loss_fn: Callable = loss,
    unroll: int | bool = 1,
    targeted: bool = False,
) -> AttackResult:
    """An m-step gradient attack on one example, as one ``lax.scan``.

    Args:
      f: per-example logits function ``x -> z: [C]`` (``jaxdyn.core.models.logits_fn``).
      x: the clean example, e.g. ``[28, 28, 1]``.
      y: its label (int for softmax heads, ±1 for the binary head).
      steps: number of steps ``m`` (static).
      beta: total strength; the step size is ``alpha = beta / steps``. Exclusive with ``alpha``.
      alpha: the step size itself.
      norm: ``"raw"`` (A1), ``"l2"`` or ``"linf"``.
      eps: radius of the ε-ball to project onto (in the ``norm``'s geometry; the ℓ∞ ball for
        ``"raw"``), ``None`` for no projection.
      clip: ``(lo, hi)`` valid range of ``x + d`` (``(0, 1)`` for images) or ``None``.
      random_start: start from a uniform point of the ε-ball (needs ``eps`` and ``key``).
      key: PRNG key for the random start.
      gating: ``"free"`` (the real network) or ``"frozen"`` (A2: gates fixed at ``x``).
      record: also return the per-step trajectory.
      loss_fn: ``(z, y) -> scalar`` loss in logit space (default: cross-entropy,
        :func:`jaxdyn.core.losses.loss`); any other loss gets its ``H_z`` by ``jax.hessian``.
      unroll: ``lax.scan``'s ``unroll`` (the same steps; rounding may differ in the last bits as
        XLA fuses across steps). ``True`` unrolls all ``steps``: no XLA
        ``while`` loop, which on CPU runs a CNN's input-gradient convolutions ~5x faster than
        inside a loop (docs/performance.md) at the price of a compile that grows with ``steps``;
        worth it for short attacks (PGD-40), not for ``m = 1000``.
      targeted: ``y`` is the target class (±1 target for the binary head): the steps descend
        ``loss_fn(z, y)`` (ascend its negative, whose ``H_z`` then is ``hbar_z``) and success means
        the prediction equals ``y``.

    ``x`` must lie inside ``clip`` (otherwise the clip would move ``x`` itself and break the
    ε-ball): a ``ValueError`` naming ``clip=None`` when ``x`` is concrete; under ``jit``/``vmap``
    the result is flagged invalid like a NaN input (NaN ``delta``, ``success_step == SuccessStep.INVALID``).

    Returns:
      :class:`AttackResult`.
    """
    steps = _checks.check_steps(steps)
    _checks.check_choice("norm", norm, NORMS)
    _checks.check_choice("gating", gating, GATINGS)
    n_classes = _checks.check_call(f, x, y, labels=loss_fn is loss)
    _checks.check_in_clip(x, clip)
    a = _step_size(beta, alpha, steps)
    _checks.check_positive("eps", eps, allow_none=True)
    fz = freeze(f, x) if gating == "frozen" else f
    objective, hessian_z_, success = _objective(loss_fn, targeted)
    if random_start:
        if eps is None or key is None:
            raise ValueError("random_start needs eps and key")
        d0 = project(x, sample_ball(key, x, eps, "l2" if norm == "l2" else "linf"), eps, norm, clip)
    else:
        d0 = jnp.zeros_like(x)
    d, hbar, succ, eff, traj = _run(fz, x, y, steps=steps, alpha=a, direction=lambda g: direction(g, norm),
                                    project=lambda d: project(x, d, eps, norm, clip), d0=d0, loss_fn=objective,
                                    hessian_z_=hessian_z_, record=record, unroll=unroll, success=success)
    return invalid_to_nan(AttackResult(delta=d, hbar_z=hbar, success_step=succ, delta_effective=eff, trajectory=traj),
                           y, n_classes, x, ok=_checks.in_clip(x, clip))


def _objective(loss_fn, targeted: bool):
    """``(objective, its H_z, success)`` of an attack: ``loss_fn`` and misclassification, or
    (targeted) ``-loss_fn`` and the prediction equal to the target."""
    if not targeted:
        return loss_fn, hessian_for(loss_fn), is_success
    h = hessian_for(loss_fn)
    return (lambda z, y: -loss_fn(z, y)), (lambda z, y: -h(z, y)), (lambda z, y: jnp.logical_not(is_success(z, y)))


def pgd(
    f: Callable[[jax.Array], jax.Array],
    x: Float[Array, "*x"],
    y: ScalarLike,
    *,
    eps: ScalarLike,
    alpha: ScalarLike,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    key: PRNGKeyArray | None = None,
    clip=(0.0, 1.0),
    gating: str = "free",
    unroll: int | bool | None = None,
    loss_fn: Callable = loss,
    targeted: bool = False,
    return_adv: bool = False,
) -> Float[Array, "*x"]:
    """Madry et al. PGD on one example; returns the perturbation ``d`` (shape of ``x``), or the
    adversarial example ``x + d`` with ``return_adv=True``.

    ``norm`` is ``"linf"`` (sign steps, ℓ∞ ball) or ``"l2"`` (normalised steps, ℓ2 ball);
    ``x + d`` is clipped to ``clip``, inside which ``x`` must lie (a ``ValueError`` naming
    ``clip=None``, the setting for normalised inputs; under ``jit``/``vmap`` a NaN ``d``, as
    :func:`attack`). ``random_start=True`` (the default, as Madry et al.) needs ``key``; pass
    ``random_start=False`` to start at ``x``. ``loss_fn`` ``(z, y) -> scalar`` is the loss to
    ascend (default cross-entropy); ``targeted=True`` makes ``y`` the target and descends it.
    ``unroll`` as in :func:`attack`; the default ``None`` unrolls attacks of at most
    ``PGD_UNROLL_MAX_STEPS`` steps fully (PGD-40 on a CNN runs ~5x faster on CPU that way,
    docs/performance.md) and scans longer ones. For a batch see :func:`jaxdyn.attacks.batch.pgd_batch`.
    """
    steps = _checks.check_steps(steps)  # before it is compared: a float or a string says "steps"
    if unroll is None:
        unroll = True if steps <= PGD_UNROLL_MAX_STEPS else 1
    _checks.check_choice("norm", norm, ("linf", "l2"))
    _checks.check_positive("eps", eps)
    d = attack(
        f, x, y, steps=steps, alpha=alpha, norm=norm, eps=eps, clip=clip,
        random_start=random_start, key=key, gating=gating, unroll=unroll, loss_fn=loss_fn, targeted=targeted,
    ).delta
    return x + d if return_adv else d


def calibrate_raw_alpha(f: Callable[[jax.Array], jax.Array], x: Float[Array, " N *x"], y: Shaped[Array, " N"], *,
                        target: int, max_steps: int, alpha0: Float[ArrayLike, " N"], iters: int = 14) -> dict:
    """Each sample's raw-attack α: the one with which it succeeds after about ``target`` steps
    under frozen gating (A2), for a batch ``x: [N, ...]``, ``y: [N]`` of one network ``f``.

    Samples differ in confidence by orders of magnitude and the raw attack grows exponentially, so
    one α for all leaves some succeeding in one step and others never (Fig. 2 sets α per sample,
    fixed along its attack). Bisection on ``log α``, all samples at once, with the exact A2 attack
    in logit space (:func:`logit_space_attack`: one Jacobian per sample, then ``C``-dimensional
    steps; α traced: one compile). ``alpha0``: ``[N]`` starting values (e.g. ``step / ||g_x||``).
    ``f`` a :class:`jax.tree_util.Partial` holding the weights: they are traced, not compile-time constants.

    Returns:
      ``{"alpha": [N], "success_step": [N]}`` (NumPy; :attr:`SuccessStep.NEVER` where no α within the search
      succeeds) and
      ``"jacobian"``: the ``[N, C, n]`` input Jacobians it used (for the caller to reuse)."""
    _checks.check_steps(max_steps)
    fp = f if isinstance(f, jax.tree_util.Partial) else jax.tree_util.Partial(f)
    run = jax.jit(jax.vmap(lambda g, xi, yi, Ji, a: logit_space_attack(g, xi, yi, steps=max_steps, alpha=a, norm="raw",
                                                                      jacobian=Ji).success_step,
                           in_axes=(None, 0, 0, 0, 0)))
    J = jax.jit(jax.vmap(lambda g, xi: input_jacobian(g, xi), in_axes=(None, 0)))(fp, x)

    def steps_at(a):
        s = np.asarray(run(fp, x, y, J, jnp.asarray(a, x.dtype))).astype(float)
        s[s < 0] = np.inf  # SuccessStep.NEVER or INVALID: no success
        return s

    lo = np.asarray(alpha0, float).copy()
    hi = lo.copy()
    s_lo = steps_at(lo)
    for _ in range(iters):  # lo: succeeds no earlier than target
        low = s_lo < target
        if not low.any():
            break
        lo = np.where(low, lo / 4, lo)
        s_lo = steps_at(lo)
    s_hi = s_lo.copy()
    for _ in range(iters):  # hi: succeeds by target
        slow = s_hi > target
        if not slow.any():
            break
        hi = np.where(slow, hi * 4, hi)
        s_hi = steps_at(hi)
    for _ in range(iters):
        mid = np.sqrt(lo * hi)
        late = steps_at(mid) > target
        lo = np.where(late, mid, lo)
        hi = np.where(late, hi, mid)
    s_hi = steps_at(hi)
    succ = np.where(np.isfinite(s_hi), s_hi, int(SuccessStep.NEVER)).astype(int)
    return {"alpha": hi, "success_step": succ, "jacobian": J}


def logit_space_attack(
    f: Callable[[jax.Array], jax.Array],
    x: Float[Array, "*x"],
    y: ScalarLike,
    *,
    steps: int | Int[Array, ""],
    beta: ScalarLike | None = None,
    alpha: ScalarLike | None = None,
    norm: str = "raw",
    record: bool = False,
    jacobian: Float[Array, "C n"] | None = None,
    loss_fn: Callable = loss,
) -> AttackResult:
    """The exact A2 attack, run in C-dimensional logit space after one Jacobian.

    Under frozen gating ``z(x + d) = z_0 + J d`` and every step is ``d += alpha J^T dir``, so
    ``d = J^T a`` with ``a = Σ_t alpha c_t`` and ``u = J d = G a`` (``G = J J^T``):
    ``u <- u + alpha G c(g_z(z_0 + u))``, where ``c = g_z`` for ``norm="raw"`` and
    ``g_z / sqrt(g_zᵀ G g_z)`` for ``norm="l2"`` (``||g_x|| = ||J^T g_z||``). ℓ∞ sign steps and
    projections do not stay in the row space of ``J`` and are not supported here.

    Agrees with ``attack(..., gating="frozen")`` up to rounding, at ``O(C^2)`` per step instead
    of a forward and backward pass through the network. ``jacobian`` may pass a precomputed
    ``J`` (``[C, n]``); ``loss_fn`` as in :func:`attack`. ``steps`` may be a JAX integer scalar
    (traced, without ``record``): a ``while`` loop of that many steps, one compile for every ``m``.
    Returns an :class:`AttackResult`.
    """
    if record and _checks.traced_steps(steps):
        raise ValueError("record needs a static (Python int) steps")
    steps = steps if _checks.traced_steps(steps) else _checks.check_steps(steps)
    _checks.check_choice("norm", norm, ("raw", "l2"))
    _checks.check_call(f, x, y, labels=loss_fn is loss)
    a_step = _step_size(beta, alpha, steps)
    z0, J, G, C = logit_frame(f, x, jacobian)
    hessian_z_ = hessian_for(loss_fn)

    def _gnorm(G, c):  # ||J^T c|| from the Gram matrix
        return jnp.sqrt(jnp.maximum(c @ G @ c, 0.0))

    def evaluate(u):
        z = z0 + u
        gz = jax.grad(loss_fn)(z, y)
        return z, gz, _gnorm(G, gz)

    def body(carry, t):
        u, coef, prev_step, hsum, wsum, succ = carry
        z, gz, gnorm = evaluate(u)
        hz = hessian_z_(z, y)
        hsum = hsum + prev_step * hz
        wsum = wsum + prev_step
        succ = jnp.where((succ == SuccessStep.NEVER) & is_success(z, y), t, succ)
        c = gz if norm == "raw" else gz / jnp.maximum(gnorm, _TINY)
        step = a_step * _gnorm(G, c)
        rec = _record(_gnorm(G, coef), gnorm, prev_step, loss_fn(z, y), z, hz) if record else None
        return (u + a_step * (G @ c), coef + a_step * c, step, hsum, wsum, succ), rec

    dt = z0.dtype
    init = (jnp.zeros(C, dt), jnp.zeros(C, dt), jnp.zeros((), dt), jnp.zeros((C, C), dt),
            jnp.zeros((), dt), jnp.array(SuccessStep.NEVER, jnp.int32))
    (u, coef, last_step, hsum, wsum, succ), traj = (  # a while loop of a traced m, else a scan
        (jax.lax.fori_loop(0, steps.astype(jnp.int32), lambda t, c: body(c, t)[0], init), None)
        if _checks.traced_steps(steps) else jax.lax.scan(body, init, jnp.arange(steps, dtype=jnp.int32)))
    z, gz, gnorm = evaluate(u)
    succ = jnp.where((succ == SuccessStep.NEVER) & is_success(z, y), jnp.asarray(steps, jnp.int32), succ)
    hbar = _mean_hessian(hsum, wsum, hessian_z_(z0, y))
    delta = (J.T @ coef).reshape(x.shape)
    if record:
        traj = _append(traj, _record(_gnorm(G, coef), gnorm, last_step, loss_fn(z, y), z, hessian_z_(z, y)))
    return invalid_to_nan(AttackResult(delta=delta, hbar_z=hbar, success_step=succ, delta_effective=delta,
                                        trajectory=traj if record else None), y, C if loss_fn is loss else None, z0)
