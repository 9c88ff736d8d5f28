"""Perturb a model smoothly to a target Cα r.m.s.d.: a random low-frequency displacement
field (wavelengths 15-30 Å by default) scaled to the target, then geometry regularisation by
the restraints alone. Reproducible from --seed.
"""

from __future__ import annotations

import argparse

from varref.commands.options import add_chemistry_options
from varref.errors import InputError
from varref.model import read_model, write_model
from varref.perturbation import calpha_rmsd, perturb
from varref.restraints import build_restraints

NAME = "perturb"
HELP = "perturb a model smoothly to a target Cα r.m.s.d."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("--rmsd", type=float, required=True, help="target Cα r.m.s.d., Å")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--wavelength", type=float, default=15.0, help="shortest wavelength of the field, Å")
    parser.add_argument("--output", "-o", required=True, help="output .pdb or .cif")
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.rmsd < 0:
        raise InputError("--rmsd", "must be >= 0")
    model = read_model(args.model)
    restraints = build_restraints(model, monlib_dir=args.monlib, extra_cifs=args.restraints)
    xyz = perturb(model, restraints, args.rmsd, seed=args.seed, wavelength=args.wavelength)
    write_model(model, args.output, xyz=xyz)
    print(f"wrote {args.output}: Cα r.m.s.d. {calpha_rmsd(model, xyz, model.xyz):.3f} Å from the input")
    return 0
