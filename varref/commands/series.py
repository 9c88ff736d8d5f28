"""Variability refinement: one refined model (or M) per map of a series, e.g. cryoSPARC 3DVA
frames or cryoDRGN volumes (what Phenix calls varref).

--mode chained (default) starts at the reference frame (default: the middle one) and walks
outward, each frame starting from its refined neighbour, so the ends of a large motion stay
inside the convergence radius; --mode independent starts every frame from the input model.
Results go to a zarr store as frames finish; plots of CC_mask per frame and of per-residue
displacement from the reference frame are written beside it. `varref export` writes the
per-frame models as one multi-model mmCIF.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varref.commands.cluster_options import add_cluster_options
from varref.commands.options import add_chemistry_options, add_refinement_options, refinement_options
from varref.errors import InputError
from varref.refinement.options import RefineOptions

NAME = "series"
HELP = "refine a model into every map of a series (variability)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model (the consensus)")
    parser.add_argument("maps", nargs="+", metavar="MAPS", help="a MAPS.zarr series, or map files "
                        "(sorted in natural order: frame_2 before frame_10)")
    parser.add_argument("--resolution", type=float, required=True, help="map resolution, Å")
    parser.add_argument("--output", "-o", required=True, help="results store, e.g. SERIES.zarr")
    parser.add_argument("--mode", choices=("chained", "independent"), default="chained",
                        help="default chained")
    parser.add_argument("--reference-frame", type=int, help="chained mode's first frame (default: middle)")
    parser.add_argument("--models-per-map", type=int, default=1, help="members per frame (default 1)")
    parser.add_argument("--perturb-rmsd", type=float, default=0.5,
                        help="Cα r.m.s.d. of members 2..M of each frame, Å (default 0.5)")
    parser.add_argument("--plots", metavar="PREFIX", help="plot file prefix (default: OUTPUT without .zarr)")
    add_refinement_options(parser, final_cc=False,
                           weight_help="data weight (default: searched on the reference frame)")
    add_cluster_options(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    from varref.api import as_model, refine_series
    from varref.ensemble.cluster import dask_client
    from varref.ensemble.mapseries import natural_sorted, open_maps
    from varref.ensemble.plots import plot_series_cc, plot_series_displacement
    from varref.ensemble.series import frame_summary

    options = refinement_options(args)
    RefineOptions(resolution=args.resolution, **options)  # every option checked before any reading
    output = Path(args.output)
    if output.exists() and not args.resume:
        raise InputError(output, "exists; use --resume to continue it or choose another --output")
    model = as_model(args.model)
    inputs = args.maps if len(args.maps) == 1 else natural_sorted(args.maps)
    series = open_maps(inputs, resolution=args.resolution)
    with dask_client(args.scheduler, args.workers) as client:
        dataset = refine_series(model, series, args.resolution, mode=args.mode, client=client,
                                store=output, reference_frame=args.reference_frame,
                                models_per_map=args.models_per_map, perturb_rmsd=args.perturb_rmsd,
                                batch_size=args.batch_size, resume=args.resume, monlib=args.monlib,
                                extra_restraints=args.restraints, progress=True, **options)
    reference = len(series) // 2 if args.reference_frame is None else args.reference_frame
    summary = frame_summary(dataset, reference)
    prefix = args.plots or str(output.with_suffix(""))
    plot_series_cc(summary["frames"], summary["cc_best"], f"{prefix}_cc.png", f"{args.mode} refinement")
    plot_series_displacement(summary["frames"], dataset["residue_number"].values,
                             summary["residue_displacement"], f"{prefix}_displacement.png",
                             f"displacement from frame {reference}")
    for frame, cc in zip(summary["frames"], summary["cc_best"]):
        print(f"frame {frame:3d}  {series.sources[frame]}  CC_mask {cc:.3f}")
    print(f"wrote {output}, {prefix}_cc.png, {prefix}_displacement.png")
    return 0
