"""The package's structure, checked: roles import downward only, no module reaches into another's
private names, files stay short, experiments only orchestrate, and ruff is clean.

The layers (docs/design.md, "Layout"): ``_internal``/``datasets`` < ``core`` < ``attacks`` <
``analyses`` < ``training`` < ``experiments`` < ``cli``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxdyn"
LAYER = {"_internal": 0, "_version": 0, "datasets": 0, "core": 1, "attacks": 2, "analyses": 3, "training": 4,
         "testing": 4, "experiments": 5, "cli": 6}
MAX_LINES, MAX_EXPERIMENT_LINES = 400, 250


def _modules():
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        yield f, ".".join(p for p in parts if p != "__init__")


def _role(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path: Path):
    """``(line, imported module, [names])`` of every jaxdyn import in ``path`` (lazy ones included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "jaxdyn":
            if node.module == "jaxdyn":  # `from jaxdyn import training`: the subpackage
                for a in node.names:
                    yield node.lineno, f"jaxdyn.{a.name}", []
            else:
                yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "jaxdyn":
                    yield node.lineno, a.name, []


def _is_module(name: str) -> bool:
    p = ROOT.joinpath(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def upward_imports() -> list[str]:
    out = []
    for f, mod in _modules():
        here = _role(mod)
        if here not in LAYER:
            continue
        for line, target, _ in _imports(f):
            there = _role(target)
            if there in LAYER and LAYER[there] > LAYER[here]:
                out.append(f"{f.relative_to(ROOT)}:{line}: {here} imports {target} ({there})")
    return out


def private_imports() -> list[str]:
    out = []
    for f, mod in _modules():
        for line, target, names in _imports(f):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and not _is_module(f"{target}.{n}"):
                    out.append(f"{f.relative_to(ROOT)}:{line}: imports the private name {target}.{n}")
    return out


def test_roles_import_downward_only():
    assert upward_imports() == []


def test_no_module_imports_another_modules_private_name():
    assert private_imports() == []


def test_files_stay_short_and_experiments_only_orchestrate():
    long = [f"{f.relative_to(ROOT)}: {n} lines" for f in sorted(ROOT.glob("*/**/*.py"))
            if "tests" not in f.parts and (n := len(f.read_text().splitlines())) > MAX_LINES]
    assert long == []
    exp = PACKAGE / "experiments"
    orchestration = [f for f in exp.rglob("*.py") if "_common" not in f.parts and f.name not in ("__init__.py",)
                     or f.parent != exp and f.name == "__init__.py"]
    long = [f"{f.relative_to(ROOT)}: {n} lines" for f in sorted(set(orchestration))
            if (n := len(f.read_text().splitlines())) > MAX_EXPERIMENT_LINES]
    assert long == []


def test_the_checkers_can_fail(tmp_path, monkeypatch):
    """The structure checks see an upward arrow and a private import when there is one."""
    pkg = tmp_path / "jaxdyn"
    (pkg / "core").mkdir(parents=True)
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "bad.py").write_text("from jaxdyn.experiments import report\nfrom jaxdyn.core.x import _hidden\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert upward_imports() == ["jaxdyn/core/bad.py:1: core imports jaxdyn.experiments (experiments)"]
    assert private_imports() == ["jaxdyn/core/bad.py:2: imports the private name jaxdyn.core.x._hidden"]


@pytest.mark.skipif(shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                                                     capture_output=True).returncode != 0,
                    reason="ruff is not installed (pip install -e '.[test]' installs it)")
def test_ruff_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
