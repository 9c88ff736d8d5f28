"""Calibrate a map's voxel size against a trusted model (what Phenix calls magref).

For each trial scale s (default 0.95-1.05 in 0.25 % steps) the map's voxel size is multiplied
by s about the model's centre and the model is rigid-body fitted and scored by the mean map
value at its atoms (coarse stage, every trial, one Dask task each); a window of trials around
that coarse optimum (grown until its best has three trials on each side) is then scored by
the CC between the map and the model map matched to its radial profile (with CC_mask). With
--refine every trial is refined (short restrained refinement) and scored that way. The
optimum is the vertex of a parabola through the best points (optionally polished by a Brent
search); its uncertainty is a bootstrap over residue segments. Prints the best voxel size and
the correction factor.
"""

from __future__ import annotations

import argparse

import numpy as np

from varref.atomic import atomic_path, check_outputs

from varref.commands.cluster_options import add_cluster_options, cluster_client
from varref.commands.option_types import positive_float, resolution
from varref.commands.options import (add_chemistry_options, add_json_option, add_overwrite_option,
                                     add_plots_option, add_refinement_options, json_output,
                                     plot_paths, refinement_options, write_json)
from varref.errors import InputError
from varref.maps import read_map, write_map
from varref.model import read_model, require_polymer

NAME = "pixel-scan"
HELP = "calibrate a map's voxel size against a model"


#: Trials a scan may have: fewer cannot place a parabola, more only cost time.
MIN_TRIALS, MAX_TRIALS = 3, 1000


