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
import json
from pathlib import Path

from varref.atomic import atomic_path
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
    parser.add_argument("--resolution", type=float, metavar="D",
                        help="map resolution in Å (required with a map)")
    parser.add_argument("--json", metavar="OUT.json", help="write the full report as JSON")
    parser.add_argument("--per-residue", metavar="OUT.csv", help="write the per-residue table")
    parser.add_argument("--reference-data", metavar="DIR",
                        help="MolProbity Top8000 grids (default $VARREF_REFERENCE_DATA)")
    parser.add_argument("--plots", metavar="DIR", help="write Ramachandran plots (PNG) here")
    parser.add_argument("--half-maps", nargs=2, metavar=("HALF1", "HALF2"),
                        help="half maps: FSC(model, half 1/2) and the half-map FSC (with "
                        "--resolution; MAP optional, their average is used)")


def run(args: argparse.Namespace) -> int:
    has_map = args.map is not None or args.half_maps is not None
    if has_map and args.resolution is None:
        raise InputError("--resolution", "a map was given: --resolution D (Å) is required")
    if args.resolution is not None and not (0.5 <= args.resolution <= 30.0):
        raise InputError("--resolution", f"must be in 0.5..30 Å, got {args.resolution}")
    if args.resolution is not None and not has_map:
        raise InputError("--resolution", "given without a map")
    for option, output in (("--json", args.json), ("--per-residue", args.per_residue)):
        if output is not None and not Path(output).resolve().parent.is_dir():
            raise InputError(output, f"{option}: the output directory does not exist")
    model = read_model(args.model)
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
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(json_ready(report), indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.per_residue:
        _write_csv(report["per_residue"], Path(args.per_residue))
        print(f"wrote {args.per_residue}")
    if args.plots:
        for path in _write_plots(report, Path(args.plots)):
            print(f"wrote {path}")
    return 0


def _write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(PER_RESIDUE_COLUMNS))
            writer.writeheader()
            for row in json_ready(rows):
                writer.writerow({k: "" if row[k] is None else row[k] for k in PER_RESIDUE_COLUMNS})


def _write_plots(report: dict, directory: Path) -> list[Path]:
    from varref.validation.plots import write_ramachandran_plots
    from varref.validation.ramachandran import load_ramachandran_tables

    tables = (load_ramachandran_tables(report["reference_data"])
              if report["reference_data"] else None)
    # the rows as they are: chain, number and name let the plot name its outliers
    rows = [row for row in report["per_residue"] if row["rama_status"] is not None]
    return write_ramachandran_plots(rows, tables, directory)
