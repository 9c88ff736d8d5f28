"""Perturb a model smoothly to a target Cα r.m.s.d.: a random low-frequency displacement
field (wavelengths 15-30 Å by default) scaled to the target, then geometry regularisation by
the restraints alone. Reproducible from --seed.
"""

from __future__ import annotations

import argparse

from varref.atomic import check_outputs
from varref.commands.option_types import index, nonnegative_float, positive_float
from varref.commands.options import add_chemistry_options, add_overwrite_option
from varref.model import read_model, require_polymer, write_model
from varref.perturbation import calpha_rmsd, perturb
from varref.restraints import build_restraints

NAME = "perturb"
HELP = "perturb a model smoothly to a target Cα r.m.s.d."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("--rmsd", type=nonnegative_float, required=True, help="target Cα r.m.s.d., Å")
    parser.add_argument("--seed", type=index, default=0, help="random seed")
    parser.add_argument("--wavelength", type=positive_float, default=15.0,
                        help="shortest wavelength of the field, Å")
    parser.add_argument("-o", "--output", required=True, help="output .pdb or .cif")
    add_overwrite_option(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    check_outputs(((args.output, "--output"),), (args.model, *args.restraints),
                  overwrite=args.overwrite)
    model = read_model(args.model)
    require_polymer(model)
    restraints = build_restraints(model, monlib_dir=args.monlib, extra_cifs=args.restraints)
    xyz = perturb(model, restraints, args.rmsd, seed=args.seed, wavelength=args.wavelength)
    write_model(model, args.output, xyz=xyz)
    print(f"wrote {args.output}: Cα r.m.s.d. {calpha_rmsd(model, xyz, model.xyz):.3f} Å from the input")
    return 0
