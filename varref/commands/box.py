"""Cut the part of a map around a model (plus a margin) and write it as MRC.

The box keeps the original grid (no resampling): its origin moves by whole voxels, so the
boxed map overlays the original exactly. ``--normalise`` scales it to zero mean and unit
r.m.s. over the box. A model entirely outside the map is an error (exit 2, nothing written).
"""

from __future__ import annotations

import argparse

import numpy as np

from varref.atomic import check_outputs
from varref.commands.option_types import float_in
from varref.commands.options import add_overwrite_option
from varref.maps import read_map, write_map
from varref.model import read_model

NAME = "box"
HELP = "cut a map around a model and write it as MRC"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map or MTZ map coefficients")
    parser.add_argument("-o", "--output", required=True, help="output .mrc")
    add_overwrite_option(parser)
    parser.add_argument("--margin", type=float_in(0.0, 1000.0, unit="Å"), default=5.0,
                        help="Å around the model (default 5)")
    parser.add_argument("--normalise", action="store_true", help="zero mean, unit r.m.s.")


def run(args: argparse.Namespace) -> int:
    check_outputs(((args.output, "--output"),), (args.model, args.map), overwrite=args.overwrite)
    model = read_model(args.model)
    density = read_map(args.map)
    boxed = density.box_around(model.xyz, margin=args.margin)
    if args.normalise:
        boxed = boxed.normalised()
    inside = density.contains(model.xyz)
    write_map(boxed, args.output)
    nx, ny, nz = boxed.shape_xyz
    print(f"wrote {nx}x{ny}x{nz} box to {args.output}; "
          f"{inside.mean() * 100:.1f}% of {model.n_atoms} atoms inside the map")
    if not inside.all():
        print(f"warning: {np.count_nonzero(~inside)} atoms lie outside the map")
    return 0
