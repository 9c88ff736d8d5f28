"""Variability refinement: one refined model (or M) per map of a series, e.g. cryoSPARC 3DVA
frames or cryoDRGN volumes (what Phenix calls varref).

--mode chained (default) starts at the reference frame (default: the middle one) and walks
outward, each frame starting from its refined neighbour, so the ends of a large motion stay
inside the convergence radius; --mode independent starts every frame from the input model;
--mode joint refines all frames together with a smoothness prior along the frames, so noisy
frames borrow strength from their neighbours.
Results go to a zarr store as frames finish; plots of CC_mask per frame and of per-residue
displacement from the reference frame are written beside it. `varref export` writes the
per-frame models as one multi-model mmCIF.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varref.atomic import check_output_path, check_outputs
from varref.commands.cluster_options import add_cluster_options, cluster_client
from varref.commands.option_types import (
    count,
    float_in,
    index,
    nonnegative_float,
    positive_float,
    resolution,
)
from varref.commands.options import (add_chemistry_options, add_deprecated_alias, add_overwrite_option,
                                     add_plots_option, add_refinement_options, plot_paths,
                                     refinement_options)
from varref.model import require_polymer
from varref.ensemble.urls import require_local
from varref.errors import InputError
from varref.refinement.options import RefineOptions

NAME = "series"
HELP = "refine a model into every map of a series (variability)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model (the consensus)")
    parser.add_argument("maps", nargs="+", metavar="MAPS",
                        help="a MAPS.zarr series, or map files, directories, globs or a .txt list "
                        "of maps (3DVA components, cryoDRGN directories, RELION classes ordered "
                        "numerically; other maps in natural order: frame_2 before frame_10)")
    parser.add_argument("--resolution", type=resolution, required=True, metavar="D",
                        help="map resolution, Å (0.5-30)")
    parser.add_argument("-o", "--output", required=True, help="results store, e.g. SERIES.zarr")
    parser.add_argument("--mode", choices=("chained", "independent", "joint"), default="chained",
                        help="chained: walk outward from the reference frame; independent: every "
                        "frame from the input model; joint: all frames together with a "
                        "trajectory (smoothness) prior")
    parser.add_argument("--smoothness", type=float_in(low=2.0, unit="frames"), metavar="FRAMES",
                        help="joint mode: cut-off period of the trajectory prior, frames (paths "
                        "changing over fewer frames are damped; default: half the series, at "
                        "least 3)")
    parser.add_argument("--joint-weight", type=nonnegative_float, metavar="LAMBDA",
                        help="joint mode: the prior weight itself (default: from --smoothness and "
                        "the data term's curvature)")
    parser.add_argument("--joint-scheme", choices=("single", "alternating"), default="single",
                        help="joint mode: one task per batch of trajectories (default), or frames "
                        "spread over the workers, alternating until converged (long series)")
    parser.add_argument("--joint-start", choices=("chained", "input"), default="chained",
                        help="joint mode: start from the chained walk's models (default) or every "
                        "frame from the input model")
    parser.add_argument("--voxel-size", type=positive_float, metavar="A",
                        help="voxel size, Å, for every map instead of the headers' (cryoDRGN "
                        "writes 1 Å without a CTF file)")
    parser.add_argument("--reference-frame", type=index, metavar="K",
                        help="chained mode's first frame, 0-based (default: middle)")
    parser.add_argument("--members", type=count, default=1, metavar="M",
                        help="members refined into each map")
    add_deprecated_alias(parser, "--models-per-map", "members", type=count)
    parser.add_argument("--perturb-rmsd", type=nonnegative_float, default=0.5, metavar="RMSD",
                        help="Cα r.m.s.d. of members 2..M of each frame, Å")
    add_plots_option(parser, "cc.png and PREFIX_displacement.png", "OUTPUT without .zarr")
    add_overwrite_option(parser)
    add_refinement_options(parser, final_cc=False,
                           weight_help="data weight (default: searched on the reference frame)")
    add_cluster_options(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    from varref.api import as_model, refine_series
    from varref.ensemble.series_inputs import open_series
    from varref.ensemble.plots import plot_series_cc, plot_series_displacement
    from varref.ensemble.series import frame_summary

    options = refinement_options(args)
    RefineOptions(resolution=args.resolution, **options)  # every option checked before any reading
    require_local(args.output, "--output")  # before Path() turns s3://b into s3:/b
    output = Path(args.output)
    inputs = (args.model, *args.maps, *args.restraints)
    check_output_path(output, inputs, "--output", store=True)
    if output.exists() and not args.resume:
        raise InputError("--output", f"{output} exists; use --resume to continue it or choose "
                         "another --output")
    if args.resume and output.exists():
        from varref.ensemble.store_lock import check_not_locked

        check_not_locked(output)  # before a cluster is started for nothing
    prefix = args.plots or str(output.with_suffix(""))
    plots = plot_paths(prefix, "cc.png", "displacement.png")
    # a resumed run rewrites the plots it wrote before
    check_outputs([(plot, "--plots") for plot in plots], (*inputs, output),
                  overwrite=args.overwrite or args.resume)
    model = as_model(args.model)
    require_polymer(model)
    series = open_series(args.maps, args.resolution, voxel_size=args.voxel_size, progress=True)
    if args.reference_frame is not None and args.reference_frame >= len(series):
        raise InputError("--reference-frame", f"{args.reference_frame} is not a frame of the "
                         f"{len(series)}-frame series (0..{len(series) - 1})")
    with cluster_client(args.scheduler, args.workers) as client:
        dataset = refine_series(model, series, args.resolution, mode=args.mode, client=client,
                                store=output, reference_frame=args.reference_frame,
                                models_per_map=args.members, perturb_rmsd=args.perturb_rmsd,
                                batch_size=args.batch_size, resume=args.resume, monlib=args.monlib,
                                smoothness=args.smoothness, joint_weight=args.joint_weight,
                                **({"joint_start": args.joint_start, "joint_scheme": args.joint_scheme}
                                   if args.mode == "joint" else {}),
                                extra_restraints=args.restraints, progress=True, **options)
    reference = len(series) // 2 if args.reference_frame is None else args.reference_frame
    summary = frame_summary(dataset, reference)
    plot_series_cc(summary["frames"], summary["cc_best"], plots[0], f"{args.mode} refinement")
    plot_series_displacement(summary["frames"], dataset["residue_number"].values,
                             summary["residue_displacement"], plots[1],
                             f"displacement from frame {reference}")
    components = series.components
    for frame, cc in zip(summary["frames"], summary["cc_best"]):
        group = f"  {components[frame]}" if components is not None else ""
        print(f"frame {frame:3d}{group}  {series.sources[frame]}  CC_mask {cc:.3f}")
    print(f"wrote {output}, {plots[0]}, {plots[1]}")
    return 0
