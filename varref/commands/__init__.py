"""Sub-commands of the ``varref`` CLI. Each module defines NAME, HELP, add_arguments(), run()."""

from varref.commands import (
    analyse,
    box,
    chimerax,
    convert,
    demo,
    ensemble,
    export,
    info,
    maps_to_zarr,
    perturb,
    pixel_scan,
    refine,
    restraints_report,
    series,
    simulate_map,
    validate,
)

COMMANDS = (demo, refine, ensemble, series, analyse, chimerax, pixel_scan, maps_to_zarr, export, validate, simulate_map, perturb, info,
            convert, restraints_report, box)
