"""Real-space refinement of one model into one map (the method of phenix.real_space_refine).

Minimises w·T_map + T_restraints with L-BFGS over 5 macro-cycles; the weight w is found by
short trial refinements of random 10-residue segments aiming at bond r.m.s.d. 0.01 Å and
angle r.m.s.d. 1.0° (Afonine et al. 2018), unless --weight is given. Writes the refined
model (format from the suffix; cell of the map's box, software and refinement records), a
log (OUT.log) and the full parameter set (OUT.params.json) beside it, prints a before/after
validation table, and with --json the weight, timing, metrics and that table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from varref import __version__
from varref.api import as_map, as_model, refine
from varref.atomic import atomic_path, check_outputs
from varref.commands.option_types import resolution
from varref.commands.options import (add_chemistry_options, add_json_option, add_overwrite_option,
                                     add_plots_option, add_refinement_options, json_output,
                                     plot_paths, refinement_options, write_json)
from varref.model import RefinementRecord, require_polymer, write_model
from varref.errors import InputError
from varref.refinement.options import RefineOptions

log = logging.getLogger(__name__)

NAME = "refine"
HELP = "refine a model into a map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", nargs="?", help="MRC/CCP4 map or MTZ map coefficients (optional "
                        "with --half-maps: their average is refined against)")
    parser.add_argument("--resolution", type=resolution, required=True, metavar="D",
                        help="map resolution, Å (0.5-30)")
    parser.add_argument("-o", "--output", help="refined model, .cif or .pdb "
                        "(default: MODEL_refined.cif); OUT.log and OUT.params.json are written beside it")
    add_overwrite_option(parser)
    add_json_option(parser, "the metrics")
    parser.add_argument("--half-maps", nargs=2, metavar=("HALF1", "HALF2"),
                        help="half maps: FSC(model, half 1/2) and the half-map FSC are reported "
                        "(default none)")
    parser.add_argument("--cross-validate", action="store_true",
                        help="also refine against half 1 alone and compare the FSC with half 1 "
                        "(work) and half 2 (free) to show over-fitting (needs --half-maps)")
    parser.add_argument("--fsc", action=argparse.BooleanOptionalAction, default=True,
                        help="map-model FSC of the start and the result in the report (default "
                        "on; costs a few seconds on large boxes)")
    parser.add_argument("--fsc-out", metavar="FSC.nc|FSC.json",
                        help="map-model FSC curves of the result (default none)")
    add_plots_option(parser, "fsc.png (map-model FSC curves)")
    # deprecated spelling of --plots for the one plot refine writes (a file, not a prefix)
    parser.add_argument("--fsc-plot", metavar="FSC.png", help=argparse.SUPPRESS)
    parser.add_argument("--summary", action=argparse.BooleanOptionalAction, default=True,
                        help="validate the start and the result and print a before/after table "
                        "(default on)")
    parser.add_argument("--reference-data", metavar="DIR",
                        help="MolProbity Top8000 grids for the summary's Ramachandran/rotamer "
                        "numbers (default $VARREF_REFERENCE_DATA)")
    add_refinement_options(parser)
    add_chemistry_options(parser)


def _companions(output: Path) -> tuple[Path, Path]:
    stem = output.with_suffix("")
    return stem.with_name(stem.name + ".log"), stem.with_name(stem.name + ".params.json")


def run(args: argparse.Namespace) -> int:
    options = refinement_options(args)
    checked = RefineOptions(resolution=args.resolution, **options)  # checked before any reading
    if args.map is None and not args.half_maps:
        raise InputError("map", "give a map or --half-maps HALF1 HALF2")
    if args.cross_validate and not args.half_maps:
        raise InputError("--cross-validate", "needs --half-maps HALF1 HALF2")
    output = Path(args.output) if args.output else Path(args.model).with_name(
        Path(args.model).stem + "_refined.cif")
    log_path, params_path = _companions(output)
    if output.suffix.lower() not in (".cif", ".mmcif", ".pdb", ".ent"):
        raise InputError("--output", f"{output}: use a .cif or .pdb suffix")
    inputs = (args.model, args.map, *(args.half_maps or ()), *args.restraints,
              args.reference_model if args.reference_model != "start" else None)
    fsc_plot = args.fsc_plot or next(iter(plot_paths(args.plots, "fsc.png")), None)
    check_outputs(((output, "--output"), (log_path, "--output"), (params_path, "--output"),
                   (json_output(args.json), "--json"), (args.fsc_out, "--fsc-out"),
                   (fsc_plot, "--plots")), inputs, overwrite=args.overwrite)
    if args.fsc_out and Path(args.fsc_out).suffix.lower() not in (".nc", ".json"):
        raise InputError("--fsc-out", "use a .nc or .json suffix")
    model = as_model(args.model)
    require_polymer(model)
    halves = None
    if args.half_maps:
        from varref.fsc import average_map, read_half_maps

        halves = read_half_maps(*args.half_maps)
    density = as_map(args.map) if args.map else average_map(*halves)
    density.require_orthogonal()
    inside = density.contains(model.xyz)
    if not inside.any():
        density.box_around(model.xyz)  # raises the standard "entirely outside" error
    parameters = {"program": "varref refine", "version": __version__, "model": args.model,
                  "map": args.map, "output": str(output), "resolution": args.resolution,
                  "options": checked.as_dict(), "monlib": args.monlib, "restraints": args.restraints}
    # the log file receives everything the console log does, written atomically at the end
    records: list[str] = []
    handler = _ListHandler(records)
    logger = logging.getLogger("varref")
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:  # the file gets INFO even when the console does not
        logger.setLevel(logging.INFO)
    try:
        result = refine(model, density, args.resolution, monlib=args.monlib,
                        extra_restraints=args.restraints, half_maps=halves, fsc=args.fsc,
                        validation=args.summary, reference_data=args.reference_data, **options)
        rows = _summary(result) if args.summary else []
        cross = None
        if args.cross_validate:
            from varref.fsc import cross_validate

            log.info("cross-validation: refining against half map 1 alone")
            cross = cross_validate(model, halves[0], halves[1], args.resolution,
                                   restraints=None, **options).to_dict()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    after = result.after
    geometry = result.model  # the refined model
    record = RefinementRecord(
        program="varref", version=__version__, resolution=args.resolution,
        cell=tuple(float(v) for v in np.array(density.shape_xyz) * density.voxel_size),
        cc_mask=after.get("cc_mask"), cc_box=after.get("cc_box"), bond_rmsd=after.get("bond_rmsd"),
        angle_rmsd=after.get("angle_rmsd"), mean_b=float(np.mean(geometry.b_iso[~geometry.is_hydrogen])))
    write_model(result.model, output, record=record)
    report = {"model": args.model, "map": args.map, "output": str(output),
              "resolution": args.resolution, "atoms_outside_map": int(np.count_nonzero(~inside)),
              **result.to_dict(), "summary": rows}
    if cross is not None:
        report["cross_validation"] = cross
    if args.fsc_out or fsc_plot:
        from varref.api import fsc_curves

        curves = fsc_curves(result.model, result.xyz, density, args.resolution, halves)
        if args.fsc_out:
            from varref.fsc import write_fsc

            write_fsc(curves, args.fsc_out)
        if fsc_plot:
            from varref.fsc import plot_fsc

            plot_fsc(curves, fsc_plot, title=f"{output.name}: map-model FSC")
    if rows:
        from varref.refinement.summary import format_summary_table

        table = format_summary_table(rows)
        records.append(table)
    with atomic_path(log_path) as tmp:
        tmp.write_text("\n".join(records) + "\n")
    with atomic_path(params_path) as tmp:
        tmp.write_text(json.dumps(parameters, indent=2) + "\n")
    write_json(args.json, report)
    b, a = result.before, result.after
    print(f"refined {model.n_atoms} atoms in {result.runtime_s:.1f} s, weight {result.weight:.3g}")
    print(f"  cc_mask {b['cc_mask']:.4f} -> {a['cc_mask']:.4f}   cc_box {b['cc_box']:.4f} -> {a['cc_box']:.4f}")
    print(f"  bond rmsd {b['bond_rmsd']:.4f} -> {a['bond_rmsd']:.4f} Å   "
          f"angle rmsd {b['angle_rmsd']:.3f} -> {a['angle_rmsd']:.3f}°")
    if rows:
        print(table)
    if cross is not None:
        print(f"cross-validation (refined against half 1): FSC-average work "
              f"{cross['fsc_average_work']:.4f}, free {cross['fsc_average_free']:.4f}, "
              f"gap {cross['fsc_average_gap']:.4f}")
    print(f"wrote {output}, {log_path.name}, {params_path.name}")
    return 0


def _summary(result) -> list[dict]:
    """The before/after table: validation of the start and of the result (computed by
    :func:`varref.api.refine`) and their FSCs."""
    from varref.refinement.summary import summary_rows

    before, after = dict(result.validation["before"]), dict(result.validation["after"])
    if result.fsc:
        before["fsc"], after["fsc"] = result.fsc["before"], result.fsc["after"]
    return summary_rows(before, after)


class _ListHandler(logging.Handler):
    """Collects formatted log records (the refinement log written beside the output)."""

    def __init__(self, records: list[str]) -> None:
        super().__init__(level=logging.INFO)
        self.records = records
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))
