"""varref: real-space refinement of atomic models against cryo-EM maps, one model or thousands.

Refine, run ensembles and series, calibrate, validate — from Python::

    import varref
    result = varref.refine("model.cif", "map.mrc", resolution=3.4)
    result.write("refined.cif")
    ensemble = varref.refine_ensemble("model.cif", "map.mrc", 3.4, n_models=20, perturb_rmsd=1.0)
    spread = varref.precision(ensemble)

See docs/api.md for every function with an example and docs/architecture.md for where
everything lives.
"""

__version__ = "0.1.0"

from varref.errors import InputError  # noqa: E402
from varref.maps import Map, read_map, write_map  # noqa: E402
from varref.model import Model, read_model, read_models, write_ensemble, write_model  # noqa: E402
from varref.restraints import Restraints, build_restraints  # noqa: E402
from varref.refinement.options import RefineOptions  # noqa: E402
from varref.example_data import example_helix  # noqa: E402
from varref.engine.parallel import set_threads  # noqa: E402
from varref.api import (  # noqa: E402
    RefinementResult,
    analyse,
    open_results,
    perturb,
    pixel_scan,
    precision,
    refine,
    refine_ensemble,
    refine_series,
    series_inputs,
    simulate_map,
    validate,
    write_chimerax,
)

__all__ = [
    "InputError",
    "Map",
    "Model",
    "RefineOptions",
    "RefinementResult",
    "Restraints",
    "analyse",
    "build_restraints",
    "example_helix",
    "open_results",
    "perturb",
    "pixel_scan",
    "precision",
    "read_map",
    "read_model",
    "read_models",
    "refine",
    "refine_ensemble",
    "refine_series",
    "series_inputs",
    "set_threads",
    "simulate_map",
    "validate",
    "write_chimerax",
    "write_ensemble",
    "write_map",
    "write_model",
]
