"""Plant small bugs in a copy of jaxdyn and check that the default tests catch each one.

Each mutation edits one line of the package's source in a temporary copy of the repository
(``jaxdyn/``, ``tests/``, ``docs/``, ``pyproject.toml``), runs the default tests of the files
that own the property with that copy first on ``sys.path``, and reports which tests failed. A
mutation that no test catches *survives*; the script exits 1 if any survives (2 if a mutation's
target line is no longer in the source: update the script with the code).

    python scripts/mutation_check.py [--only NAME ...] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: name -> (file, original text, mutated text, test files to run, what the bug is)
MUTATIONS = {
    "theorem2_delta": ("jaxdyn/core/theory.py", "return Prediction(J.T @ a, J.T @ (eM @ g_z))",
                       "return Prediction((1 + 1e-6) * (J.T @ a), J.T @ (eM @ g_z))",
                       ["tests/test_theory_engine.py"], "Theorem 2's δ̂ (C x C path) off by 1e-6 relative"),
    "hz_softmax": ("jaxdyn/core/losses.py", "return jnp.diag(p) - jnp.outer(p, p)",
                   "return (1 + 1e-6) * (jnp.diag(p) - jnp.outer(p, p))",
                   ["tests/test_losses.py"], "closed-form softmax H_z off by 1e-6 relative"),
    "hz_sigmoid": ("jaxdyn/core/losses.py", "return jnp.reshape(s * (1 - s), (1, 1))",
                   "return jnp.reshape((1 + 1e-6) * s * (1 - s), (1, 1))",
                   ["tests/test_losses.py"], "closed-form sigmoid H_z off by 1e-6 relative"),
    "eq9": ("jaxdyn/core/influence.py", "return e1 * phi_ori - eta * g_z**2 * q / hbar_z * (e * e1)",
            "return (1 + 1e-6) * (e1 * phi_ori - eta * g_z**2 * q / hbar_z * (e * e1))",
            ["tests/test_testing.py"], "Eq. 9 (Theorem 3) off by 1e-6 relative"),
    "kappa": ("jaxdyn/analyses/metrics.py",
              "return jnp.mean(per_sample_norm(delta_star - delta_hat)) / jnp.mean(per_sample_norm(delta_star))",
              "return (1 + 1e-6) * jnp.mean(per_sample_norm(delta_star - delta_hat)) / "
              "jnp.mean(per_sample_norm(delta_star))",
              ["tests/test_metrics_numpy.py"], "κ off by 1e-6 relative"),
    "linf_step": ("jaxdyn/attacks/multistep.py", "    return jnp.sign(g)", "    return 0.999 * jnp.sign(g)",
                  ["tests/test_attacks.py"], "ℓ∞ step shrunk by 0.1 %"),
}


def _copy_repo(dst: pathlib.Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("jaxdyn", "tests", "docs"):
        shutil.copytree(ROOT / d, dst / d, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def run_mutation(name: str) -> dict:
    path, old, new, tests, what = MUTATIONS[name]
    with tempfile.TemporaryDirectory(prefix=f"jaxdyn-mut-{name}-") as tmp:
        tmp = pathlib.Path(tmp)
        _copy_repo(tmp)
        src = (tmp / path).read_text()
        if src.count(old) != 1:
            return dict(name=name, what=what, status="target-missing", failed=[], seconds=0.0)
        (tmp / path).write_text(src.replace(old, new))
        env = {k: v for k, v in os.environ.items() if k != "JAXDYN_HYPOTHESIS_PROFILE"}
        env["PYTHONPATH"] = str(tmp)
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
                           cwd=tmp, env=env, capture_output=True, text=True)
        failed = sorted(set(re.findall(r"^FAILED (\S+)", r.stdout, re.M)))
        status = "caught" if failed else ("error" if r.returncode not in (0, 1) else "survived")
        return dict(name=name, what=what, status=status, failed=failed, seconds=time.time() - t0,
                    tail="" if failed else r.stdout[-2000:] + r.stderr[-2000:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(MUTATIONS), help="run these mutations only")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table of the results")
    args = ap.parse_args(argv)
    results = []
    for name in args.only or MUTATIONS:
        res = run_mutation(name)
        results.append(res)
        print(f"{name:15s} {res['status']:9s} {res['seconds']:6.0f}s  {res['what']}", flush=True)
        for t in res["failed"]:
            print(f"    {t}")
        if res["status"] in ("survived", "error"):
            print(res.get("tail", ""))
    if args.markdown:
        print("\n| mutation | bug | caught by (failing default tests) |\n|---|---|---|")
        for r in results:
            tests = ", ".join(f"`{t.split('::')[-1]}`" for t in r["failed"]) or f"**{r['status']}**"
            print(f"| `{r['name']}` | {r['what']} | {tests} |")
    if any(r["status"] == "target-missing" for r in results):
        return 2
    return 0 if all(r["status"] == "caught" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
