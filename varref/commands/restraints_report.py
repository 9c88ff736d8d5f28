"""Build a model's restraints from the monomer library and report them.

Prints the number of each restraint type and how far the model deviates from the ideal
values (r.m.s. and largest deviation, restraints beyond 4 sigma) for every restraint kind,
bonds and angles among heavy atoms and with hydrogens (see
:func:`varref.engine.geometry_stats.geometry_statistics`). ``--json`` writes the same
numbers to a file.
"""

from __future__ import annotations

import argparse

from varref.atomic import check_outputs
from varref.commands.options import (add_chemistry_options, add_json_option, add_overwrite_option,
                                     json_output, write_json)
from varref.engine.geometry_stats import geometry_statistics
from varref.model import read_model
from varref.restraints import build_restraints

NAME = "restraints"
HELP = "build restraints from the monomer library and report deviations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    add_chemistry_options(parser)
    add_json_option(parser)
    add_overwrite_option(parser)


def run(args: argparse.Namespace) -> int:
    check_outputs(((json_output(args.json), "--json"),), (args.model, *args.restraints),
                  overwrite=args.overwrite)
    model = read_model(args.model)
    restraints = build_restraints(model, monlib_dir=args.monlib, extra_cifs=args.restraints)
    report = {"model": args.model, "atoms": model.n_atoms, "counts": restraints.counts(),
              "deviations": geometry_statistics(model.xyz, restraints)}
    print(f"{args.model}: {model.n_atoms} atoms")
    for kind, count in report["counts"].items():
        print(f"  {kind:26s} {count:8d}")
    for kind, stats in report["deviations"].items():
        print(f"  {kind:26s} rmsd {stats['rmsd']:8.4f}  max {stats['max_deviation']:8.3f}  "
              f"> 4 sigma {stats['n_outliers_4sigma']:6d}  (n={stats['n']})")
    write_json(args.json, report)
    return 0
