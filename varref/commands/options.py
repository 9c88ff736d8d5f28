"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse


def add_chemistry_options(parser: argparse.ArgumentParser) -> None:
    """``--monlib`` and ``--restraints``: where restraint dictionaries come from."""
    parser.add_argument(
        "--monlib", metavar="DIR",
        help="CCP4 monomer library directory (default: $CLIBD_MON, else the copy shipped "
        "with coot-headless-api)",
    )
    parser.add_argument(
        "--restraints", metavar="FILE.cif", action="append", default=[],
        help="extra restraint dictionary for a ligand or modified residue (repeatable)",
    )
