"""Build a model's restraints from the monomer library and report them.

Prints the number of each restraint type and how far the model deviates from the ideal
values (r.m.s. deviations and the share of restraints within 4 sigma), bonds and angles
with and without hydrogens. ``--json`` writes the same numbers to a file.
"""

from __future__ import annotations

import argparse
import json

from varref.atomic import atomic_path
from varref.commands.options import add_chemistry_options
from varref.model import read_model
from varref.restraints import build_restraints
from varref.restraints.deviations import deviation_summary

NAME = "restraints"
HELP = "build restraints from the monomer library and report deviations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    add_chemistry_options(parser)
    parser.add_argument("--json", metavar="OUT.json", help="write the report as JSON")


def run(args: argparse.Namespace) -> int:
    model = read_model(args.model)
    restraints = build_restraints(model, monlib_dir=args.monlib, extra_cifs=args.restraints)
    report = {"model": args.model, "atoms": model.n_atoms, "counts": restraints.counts(),
              "deviations": deviation_summary(model.xyz, restraints, model.is_hydrogen)}
    print(f"{args.model}: {model.n_atoms} atoms")
    for kind, count in report["counts"].items():
        print(f"  {kind:26s} {count:8d}")
    for kind, stats in report["deviations"].items():
        print(f"  {kind:26s} rmsd {stats['rmsd']:8.4f}  max {stats['max']:8.3f}  "
              f"within 4 sigma {stats['fraction_within_4_sigma'] * 100:5.1f}%  (n={stats['n']})")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    return 0
