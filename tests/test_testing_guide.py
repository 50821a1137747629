"""docs/testing.md's code blocks run verbatim (the guide cannot rot), and the mutation check."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "testing.md").read_text(), re.S)


def test_guide_has_a_flax_and_a_plain_jax_example():
    assert len(BLOCKS) == 2
    assert "nn.Module" in BLOCKS[0] and "flax" in BLOCKS[0]
    assert "def f(params, x)" in BLOCKS[1]


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_guide_block_runs(i):
    ns = {"__name__": f"guide_{i}"}
    exec(compile(BLOCKS[i], f"docs/testing.md#block{i}", "exec"), ns)
    tests = [v for k, v in ns.items() if k.startswith("test_") and callable(v)]
    assert tests
    for t in tests:
        t()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_planted_bug_is_caught():
    """scripts/mutation_check.py: each planted bug makes at least one default test fail."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_check.py")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
