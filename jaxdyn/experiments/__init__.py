"""The experiments: one module per table or figure of the paper, all with one protocol.

:data:`EXPERIMENTS` is the one list. The command line (``python -m jaxdyn <name>``),
``reproduce`` and ``REPORT.md`` iterate over it; nothing else registers an experiment.

The protocol (every module in the list defines)::

    name: str                                   # the command, e.g. "table1"
    title: str                                  # "Table 1 — κ of Theorem 2"
    Config                                      # a frozen dataclass: every knob, with scale and seed
    config(scale="quick", **overrides) -> Config   # the resolved config (ValueError on bad values)
    run(config, out, progress) -> dict          # the computation; JSON-able results
    plot(results, out) -> None                  # figures / Markdown tables from the results alone
    claims(results) -> list[dict]               # jaxdyn.experiments.claims.claim(...), verdicts
                                                # computed beside their rules

:func:`jaxdyn.experiments.runner.execute` runs one experiment into a directory: it writes
``config.json`` (the resolved config), ``<name>.json`` (the results), the plots and
``claims.json``. See ``docs/design.md`` for a 20-line example of adding an experiment.

Importing this package imports neither jax nor any experiment.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXPERIMENTS", "REPRODUCE", "load", "names"]

#: command name -> module, in the order ``--help`` lists them.
EXPERIMENTS: dict[str, str] = {
    "kappa-sweep": "jaxdyn.experiments.kappa_sweep",
    "table1": "jaxdyn.experiments.table1",
    "table2": "jaxdyn.experiments.table2",
    "appendix": "jaxdyn.experiments.appendix",
    "fig2": "jaxdyn.experiments.fig2",
    "fig3": "jaxdyn.experiments.fig3",
    "fig4": "jaxdyn.experiments.fig4",
    "fig5": "jaxdyn.experiments.fig5",
}

#: what ``reproduce`` runs, in order (Figure 5 before Figure 2, so that the standard AlexNet /
#: VGG-11 they share are trained with Figure 5's sharpness tracker).
REPRODUCE: tuple[str, ...] = ("table1", "table2", "appendix", "fig5", "fig2", "fig3", "fig4")


def names() -> list[str]:
    return list(EXPERIMENTS)


def load(name: str) -> ModuleType:
    """The module of experiment ``name`` (``ValueError`` naming the choices for an unknown one)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])
