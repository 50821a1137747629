"""A package's public surface, imported on first use (PEP 562).

Every package of jaxdyn lists its public names in one dict, name -> the submodule that defines
it, and its submodules; :func:`attach` turns them into the package's ``__getattr__``, ``__dir__``
and ``__all__``. Importing a package then imports none of its submodules (``import jaxdyn`` pulls
in neither jax nor optax), and no import cycle can form between the packages.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping, Sequence

__all__ = ["attach"]


def attach(package: str, api: Mapping[str, str], submodules: Sequence[str] = ()
           ) -> tuple[Callable[[str], object], Callable[[], list], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``api`` maps each public name to the
    module that defines it (relative to ``package``, or absolute when it starts with ``jaxdyn.``);
    ``submodules`` are public too. ``__all__`` is the sorted names, then the submodules."""
    names = sorted(api) + [m for m in submodules if m not in api]
    pkg = importlib.import_module(package)

    def __getattr__(name: str):
        if name in api:
            mod = api[name] if api[name].startswith("jaxdyn.") else f"{package}.{api[name]}"
            value = getattr(importlib.import_module(mod), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(pkg, name, value)
        return value

    def __dir__():
        return sorted(set(vars(pkg)) | set(names))

    return __getattr__, __dir__, names
