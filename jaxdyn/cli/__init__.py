"""The command line, ``python -m jaxdyn <command>``: one command per experiment (flags from its
``Config``), and ``train``, ``reproduce`` and ``models``. :func:`main` is the entry point."""

from jaxdyn.cli.app import CommandError, main

__all__ = ["CommandError", "main"]
