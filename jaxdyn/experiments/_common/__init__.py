"""Helpers shared by the experiments (private: the experiments' own toolbox, not public API).

One namespace (``from jaxdyn.experiments import _common as C``) over three files: generic helpers
(:mod:`.core`), what the tables share (:mod:`.tables`) and what Figures 3-4 share
(:mod:`.influence`). No experiment imports another experiment: what two of them share lives here
or in the engine.
"""

from jaxdyn.experiments._common.core import *  # noqa: F401,F403
from jaxdyn.experiments._common.core import __all__ as _core
from jaxdyn.experiments._common.influence import *  # noqa: F401,F403
from jaxdyn.experiments._common.influence import __all__ as _influence
from jaxdyn.experiments._common.tables import *  # noqa: F401,F403
from jaxdyn.experiments._common.tables import __all__ as _tables

__all__ = [*_core, *_tables, *_influence]
