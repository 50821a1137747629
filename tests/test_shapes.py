"""The jaxtyping shape annotations of the engine and the attacks hold at run time.

Every annotated public function of ``jaxdyn.core.{losses,gating,hessian,theory}`` and
``jaxdyn.attacks.{multistep,batch,robust}`` is wrapped here with
``jaxtyping.jaxtyped(typechecker=beartype.beartype)`` and called on a tiny float64 network; the
fields of the results it returns (NamedTuples, dataclasses) are checked against their annotations
in one shape context. The library itself runs no checker: the annotations cost nothing there.
"""

import dataclasses
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attacks import batch, multistep, robust
from jaxdyn.core import gating, hessian, losses, theory
from tests.helpers import small_input, small_label, small_net

beartype = pytest.importorskip("beartype")  # the test extra
jaxtyping = pytest.importorskip("jaxtyping")

C = 4
N = 2


def checked(fn):
    """``fn`` with its annotations checked at every call (shapes bound consistently per call)."""
    return jaxtyping.jaxtyped(typechecker=beartype.beartype)(fn)


def jit_checked(fn, *arrays, pre=(), **options):
    """``checked(fn)(*pre, *arrays, **options)`` under ``jax.jit`` (the arrays traced, ``pre`` and the
    options closed over): one compile instead of an eager one per operation; jaxtyping checks the
    tracers' shapes and dtypes."""
    return jax.jit(lambda *a: checked(fn)(*pre, *a, **options))(*arrays)


def check_fields(result):
    """The fields of a NamedTuple / dataclass ``result`` against the class's annotations, with one
    binding of the named dimensions across all fields."""
    names = [f.name for f in dataclasses.fields(result)] if dataclasses.is_dataclass(result) else list(result._fields)
    hints = typing.get_type_hints(type(result))
    ns: dict = {}
    exec(f"def fields({', '.join(names)}):\n    return None", ns)  # a function whose parameters are the fields
    fn = ns["fields"]
    fn.__annotations__ = {k: hints[k] for k in names}
    checked(fn)(**{k: getattr(result, k) for k in names})
    return result


@pytest.fixture(scope="module")
def net():
    model, variables, f = small_net(num_classes=C, hidden=(8,))
    x = small_input()
    y = jnp.argmax(f(x)).astype(jnp.int32)  # correctly classified: a tiny attack never succeeds
    xb = jnp.stack([small_input(s) for s in range(N)])
    yb = jnp.stack([small_label(C, s) for s in range(N)])
    return model, variables, f, x, y, xb, yb


@pytest.fixture(scope="module")
def frame(net):
    _, _, f, x, y, _, _ = net
    J, z, gz = jit_checked(theory.prepare, x, y, pre=(f,))
    return J, z, gz, losses.hessian_z(z, y)


def test_losses(net):
    _, _, f, x, y, _, _ = net

    @jax.jit  # one compile for all of them; the checks run on the tracers' shapes and dtypes
    def run(z, y):
        return (checked(losses.loss)(z, y), checked(losses.grad_z)(z, y), checked(losses.hessian_z)(z, y),
                checked(losses.is_success)(z, y), checked(hessian.hessian_z_autodiff)(z, y))

    shapes = [a.shape for a in run(f(x), y)]
    assert shapes == [(), (C,), (C, C), (), (C, C)]
    assert checked(losses.loss)(f(x), 1).shape == ()  # a Python int label, eagerly


def test_gating(net):
    model, variables, f, x, y, _, _ = net
    fz = checked(gating.freeze)(f, x)
    np.testing.assert_allclose(fz(x), f(x))
    z0, J, G, c = checked(gating.logit_frame)(f, x)
    assert J.shape == (C, x.size) and G.shape == (C, C) and c == C

    @jax.jit
    def run(variables, x):
        return (checked(gating.input_jacobian)(f, x), checked(gating.gate_pattern)(model.apply, variables, x),
                checked(gating.flip_fraction)(model.apply, variables, x, x))

    J2, pattern, flips = run(variables, x)
    assert J2.shape == J.shape and pattern.dtype == jnp.bool_ and float(flips) == 0.0


