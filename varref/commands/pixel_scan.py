"""Calibrate a map's voxel size against a trusted model (what Phenix calls magref).

For each trial scale s (default 0.95-1.05 in 0.25 % steps) the map's voxel size is multiplied
by s about the model's centre, the model is rigid-body fitted (optionally followed by a short
restrained refinement, --refine) and CC_mask is recorded; each trial is a Dask task. The
optimum is the vertex of a parabola through the best points (optionally polished by a Brent
search); its uncertainty comes from the parabola fit. Prints the best voxel size and the correction factor.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from varref.atomic import atomic_path
from varref.commands.options import add_chemistry_options, add_refinement_options, refinement_options
from varref.errors import InputError
from varref.maps import read_map, write_map
from varref.model import read_model

NAME = "pixel-scan"
HELP = "calibrate a map's voxel size against a model"


def parse_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError("--range", f"expected LOW:HIGH such as 0.95:1.05, got {text!r}") from None
    if not 0 < low < high:
        raise InputError("--range", f"needs 0 < LOW < HIGH, got {text!r}")
    return low, high


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="trusted PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map")
    parser.add_argument("--resolution", type=float, required=True, help="map resolution, Å")
    parser.add_argument("--range", default="0.95:1.05", help="trial scales LOW:HIGH (default 0.95:1.05)")
    parser.add_argument("--step", type=float, default=0.0025, help="scale step (default 0.0025)")
    parser.add_argument("--refine", action="store_true", help="short restrained refinement after each fit")
    parser.add_argument("--anisotropic", action="store_true", help="also fit a scale per axis")
    parser.add_argument("--brent", action="store_true",
                        help="polish the parabola's optimum with a Brent search (serial; slow on large models)")
    parser.add_argument("--output", metavar="SCAN.nc", help="CC-versus-scale curve (xarray, NetCDF)")
    parser.add_argument("--plot", metavar="SCAN.png", help="plot of the curve")
    parser.add_argument("--json", metavar="RESULT.json", help="best_voxel_size, scale, scale_sigma, ...")
    parser.add_argument("--write-map", metavar="CORRECTED.mrc", help="the map with the corrected voxel size")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    parser.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    add_refinement_options(parser, final_cc=False, macro_cycles=1, iterations=50,
                           title="refinement of each trial (with --refine)",
                           weight_help="data weight of refined trials (default: searched once at "
                           "the header's voxel size)")
    add_chemistry_options(parser)


def plot_scan(scan, result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.4), dpi=120)
    axes.plot(scan["scale"].values, scan["cc_mask"].values, "o", ms=3, label="rigid-body fit")
    axes.axvline(result["scale"], color="C3", lw=1,
                 label=f"best {result['scale']:.4f} ± {result['scale_sigma']:.4f}")
    axes.set_xlabel("voxel-size scale")
    axes.set_ylabel("CC_mask")
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from varref.calibration import scaled_map, scaling_centre
    from varref.ensemble.cluster import dask_client

    if args.resolution <= 0:
        raise InputError("--resolution", "must be positive")
    if args.step <= 0:
        raise InputError("--step", "must be positive")
    low, high = parse_range(args.range)
    scales = np.round(np.arange(low, high + args.step / 2, args.step), 10)
    model = read_model(args.model)
    density = read_map(args.map)
    density.require_orthogonal()
    density.box_around(model.xyz)  # the standard error when the model is outside the map
    from varref.api import pixel_scan

    restraints = None
    options = refinement_options(args) if args.refine else {}
    if args.refine:
        from varref.refinement.options import RefineOptions
        from varref.restraints import build_restraints

        RefineOptions(resolution=args.resolution, **options)
        restraints = build_restraints(model, monlib_dir=args.monlib, extra_cifs=args.restraints)
    with dask_client(args.scheduler, args.workers) as client:
        result = pixel_scan(model, density, args.resolution, scales=scales, refine=args.refine,
                            brent=args.brent, anisotropic=args.anisotropic, client=client,
                            restraints=restraints, progress=True, **options)
    scan = result["scan"]
    voxel = result["best_voxel_size"]
    print(f"header voxel size {np.round(density.voxel_size, 4).tolist()} Å")
    print(f"best scale {result['scale']:.4f} ± {result['scale_sigma']:.4f}  "
          f"(CC_mask {result['cc_mask_best']:.4f}; {len(scales)} trials)")
    if args.anisotropic:
        print(f"per-axis scale {np.round(result['scale_xyz'], 4).tolist()}")
    print(f"best voxel size {np.round(voxel, 4).tolist()} Å")
    report = {"best_voxel_size": voxel.tolist(), "scale": result["scale"],
              "scale_sigma": result["scale_sigma"], "scale_xyz": result["scale_xyz"].tolist(),
              "header_voxel_size": density.voxel_size.tolist(), "cc_mask_best": result["cc_mask_best"],
              "trials": len(scales), "range": [low, high], "step": args.step, "refine": args.refine}
    if args.output:
        with atomic_path(args.output) as tmp:
            scan.to_netcdf(tmp, engine="scipy")
    if args.plot:
        plot_scan(scan, result, args.plot)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    if args.write_map:
        write_map(scaled_map(density, result["scale_xyz"], scaling_centre(model)), args.write_map)
    return 0
