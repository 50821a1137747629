"""Test configuration.

The CI and development machines of this project have 2 cores, on which XLA's CPU thread pools
can stall (threads parked in futex). Pinning the test process to one core before jax is
imported avoids it; this is a property of those machines, not of the library, so it lives here
and in ``.ci/run`` only.
"""

import os

if hasattr(os, "sched_setaffinity") and os.environ.get("JAXDYN_NO_PIN") is None:
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except OSError:  # pragma: no cover
        pass

# MNIST: the four files built into jaxdyn unless JAXDYN_DATA_DIR names another folder (CI may set it,
# relative to the checkout); made absolute, since some tests run commands from another folder.
if os.environ.get("JAXDYN_DATA_DIR") and os.environ["JAXDYN_DATA_DIR"] != "tfds":
    os.environ["JAXDYN_DATA_DIR"] = os.path.abspath(os.environ["JAXDYN_DATA_DIR"])

# One XLA compilation cache for the whole session (a fresh folder, removed at the end; exported, so
# the commands that tests start in subprocesses share it): tests build the same jitted functions
# again and again (each command run, each hypothesis example, each eager attack builds new closures
# of identical programs) and a hit skips the backend compile, most of the suite's time on one core.
# Only XLA's compile is cached: tracing still happens, so the tests that count traces are unchanged.
# JAXDYN_TEST_XLA_CACHE=0 turns it off (e.g. to time compilations).
import shutil  # noqa: E402
import tempfile  # noqa: E402

_XLA_CACHE = None
if os.environ.get("JAXDYN_TEST_XLA_CACHE", "1") != "0" and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _XLA_CACHE = tempfile.mkdtemp(prefix="jaxdyn-tests-xla-")
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_XLA_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from jaxdyn.datasets.loading import MNIST_DIR  # noqa: E402

# Numerical tests run in float64 (docs/spec.md, "Precision"); code under test must not depend on it.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Hypothesis profiles (docs/testing.md): "jaxdyn" (default) keeps the default suite fast: three,
# derandomized examples drawn from a few architectures (tests/_props.py); "many" draws 20x more
# examples from the whole catalogue of jaxdyn.testing. Select with `--hypothesis-profile many`
# or JAXDYN_HYPOTHESIS_PROFILE=many. Drawing a new architecture compiles its initialiser (seconds
# on a shared core), so the too_slow health check is off.
_slow_ok = [HealthCheck.too_slow]
settings.register_profile("jaxdyn", deadline=None, max_examples=3, derandomize=True, print_blob=True,
                          suppress_health_check=_slow_ok)
settings.register_profile("many", deadline=None, max_examples=200, derandomize=False, print_blob=True,
                          suppress_health_check=_slow_ok)
settings.load_profile(os.environ.get("JAXDYN_HYPOTHESIS_PROFILE", "jaxdyn"))


@pytest.fixture(scope="session")
def data_dir():
    """The folder with the four MNIST ``.gz`` files: ``JAXDYN_DATA_DIR`` if set, else the copy built
    into jaxdyn (a fresh clone needs nothing else)."""
    d = os.environ.get("JAXDYN_DATA_DIR")
    if not d or d == "tfds":
        d = str(MNIST_DIR)
    return d


@pytest.fixture(scope="module")
def tiny_env(data_dir, tmp_path_factory):
    """An output folder for the tiny-scale command smoke tests, with a fresh model cache (the
    tiny networks are trained into it) and the Agg backend."""
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXDYN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("MPLBACKEND", "Agg")
    yield tmp_path_factory.mktemp("out")
    mp.undo()


def pytest_unconfigure(config):
    if _XLA_CACHE is not None:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)