def test_hessian(net, frame):
    _, _, f, x, y, _, _ = net
    _, _, _, hz = frame
    n = x.size
    params = {"w": jnp.arange(3.0), "b": {"c": jnp.ones((2, 2))}}
    loss_of_params = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"]["c"]) ** 2  # noqa: E731

    @jax.jit
    def run(x, y, hz, params, key):
        return (checked(hessian.input_hessian)(f, x, y), checked(hessian.input_hessian_structured)(f, x, y),
                checked(hessian.hbar_x_dense)(f, x, hz), checked(hessian.hvp)(f, x, y, jnp.ones_like(x)),
                checked(hessian.top_eigenpairs)(jnp.eye(n, dtype=x.dtype), 3),
                checked(hessian.param_hessian_top_eigenvalue)(loss_of_params, params, key=key, num_iters=2))

    h1, h2, h3, hv, (lam, V), (lam1, v) = run(x, y, hz, params, jax.random.key(0))
    assert h1.shape == h2.shape == h3.shape == (n, n) and hv.shape == x.shape
    assert lam.shape == (3,) and V.shape == (n, 3)
    assert lam1.shape == () and v["b"]["c"].shape == (2, 2)


def test_theory(net, frame):
    _, _, f, x, y, _, _ = net
    J, z, gz, hz = frame
    n = x.size
    _, _, fb = small_net(num_classes=1, hidden=(8,))

    @jax.jit
    def run(x, y, J, z, gz, hz, beta, alpha, m):
        g_x, hbar_x = J.T @ gz, J.T @ hz @ J
        preds = [checked(theory.theorem2)(J, gz, hz, beta), checked(theory.theorem1)(J, gz, hz, alpha, 3),
                 checked(theory.theorem1)(J, gz, hz, alpha, m), checked(theory.theorem2_eig)(g_x, hbar_x, beta),
                 checked(theory.theorem1_eig)(g_x, hbar_x, alpha, 3)]
        curves = [checked(theory.theorem2_norms)(J, g_x, hz, jnp.array([1e-2, 1e-1])),
                  checked(theory.theorem1_norms)(J, g_x, hz, alpha, jnp.arange(1, 4))]
        examples = [checked(theory.predict)(f, x, y, hz, beta=beta),
                    checked(theory.predict)(f, x, y, beta=0.1, steps=3)]
        H_seq = jnp.stack([hz, hz, hz])
        scalars = [checked(theory.match_beta)(J, gz, hz, beta, iters=5), checked(theory.clean_alignment)(J, z, gz, y),
                   checked(theory.lemma1_sigmoid_margin)(fb(x), 1.0)]
        arrays = [checked(theory.phi)(jnp.linspace(-1.0, 1.0, 5)),
                  checked(theory.hbar_z_weighted)(H_seq, jnp.array([0.0, 1.0, 2.0]), jnp.array([False, True, True])),
                  checked(theory.normalized)(preds[0].delta, beta), *checked(theory.structured_eigenpairs)(J, hz)]
        return preds, curves, examples, scalars, arrays

    preds, curves, examples, scalars, arrays = run(x, y, J, z, gz, hz, 0.1, 0.01, jnp.int32(3))
    assert [check_fields(p).delta.shape for p in preds] == [(n,)] * 5
    assert [check_fields(c).delta.shape for c in curves] == [(2,), (3,)]
    for p in examples:
        assert isinstance(check_fields(p), theory.ExamplePrediction) and p.delta_hat.shape == x.shape
    assert [a.shape for a in scalars] == [()] * 3
    assert [a.shape for a in arrays] == [(5,), (C, C), (n,), (C,), (n, C)]


def test_attacks(net):
    _, _, f, x, y, xb, yb = net
    key = jax.random.key(0)

    @jax.jit
    def run(x, y, key, m):
        return (checked(multistep.attack)(f, x, y, steps=2, alpha=1e-9, norm="linf", eps=0.1, clip=(0.0, 1.0),
                                          random_start=True, key=key, record=True),
                checked(multistep.logit_space_attack)(f, x, y, steps=m, beta=0.1),
                checked(multistep.pgd)(f, x, y, eps=0.1, alpha=0.05, steps=2, key=key),
                checked(multistep.sample_ball)(key, x, 0.1, "l2"))

    r, r_logit, d, ball = run(x, y, key, jnp.int32(3))
    assert int(check_fields(r).success_step) == multistep.SuccessStep.NEVER  # steps of 1e-9 from a correct digit
    check_fields(r_logit)
    assert d.shape == ball.shape == x.shape
    cal = checked(multistep.calibrate_raw_alpha)(f, xb, yb, target=2, max_steps=4, alpha0=jnp.full(N, 0.1), iters=1)
    assert cal["alpha"].shape == (N,)


