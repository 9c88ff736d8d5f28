"""varref: real-space refinement of atomic models against cryo-EM maps, one model or thousands.

The public entry points: :func:`read_model` / :class:`Model`, :func:`read_map` / :class:`Map`,
:func:`build_restraints`. See docs/architecture.md for where everything lives.
"""

__version__ = "0.1.0"

from varref.errors import InputError  # noqa: E402
from varref.maps import Map, read_map, write_map  # noqa: E402
from varref.model import Model, read_model, read_models, write_ensemble, write_model  # noqa: E402
from varref.restraints import Restraints, build_restraints  # noqa: E402

__all__ = [
    "InputError",
    "Map",
    "Model",
    "Restraints",
    "build_restraints",
    "read_map",
    "read_model",
    "read_models",
    "write_ensemble",
    "write_map",
    "write_model",
]
