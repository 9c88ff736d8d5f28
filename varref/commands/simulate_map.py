"""Simulate a map from a model: electron-scattering Gaussians blurred to the resolution
(B = 4 d²), optional extra B and Gaussian noise at a given signal-to-noise ratio.

Useful to test refinement on data whose truth is known.
"""

from __future__ import annotations

import argparse

from varref.atomic import check_outputs
from varref.commands.option_types import float_in, index, positive_float, resolution
from varref.commands.options import add_overwrite_option
from varref.maps import write_map
from varref.model import read_model
from varref.simulate import simulate_map

NAME = "simulate-map"
HELP = "simulate a map from a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("--resolution", type=resolution, required=True, metavar="D",
                        help="Å (0.5-30)")
    parser.add_argument("-o", "--output", required=True, help="output .mrc")
    add_overwrite_option(parser)
    parser.add_argument("--b-extra", type=float_in(-100.0, 1000.0, unit="Å²"), default=0.0,
                        help="extra B for all atoms, Å²")
    parser.add_argument("--voxel", type=float_in(0.05, 10.0, unit="Å"),
                        help="voxel size, Å (default resolution/3, at most 1)")
    parser.add_argument("--margin", type=float_in(0.0, 100.0, unit="Å"), default=6.0,
                        help="box margin around the model, Å")
    parser.add_argument("--noise", type=positive_float, metavar="SNR",
                        help="add Gaussian noise at this SNR (default none)")
    parser.add_argument("--seed", type=index, default=0, help="noise seed")


def run(args: argparse.Namespace) -> int:
    check_outputs(((args.output, "--output"),), (args.model,), overwrite=args.overwrite)
    model = read_model(args.model)
    density = simulate_map(model, args.resolution, voxel_size=args.voxel, margin=args.margin,
                           b_extra=args.b_extra, snr=args.noise, seed=args.seed)
    write_map(density, args.output)
    nx, ny, nz = density.shape_xyz
    print(f"wrote {nx}x{ny}x{nz} map at {density.voxel_size[0]:.3f} Å/voxel to {args.output}")
    return 0