def test_batch_and_robust(net):
    _, _, f, _, _, xb, yb = net
    key = jax.random.key(0)
    assert checked(batch.example_keys)(key, 3).shape == (3,)
    g, params = checked(batch.per_example_fn)(f)
    assert params is None and g(None, xb[0]).shape == (C,)
    for r in (checked(batch.pgd_batch)(f, xb, yb, eps=0.1, alpha=0.05, steps=2, key=key),
              checked(batch.pgd_batch)(f, np.asarray(xb), np.asarray(yb), eps=0.1, alpha=0.05, steps=2, key=key),
              checked(batch.apgd)(f, xb, yb, eps=0.1, steps=2, key=key)):
        assert check_fields(r).x_adv.shape == xb.shape
    ra = check_fields(checked(robust.robust_accuracy)(f, xb, yb, eps=[0.05, 0.1], steps=2, progress=False))
    assert ra.correct.shape == (2, N)


def test_wrong_shapes_raise(net, frame):
    """The checks can fail: a wrong shape in an argument, a return value or a result's fields."""
    _, _, f, x, y, xb, yb = net
    J, z, gz, hz = frame
    with pytest.raises(jaxtyping.TypeCheckError):
        checked(theory.theorem2)(J, jnp.concatenate([gz, gz[:1]]), hz, 0.1)  # g_z [C + 1] against J [C, n]
    with pytest.raises(jaxtyping.TypeCheckError):
        checked(losses.hessian_z)(z[None], y)  # a batch of logits where one example's is expected
    with pytest.raises(jaxtyping.TypeCheckError):
        checked(multistep.attack)(f, x.astype(jnp.int32), y, steps=2, beta=0.1)  # integer pixels
    with pytest.raises(jaxtyping.TypeCheckError):
        check_fields(theory.Prediction(delta=jnp.zeros(3), grad=jnp.zeros(4)))
    with pytest.raises(jaxtyping.TypeCheckError):
        check_fields(batch.BatchAttack(x_adv=xb, delta=xb, success=jnp.zeros(N + 1, bool)))


def test_library_runs_no_checker():
    """The annotations are inert in the library: no function is wrapped, and a wrong shape reaches
    the library's own checks (a ValueError), not a type checker."""
    for mod in (losses, gating, hessian, theory, multistep, batch, robust):
        for name in mod.__all__:
            obj = getattr(mod, name)
            assert not hasattr(obj, "__wrapped__"), f"{mod.__name__}.{name} is wrapped"
    J = jnp.zeros((C, 5))
    with pytest.raises(ValueError):
        theory.theorem2(J, jnp.zeros(C + 1), jnp.eye(C), 0.1)


# every annotated public function above, per module: a new public function is added here too
COVERED = {
    losses: {"loss", "grad_z", "hessian_z", "is_success"},
    gating: {"freeze", "input_jacobian", "gate_pattern", "flip_fraction"},
    hessian: {"hessian_z", "hessian_z_autodiff", "input_jacobian", "input_hessian", "input_hessian_structured",
              "hbar_x_dense", "hvp", "top_eigenpairs", "param_hessian_top_eigenvalue"},
    theory: {"phi", "hbar_z_weighted", "theorem2", "theorem1", "theorem2_eig", "theorem2_norms", "theorem1_norms",
             "theorem1_eig", "structured_eigenpairs", "clean_alignment", "predict", "normalized",
             "lemma1_sigmoid_margin", "prepare", "match_beta"},
    multistep: {"attack", "pgd", "logit_space_attack", "calibrate_raw_alpha", "sample_ball"},
    batch: {"pgd_batch", "apgd", "per_example_fn", "example_keys"},
    robust: {"robust_accuracy"},
}


@pytest.mark.parametrize("mod", list(COVERED), ids=lambda m: m.__name__)
def test_every_public_function_is_covered(mod):
    functions = {n for n in mod.__all__ if callable(getattr(mod, n)) and not isinstance(getattr(mod, n), type)}
    assert functions == COVERED[mod]
    for name in functions:  # and annotated: every parameter and the return
        fn = getattr(mod, name)
        hints = typing.get_type_hints(fn)
        assert "return" in hints, f"{mod.__name__}.{name}: no return annotation"
