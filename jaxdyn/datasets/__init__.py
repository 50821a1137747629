"""MNIST: the four official files built in, the binary task and deterministic subsets.

The public surface is :data:`__all__`: the submodules, and the names below, each imported from its
module on first use (so that importing the package stays light and no import cycle can form).
"""

from __future__ import annotations

import importlib

#: submodules
SUBMODULES = ('loading',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'MNIST_DIR', 'MNIST_FILES', 'MNIST_MD5', 'TFDS', 'binary_task', 'fingerprint', 'load_mnist', 'subset'
    ), 'loading'),
}

__all__ = sorted(_API) + list(SUBMODULES)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    elif name in SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