def parse_range(text: str) -> tuple[float, float]:
    """``LOW:HIGH`` trial scales, ``0 < LOW < HIGH``, both finite.

    Raises
    ------
    InputError
        Naming ``--range``.
    """
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError("--range", f"expected LOW:HIGH such as 0.95:1.05, got {text!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise InputError("--range", f"needs finite 0 < LOW < HIGH, got {text!r}")
    return low, high


def trial_scales(low: float, high: float, step: float) -> np.ndarray:
    """The scan's trial scales, LOW to HIGH in ``step``; between :data:`MIN_TRIALS` and
    :data:`MAX_TRIALS` of them.

    Raises
    ------
    InputError
        Naming ``--step``.
    """
    n = int(np.floor((high - low) / step + 0.5)) + 1  # counted before any array is built
    if n < MIN_TRIALS:
        raise InputError("--step", f"{step:g} gives {n} trial(s) over {low:g}..{high:g}; needs at "
                         f"least {MIN_TRIALS} (a smaller step or a wider --range)")
    if n > MAX_TRIALS:
        raise InputError("--step", f"{step:g} gives {n} trials over {low:g}..{high:g}; at most "
                         f"{MAX_TRIALS} (a larger step or a narrower --range)")
    return np.round(low + step * np.arange(n), 10)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="trusted PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map")
    parser.add_argument("--resolution", type=resolution, required=True, metavar="D",
                        help="map resolution, Å (0.5-30)")
    parser.add_argument("--range", default="0.95:1.05", metavar="LOW:HIGH", help="trial scales")
    parser.add_argument("--step", type=positive_float, default=0.0025,
                        help=f"scale step ({MIN_TRIALS}-{MAX_TRIALS} trials over the range)")
    parser.add_argument("--refine", action="store_true", help="short restrained refinement after each fit")
    parser.add_argument("--anisotropic", action="store_true", help="also fit a scale per axis")
    parser.add_argument("--brent", action="store_true",
                        help="polish the parabola's optimum with a Brent search (serial; slow on large models)")
    parser.add_argument("-o", "--output", metavar="SCAN.nc",
                        help="CC-versus-scale curve (xarray, NetCDF) (default none)")
    add_plots_option(parser, "scan.png (CC versus scale)")
    # deprecated: the old single-plot option (a file, not a prefix)
    parser.add_argument("--plot", metavar="SCAN.png", help=argparse.SUPPRESS)
    add_json_option(parser, "best_voxel_size, scale, scale_sigma, ...")
    parser.add_argument("--write-map", metavar="CORRECTED.mrc",
                        help="the map with the corrected voxel size (default none)")
    add_overwrite_option(parser)
    add_cluster_options(parser, batches=False)
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
    axes.plot(scan["scale"].values, scan["cc_matched"].values, "o", ms=3, label="profile-matched CC (score)")
    axes.plot(scan["scale"].values, scan["cc_mask"].values, "s", ms=2, mfc="none", label="CC_mask")
    axes.axvline(result["scale"], color="C3", lw=1,
                 label=f"best {result['scale']:.4f} ± {result['scale_sigma']:.4f}")
    axes.set_xlabel("voxel-size scale")
    axes.set_ylabel("correlation")
    if np.isfinite(scan["atom_score"].values).any() and not bool(scan["scored"].all()):
        coarse = axes.twinx()
        coarse.plot(scan["scale"].values, scan["atom_score"].values, "-", color="0.6", lw=1,
                    label="mean map value at atoms (coarse stage)")
        coarse.set_ylabel("map value at atoms (σ)", color="0.4")
        coarse.legend(fontsize=8, loc="lower right")
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from varref.calibration import scaled_map, scaling_centre

    low, high = parse_range(args.range)
    scales = trial_scales(low, high, args.step)
    plot = args.plot or next(iter(plot_paths(args.plots, "scan.png")), None)
    inputs = (args.model, args.map, *args.restraints)
    check_outputs(((args.output, "--output"), (plot, "--plots"), (json_output(args.json), "--json"),
                   (args.write_map, "--write-map")), inputs, overwrite=args.overwrite)
    model = read_model(args.model)
    if args.refine:
        require_polymer(model)
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
    with cluster_client(args.scheduler, args.workers) as client:
        result = pixel_scan(model, density, args.resolution, scales=scales, refine=args.refine,
                            brent=args.brent, anisotropic=args.anisotropic, client=client,
                            restraints=restraints, progress=True, **options)
    scan = result["scan"]
    voxel = result["best_voxel_size"]
    print(f"header voxel size {np.round(density.voxel_size, 4).tolist()} Å")
    print(f"best scale {result['scale']:.5f} ± {result['scale_sigma']:.5f} (bootstrap over residue "
          f"segments {result['scale_sigma_bootstrap']:.5f} + method floor; scan-fit sigma "
          f"{result['scale_sigma_scan']:.5f})  "
          f"(matched CC {result['cc_matched_best']:.4f}, CC_mask {result['cc_mask_best']:.4f}; "
          f"{len(scales)} trials, {int(scan['scored'].sum())} scored by the matched CC)")
    if np.isfinite(result["scale_coarse"]):
        print(f"coarse optimum (mean map value at the atoms) {result['scale_coarse']:.5f}; start "
              f"offset from the translation search {np.round(result['start_offset'], 2).tolist()} Å")
    if args.anisotropic:
        print(f"per-axis scale {np.round(result['scale_xyz'], 4).tolist()}")
    print(f"best voxel size {np.round(voxel, 4).tolist()} Å")
    report = {"best_voxel_size": voxel.tolist(), "scale": result["scale"],
              "scale_sigma": result["scale_sigma"], "scale_sigma_bootstrap": result["scale_sigma_bootstrap"],
              "scale_sigma_scan": result["scale_sigma_scan"],
              "scale_xyz": result["scale_xyz"].tolist(), "cc_matched_best": result["cc_matched_best"],
              "header_voxel_size": density.voxel_size.tolist(), "cc_mask_best": result["cc_mask_best"],
              "trials": len(scales), "trials_scored": int(scan["scored"].sum()),
              "scale_coarse": result["scale_coarse"] if np.isfinite(result["scale_coarse"]) else None,
              "start_offset": np.asarray(result["start_offset"]).tolist(),
              "range": [low, high], "step": args.step, "refine": args.refine}
    if args.output:
        with atomic_path(args.output) as tmp:
            scan.to_netcdf(tmp, engine="scipy")
    if plot:
        plot_scan(scan, result, plot)
    write_json(args.json, report)
    if args.write_map:
        write_map(scaled_map(density, result["scale_xyz"], scaling_centre(model)), args.write_map)
    return 0
