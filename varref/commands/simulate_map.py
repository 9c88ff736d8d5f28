"""Simulate a map from a model: electron-scattering Gaussians blurred to the resolution
(B = 4 d²), optional extra B and Gaussian noise at a given signal-to-noise ratio.

Useful to test refinement on data whose truth is known.
"""

from __future__ import annotations

import argparse

from varref.errors import InputError
from varref.maps import write_map
from varref.model import read_model
from varref.simulate import simulate_map

NAME = "simulate-map"
HELP = "simulate a map from a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("--resolution", type=float, required=True, help="Å")
    parser.add_argument("--output", "-o", required=True, help="output .mrc")
    parser.add_argument("--b-extra", type=float, default=0.0, help="extra B for all atoms, Å²")
    parser.add_argument("--voxel", type=float, help="voxel size, Å (default resolution/3, at most 1)")
    parser.add_argument("--margin", type=float, default=6.0, help="box margin around the model, Å")
    parser.add_argument("--noise", type=float, metavar="SNR", help="add Gaussian noise at this SNR")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")


def run(args: argparse.Namespace) -> int:
    if args.resolution <= 0:
        raise InputError("--resolution", "must be positive")
    if args.voxel is not None and args.voxel <= 0:
        raise InputError("--voxel", "must be positive")
    if args.noise is not None and args.noise <= 0:
        raise InputError("--noise", "SNR must be positive")
    model = read_model(args.model)
    density = simulate_map(model, args.resolution, voxel_size=args.voxel, margin=args.margin,
                           b_extra=args.b_extra, snr=args.noise, seed=args.seed)
    write_map(density, args.output)
    nx, ny, nz = density.shape_xyz
    print(f"wrote {nx}x{ny}x{nz} map at {density.voxel_size[0]:.3f} Å/voxel to {args.output}")
    return 0
