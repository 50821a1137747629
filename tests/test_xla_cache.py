"""The command line's persistent compilation cache (jaxdyn._internal.xla_cache): where it goes, how
it is turned off, that a user's own JAX setting wins, and that `python -m jaxdyn` fills it."""

import os
import subprocess
import sys
from pathlib import Path

from jaxdyn._internal.xla_cache import enable_from_environment, xla_cache_dir


def test_place_and_switches(tmp_path):
    assert xla_cache_dir({"JAXDYN_CACHE_DIR": str(tmp_path)}) == tmp_path / "xla"
    assert xla_cache_dir({"HOME": "/h"}).parts[-3:] == ("jaxdyn", "models", "xla")
    assert xla_cache_dir({"JAXDYN_XLA_CACHE": "0", "JAXDYN_CACHE_DIR": str(tmp_path)}) is None
    assert xla_cache_dir({"JAXDYN_XLA_CACHE": str(tmp_path / "x")}) == tmp_path / "x"
    env = {"JAXDYN_CACHE_DIR": str(tmp_path)}
    assert enable_from_environment(env) == tmp_path / "xla"
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "xla")
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    mine = {"JAX_COMPILATION_CACHE_DIR": "/mine", "JAXDYN_CACHE_DIR": str(tmp_path)}
    assert enable_from_environment(mine) == Path("/mine") and mine["JAX_COMPILATION_CACHE_DIR"] == "/mine"
    off = {"JAXDYN_XLA_CACHE": "off"}
    assert enable_from_environment(off) is None and "JAX_COMPILATION_CACHE_DIR" not in off


def test_the_command_line_fills_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION")}
    env.update(JAXDYN_CACHE_DIR=str(tmp_path / "models"), JAXDYN_XLA_CACHE="")
    code = "import jaxdyn.core, jax; print(jax.config.jax_compilation_cache_dir)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() in ("None", "")  # a library import alone does not turn it on
    code = ("import sys, runpy; sys.argv = ['jaxdyn', '--version']; "
            "sys.modules.pop('jaxdyn.__main__', None)\n"
            "try:\n    runpy.run_module('jaxdyn', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import jax; print(jax.config.jax_compilation_cache_dir)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "models" / "xla")
