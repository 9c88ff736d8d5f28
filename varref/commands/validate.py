"""Validate a model, optionally against a map: geometry, clashscore, Ramachandran, rotamers,
C-beta deviations, cis/twisted peptides; with a map, CC_mask/box/volume/peaks, per-residue
CC and EMRinger.

Ramachandran and rotamer percentiles come from the MolProbity Top8000 grids in
--reference-data DIR (or $VARREF_REFERENCE_DATA). Without them, Ramachandran analysis uses
coot-headless-api and rotamers are not evaluated; the output says which source was used.
Definitions and references: docs/methods-validation.md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from varref.atomic import atomic_path, check_output_path, check_outputs
from varref.commands.option_types import resolution
from varref.commands.options import (add_json_option, add_overwrite_option, add_plots_option,
                                     json_output, plot_paths, write_json)
from varref.errors import InputError
from varref.maps import read_map
from varref.model import read_model
from varref.api import validate
from varref.validation import PER_RESIDUE_COLUMNS, format_summary, json_ready

NAME = "validate"
HELP = "validate a model (MolProbity-style checks; map fit with a map)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", nargs="?", help="MRC/CCP4 map or MTZ map coefficients (optional)")
    parser.add_argument("--resolution", type=resolution, metavar="D",
                        help="map resolution in Å, 0.5-30 (required with a map)")
    add_json_option(parser, "the full report")
    parser.add_argument("--per-residue", metavar="OUT.csv",
                        help="write the per-residue table (default none)")
    parser.add_argument("--reference-data", metavar="DIR",
                        help="MolProbity Top8000 grids (default $VARREF_REFERENCE_DATA)")
    add_plots_option(parser, "ramachandran_CLASS.png (Ramachandran plots)")
    add_overwrite_option(parser)
    parser.add_argument("--half-maps", nargs=2, metavar=("HALF1", "HALF2"),
                        help="half maps: FSC(model, half 1/2) and the half-map FSC (with "
                        "--resolution; MAP optional, their average is used)")


def run(args: argparse.Namespace) -> int:
    has_map = args.map is not None or args.half_maps is not None
    if has_map and args.resolution is None:
        raise InputError("--resolution", "a map was given: --resolution D (Å) is required")
    if args.resolution is not None and not has_map:
        raise InputError("--resolution", "given without a map")
    inputs = (args.model, args.map, *(args.half_maps or ()))
    check_outputs(((json_output(args.json), "--json"), (args.per_residue, "--per-residue")),
                  inputs, overwrite=args.overwrite)
    plots = plot_paths(args.plots, "ramachandran")
    if plots:
        # the plot files depend on the residues found; check the prefix and any old plots
        check_output_path(plots[0], inputs, "--plots")
        existing = sorted(plots[0].parent.glob(plots[0].name + "_*.png"))
        if existing and not args.overwrite:
            raise InputError("--plots", f"{existing[0]} exists; use --overwrite to replace it")
    model = read_model(args.model)
    if model.is_hydrogen.all():
        raise InputError(args.model, "has hydrogen atoms only; validation needs heavy atoms")
    density = read_map(args.map) if args.map is not None else None
    halves = None
    if args.half_maps:
        from varref.fsc import average_map, read_half_maps

        halves = read_half_maps(*args.half_maps)
        density = density if density is not None else average_map(*halves)
    if density is not None:
        density.require_orthogonal()
        if not density.contains(model.xyz).any():
            raise InputError(args.map or args.half_maps[0], "the model lies entirely outside the map")
    report = validate(model, density, args.resolution, args.reference_data, half_maps=halves)
    print(format_summary(report))
    if "fsc" in report:
        f = report["fsc"]
        line = (f"  FSC-average {f.get('fsc_average_model') or float('nan'):.3f}   d(FSC=0.5) "
                f"{f.get('d_fsc05_model') or float('nan'):.2f} Å")
        if "fsc_average_half" in f:
            line += (f"   half maps: FSC-average {f.get('fsc_average_half') or float('nan'):.3f}, "
                     f"d(FSC=0.143) {f.get('d_fsc0143_half') or float('nan'):.2f} Å")
        print(line)
    write_json(args.json, json_ready(report), indent=1)
    if args.json not in (None, "-"):
        print(f"wrote {args.json}")
    if args.per_residue:
        _write_csv(report["per_residue"], Path(args.per_residue))
        print(f"wrote {args.per_residue}")
    if plots:
        for path in _write_plots(report, plots[0]):
            print(f"wrote {path}")
    return 0


def _write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(PER_RESIDUE_COLUMNS))
            writer.writeheader()
            for row in json_ready(rows):
                writer.writerow({k: "" if row[k] is None else row[k] for k in PER_RESIDUE_COLUMNS})


def _write_plots(report: dict, prefix: Path) -> list[Path]:
    from varref.validation.plots import write_ramachandran_plots
    from varref.validation.ramachandran import load_ramachandran_tables

    tables = (load_ramachandran_tables(report["reference_data"])
              if report["reference_data"] else None)
    # the rows as they are: chain, number and name let the plot name its outliers
    rows = [row for row in report["per_residue"] if row["rama_status"] is not None]
    return write_ramachandran_plots(rows, tables, prefix.parent, prefix=prefix.name)
