"""The README's Python example runs as written: its first ```python block, in a fresh process
(a clean interpreter: no float64, no strict promotion from this suite's conftest), from an empty
folder with an empty home."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.timeout(300)


def first_python_block(text: str) -> str:
    m = re.search(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    if m is None:
        raise AssertionError("README.md has no ```python block")
    return m.group(1)


def test_first_python_block_is_found():
    block = first_python_block("# t\n\n```bash\nls\n```\n\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n")
    assert block == "x = 1\n"


def test_readme_python_example_runs(tmp_path, tmp_path_factory):
    code = first_python_block(README.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_ENABLE")}
    # the example trains its network into the model cache: a fresh one, outside the folder it runs in
    env.update(HOME=str(tmp_path), MPLBACKEND="Agg", JAXDYN_CACHE_DIR=str(tmp_path_factory.mktemp("readme-cache")))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, f"the README's example failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    assert r.stdout.strip(), "the README's example printed nothing"
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == [], "the README's example wrote files"


def test_readme_commands_need_nothing_of_this_project_and_ci_runs_the_second():
    """The README's two commands are what a user types anywhere (no shared folder, no taskset, no
    environment variable); ``.ci/run`` runs the second one, wrapped as CI needs."""
    m = re.search(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert m is not None, "README.md has no ```bash block"
    lines = m.group(1).splitlines()
    assert len(lines) == 2, lines
    for line in lines:
        assert "shared" not in line and "taskset" not in line and "=" not in line.replace('".[', ""), line
    install, run = lines[1].split(" && ")
    ci = [line for line in (README.parent / ".ci" / "run").read_text().splitlines() if line.startswith(install)]
    assert len(ci) == 1, "'.ci/run' does not run the README's test command"
    assert ci[0].endswith(run) and "&&" in ci[0], ci[0]


def test_nothing_cites_files_outside_the_repository_or_tracker_numbers():
    """Docs, docstrings, scripts and tests cite ``docs/spec.md``, never the project's shared folder
    beside the checkout, nor an internal tracker's numbers (``.ci/run`` and past device-run records
    are CI's own)."""
    repo = README.parent
    outside = re.compile(r"\.\./" + "shared|" + "SPEC" + r"\.md")
    tracker = re.compile(r"\b[Ii]ssue" + r"s? #?\d+")
    files = [README, *repo.glob("docs/*.md"), *repo.glob("jaxdyn/**/*.py"), *repo.glob("scripts/*"),
             *repo.glob("benchmarks/**/*.py"), *repo.glob("benchmarks/**/*.sh"),
             *repo.glob("tests/*.py"), *repo.glob("examples/*.ipynb")]
    bad = [f"{p.relative_to(repo)}: {m.group(0)}" for p in files if p.is_file() and p != Path(__file__).resolve()
           for rx in (outside, tracker) for m in rx.finditer(p.read_text(errors="replace"))]
    assert bad == [], bad
