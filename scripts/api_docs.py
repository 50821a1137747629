"""Build the API reference from the docstrings with pdoc: ``python scripts/api_docs.py`` (HTML in
``docs/api/``, git-ignored; open ``docs/api/index.html``). Needs the ``docs`` extra.

Documents ``jaxdyn`` (its public names, :data:`jaxdyn.__all__`, resolved through the lazy
``__getattr__``) and every public submodule: pdoc alone would stop at ``jaxdyn``, whose ``__all__``
lists functions, not submodules. Modules whose name starts with ``_`` are internal and left out.
Every warning pdoc raises (an annotation it cannot resolve, a name in ``__all__`` that does not
resolve, a module that fails to import) is printed, and the exit status is then 1, with two benign
kinds left out (:data:`BENIGN`).
"""

from __future__ import annotations

import argparse
import pkgutil
import re
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

import jaxdyn

REPO = Path(__file__).resolve().parents[1]

#: pdoc warnings that are not problems of the docstrings: (1) the ``__init__`` that ``dataclasses``
#: or ``NamedTuple`` generate evaluates its annotations in the subclass's (or a synthetic)
#: namespace, where names imported by the base class's module (``Any``, ``Optional``, ``nets``)
#: are missing; the reference then shows them as written. (2) A subpackage whose ``__all__`` names
#: a submodule adds it a second time (one page is written).
BENIGN = (r"Error parsing type annotation .* for jaxdyn\.[\w.]+\.__init__\. Import of \w+ failed",
          r"The module specification '[\w.]+' adds a module named [\w.]+, but a module with this name has "
          r"already been added")


def public_modules() -> list[str]:
    """``jaxdyn`` and its submodules, recursively, without the private ones (``_name``)."""
    names = ["jaxdyn"]
    for info in pkgutil.walk_packages(jaxdyn.__path__, "jaxdyn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def build(out: Path) -> list[str]:
    """Write the HTML reference into ``out``; returns pdoc's warnings (empty when clean)."""
    pdoc.render.configure(docformat="google", show_source=False,
                          footer_text=f"jaxdyn {jaxdyn.__version__}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*public_modules(), output_directory=Path(out))
    return [f"{w.category.__name__}: {w.message}" for w in caught
            if not any(re.match(pattern, str(w.message)) for pattern in BENIGN)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/api_docs.py", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "api",
                   help="output folder (default docs/api)")
    args = p.parse_args(argv)
    problems = build(args.out)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"API reference: {args.out / 'index.html'}" + (f" ({len(problems)} warnings)" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
