"""A refined series ready for ChimeraX: one directory with a multi-model mmCIF and a script.

Writes DIR/series.cif (model k = frame k's best member; B column = per-atom displacement from
the reference frame, or the spread of the frame's members) and DIR/series.cxc, which opens
the maps as a volume series, contours every map to enclose the same volume (the model's
volume at 1.35 g/cm³ unless --volume), opens the models, colours them by B and adds sliders.
Maps from a MAPS.zarr store (or with --voxel-size) are written to DIR/maps/ as MRC; map files
are referenced where they are (absolute paths). Open with `chimerax DIR/series.cxc`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from varref.atomic import check_output_path
from varref.commands.option_types import index, positive_float
from varref.commands.options import add_overwrite_option
from varref.errors import InputError

NAME = "chimerax"
HELP = "write a refined series for ChimeraX: multi-model mmCIF, maps at equal volume, a .cxc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="results store written by varref series")
    parser.add_argument("maps", nargs="+", metavar="MAPS",
                        help="the maps the series was refined into, as given to varref series")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="directory to write (series.cif, series.cxc, maps/)")
    add_overwrite_option(parser)
    parser.add_argument("--b-column", choices=("displacement", "spread"), default="displacement",
                        help="per-atom value in the B column: displacement from the reference "
                        "frame, or spread of the frame's members (Å; default displacement)")
    parser.add_argument("--volume", type=positive_float, metavar="A3",
                        help="Å³ every map's contour encloses (default: the model's volume at "
                        "1.35 g/cm³)")
    parser.add_argument("--reference-frame", type=index, metavar="K",
                        help="frame the displacement is measured from (default: the run's)")
    parser.add_argument("--voxel-size", type=positive_float, metavar="A",
                        help="voxel size, Å, for every map instead of the headers' (as given to "
                        "varref series)")


def run(args: argparse.Namespace) -> int:
    from varref.ensemble.chimerax import write_chimerax
    from varref.ensemble.results import ResultStore
    from varref.ensemble.series_inputs import open_series

    output = Path(args.output)
    check_output_path(output, (args.store, *args.maps), "--output", store=True)
    if output.exists() and not output.is_dir():
        raise InputError("--output", f"{output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise InputError("--output", f"{output} is not empty; use --overwrite to replace it")
    dataset = ResultStore.open(args.store).dataset()
    series = open_series(args.maps, voxel_size=args.voxel_size)
    parent = output.parent if str(output.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=parent))
    try:  # built beside the output and renamed into place: no partial directory
        export = write_chimerax(dataset, series, tmp, b_column=args.b_column, volume=args.volume,
                                reference_frame=args.reference_frame, final_directory=output)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(export.frames)} models ({export.models}; B column: {args.b_column}, "
          f"up to {export.b_max:.2f} Å) and {export.script}")
    print(f"maps contoured to enclose {export.volume:.0f} Å³ each (levels "
          f"{export.levels.min():.4g} .. {export.levels.max():.4g}); open with: chimerax "
          f"{export.script}")
    return 0
