"""MNIST: the four official files built in, the binary task and deterministic subsets.

The public surface is :data:`__all__`: the names below, each imported from its module on first use
(:func:`jaxdyn._internal.lazy.attach`), and the submodules.
"""

from __future__ import annotations

from jaxdyn._internal.lazy import attach

#: submodules
SUBMODULES = ('loading',)

#: public name -> the submodule that defines it
_API: dict[str, str] = {
    **dict.fromkeys((
        'MNIST_DIR', 'MNIST_FILES', 'MNIST_MD5', 'TFDS', 'binary_task', 'fingerprint', 'load_mnist', 'subset'
    ), 'loading'),
}

__getattr__, __dir__, __all__ = attach(__name__, _API, SUBMODULES)
