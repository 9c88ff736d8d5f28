"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
import contextvars
import json
import sys
from pathlib import Path

from varref.atomic import atomic_path, prefixed_path
from varref.commands.option_types import count, float_in, index, positive_float


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


def add_refinement_options(parser: argparse.ArgumentParser, final_cc: bool = True,
                           weight_help: str = "data weight w (default: automatic search)",
                           macro_cycles: int = 5, iterations: int = 100,
                           title: str = "refinement") -> None:
    """The options of the refinement pipeline, the same for refine, ensemble, series and
    pixel-scan --refine (defaults shown in --help)."""
    group = parser.add_argument_group(title)
    group.add_argument("--macro-cycles", type=count, default=macro_cycles,
                       help=f"macro-cycles (default {macro_cycles})")
    group.add_argument("--iterations", type=count, default=iterations,
                       help=f"L-BFGS iterations per macro-cycle (default {iterations})")
    group.add_argument("--weight", type=positive_float, help=weight_help)
    group.add_argument("--rigid-body", action="store_true", help="rigid-body fit first (default off)")
    group.add_argument("--final-cc", action=argparse.BooleanOptionalAction, default=final_cc,
                       help="finish with a short density-correlation stage (default "
                       f"{'on' if final_cc else 'off'})")
    group.add_argument("--adp", action=argparse.BooleanOptionalAction, default=final_cc,
                       help="refine isotropic B-factors after the macro-cycles (default "
                       f"{'on' if final_cc else 'off'})")
    group.add_argument("--adp-mode", choices=("auto", "atom", "group"), default="auto",
                       help="per-atom B, one B per residue, or auto: group B at resolution worse "
                       "than 4 Å (default auto)")
    group.add_argument("--map-b", type=float_in(-1000.0, 1000.0, unit="Å²"), help="B (Å²) applied to the map: >0 blurs, <0 sharpens "
                       "(default none)")
    group.add_argument("--bond-rmsd-target", type=positive_float, default=0.01,
                       help="weight search target, Å (default 0.01)")
    group.add_argument("--angle-rmsd-target", type=positive_float, default=1.0,
                       help="weight search target, degrees (default 1.0)")
    group.add_argument("--seed", type=index, default=0, help="random seed (default 0)")
    group.add_argument("--hydrogens", choices=("riding", "restrained", "add"), default="riding",
                       help="the model's hydrogens ride on their parent atoms (positions "
                       "computed, non-bonded repulsion kept), are refined as atoms under their "
                       "restraints, or are built for every residue first and ride: fewer "
                       "clashes, slightly looser fit (default riding)")
    restraints = parser.add_argument_group("restraints (docs/methods-restraints.md)")
    restraints.add_argument("--ramachandran", action=argparse.BooleanOptionalAction, default=True,
                            help="Ramachandran restraints (default on)")
    restraints.add_argument("--cbeta", action=argparse.BooleanOptionalAction, default=True,
                            help="C-beta restraints (default on)")
    restraints.add_argument("--rotamer", action=argparse.BooleanOptionalAction, default=True,
                            help="side-chain rotamer restraints (default on)")
    restraints.add_argument("--rotamer-fit", action=argparse.BooleanOptionalAction, default=final_cc,
                            help="replace rotamer-outlier side chains by the best-fitting library "
                            f"rotamer before refining (default {'on' if final_cc else 'off'})")
    restraints.add_argument("--secondary-structure", action=argparse.BooleanOptionalAction, default=None,
                            help="backbone H-bond and base-pair restraints (default: on at 4 Å "
                            "or worse, off at better resolution)")
    restraints.add_argument("--ncs", action=argparse.BooleanOptionalAction, default=True,
                            help="torsion NCS restraints between copies of identical chains, found "
                            "automatically (default on)")
    restraints.add_argument("--reference-model", metavar="MODEL",
                            help="torsion restraints to a reference model file, or 'start' for the "
                            "starting model (default none)")


def refinement_options(args: argparse.Namespace) -> dict[str, object]:
    """The keyword arguments of :class:`~varref.refinement.options.RefineOptions` given on
    the command line (for :mod:`varref.api`)."""
    return {
        "macro_cycles": args.macro_cycles, "iterations": args.iterations, "weight": args.weight,
        "rigid_body": args.rigid_body, "final_cc": args.final_cc, "map_b": args.map_b,
        "adp": args.adp, "adp_mode": args.adp_mode,
        "bond_rmsd_target": args.bond_rmsd_target, "angle_rmsd_target": args.angle_rmsd_target,
        "seed": args.seed, "ramachandran": args.ramachandran, "cbeta": args.cbeta,
        "rotamer": args.rotamer, "rotamer_fit": args.rotamer_fit,
        "secondary_structure": args.secondary_structure, "reference_model": args.reference_model,
        "ncs": args.ncs, "hydrogens": args.hydrogens,
    }


# ------------------------------------------------------------------ outputs, one convention


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace existing output files (refused by default)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (default: refuse)")


def add_json_option(parser: argparse.ArgumentParser, what: str = "the report",
                    metavar: str = "FILE.json") -> None:
    """``--json FILE``: ``what`` as JSON; ``-`` writes it to stdout."""
    parser.add_argument("--json", metavar=metavar,
                        help=f"write {what} as JSON to this file, '-' for stdout (default none)")


def add_plots_option(parser: argparse.ArgumentParser, names: str, default: str = "none") -> None:
    """``--plots PREFIX``: every plot of a command is ``PREFIX_NAME.png`` (inside PREFIX if it
    is a directory or ends with /)."""
    parser.add_argument("--plots", metavar="PREFIX",
                        help=f"write the plots as PREFIX_{names} (PREFIX/... when PREFIX is "
                        f"a directory or ends with /) (default {default})")


def plot_paths(prefix: str | None, *names: str) -> list[Path]:
    """The files of ``--plots PREFIX`` (empty when no prefix)."""
    return [] if prefix is None else [prefixed_path(prefix, name) for name in names]


def json_output(path: str | None) -> str | None:
    """The ``--json`` file to check before the run (None for none or stdout)."""
    return None if path in (None, "-") else path


#: Where ``--json -`` writes: the real stdout, set by :func:`varref.cli.main`, which sends the
#: command's text report to stderr meanwhile so that stdout carries only the JSON.
JSON_STDOUT: contextvars.ContextVar = contextvars.ContextVar("json_stdout", default=None)


def write_json(path: str | None, data: object, indent: int = 2) -> None:
    """Write ``--json`` output: atomically to a file, or to stdout for ``-``."""
    if path is None:
        return
    text = json.dumps(data, indent=indent) + "\n"
    if path == "-":
        stream = JSON_STDOUT.get() or sys.stdout
        stream.write(text)
        stream.flush()
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, dest: str, **kwargs) -> None:
    """Accept an old option spelling, hidden from --help, storing into the new option's
    ``dest`` (the new option must then not be ``required=True``: see :func:`require`)."""
    parser.add_argument(old, dest=dest, help=argparse.SUPPRESS, **kwargs)


def require(args: argparse.Namespace, dest: str, option: str) -> None:
    """The check ``required=True`` would make, for an option that has a deprecated alias.

    Raises
    ------
    InputError
    """
    from varref.errors import InputError

    if getattr(args, dest, None) is None:
        raise InputError(option, "is required")
