"""Perturbed-start ensemble: perturb the model N times (smooth random fields to a Cα r.m.s.d.),
refine every member into the map with one weight, and collect coordinates and metrics in a
zarr store (xarray Dataset; finished members are written as they come, so a killed run keeps
them and --resume completes it). Reports the precision (per-atom/per-residue RMSF after
superposition, CC_mask mean/min/max) and plots the per-residue spread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varref.atomic import check_output_path, check_outputs
from varref.commands.cluster_options import add_cluster_options, cluster_client
from varref.commands.option_types import count, nonnegative_float, resolution
from varref.commands.options import (add_chemistry_options, add_deprecated_alias, require, add_overwrite_option, add_plots_option,
                                     add_refinement_options, plot_paths, refinement_options)
from varref.model import require_polymer
from varref.ensemble.urls import require_local
from varref.errors import InputError
from varref.refinement.options import RefineOptions

NAME = "ensemble"
HELP = "refine an ensemble of perturbed starting models (precision)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map or MTZ map coefficients")
    parser.add_argument("--resolution", type=resolution, required=True, metavar="D",
                        help="map resolution, Å (0.5-30)")
    parser.add_argument("--members", type=count, metavar="N",
                        help="ensemble size: members refined into the map (required)")
    add_deprecated_alias(parser, "--n-models", "members", type=count)
    parser.add_argument("--perturb-rmsd", type=nonnegative_float, required=True, metavar="RMSD",
                        help="Cα r.m.s.d. of the starts, Å")
    parser.add_argument("-o", "--output", required=True, help="results store, e.g. ENS.zarr")
    add_plots_option(parser, "spread.png (per-residue spread)", "OUTPUT without .zarr")
    # deprecated: the old single-plot option (a file, not a prefix)
    parser.add_argument("--plot", metavar="PNG", help=argparse.SUPPRESS)
    add_overwrite_option(parser)
    add_refinement_options(parser, final_cc=False,
                           weight_help="data weight (default: searched once on the input model)")
    add_cluster_options(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    from varref.api import as_map, as_model, refine_ensemble
    from varref.ensemble.plots import plot_residue_spread
    from varref.ensemble.precision import precision

    require(args, "members", "--members")
    options = refinement_options(args)
    RefineOptions(resolution=args.resolution, **options)  # every option checked before any reading
    require_local(args.output, "--output")  # before Path() turns s3://b into s3:/b
    output = Path(args.output)
    inputs = (args.model, args.map, *args.restraints)
    check_output_path(output, inputs, "--output", store=True)
    if output.exists() and not args.resume:
        raise InputError("--output", f"{output} exists; use --resume to continue it or choose "
                         "another --output")
    if args.resume and output.exists():
        from varref.ensemble.store_lock import check_not_locked

        check_not_locked(output)  # before a cluster is started for nothing
    plot = Path(args.plot) if args.plot else plot_paths(
        args.plots or str(output.with_suffix("")), "spread.png")[0]
    # a resumed run rewrites the plot it wrote before
    check_outputs(((plot, "--plots"),), (*inputs, output), overwrite=args.overwrite or args.resume)
    model = as_model(args.model)
    require_polymer(model)
    density = as_map(args.map)
    density.require_orthogonal()
    density.box_around(model.xyz)  # the standard error when the model is outside the map
    with cluster_client(args.scheduler, args.workers) as client:
        dataset = refine_ensemble(model, density, args.resolution, args.members, args.perturb_rmsd,
                                  client=client, store=output, batch_size=args.batch_size,
                                  resume=args.resume, monlib=args.monlib,
                                  extra_restraints=args.restraints, progress=True, **options)
    spread = precision(dataset)
    plot_residue_spread(spread["residue_number"].values, spread["residue_chain"].values,
                        spread["residue_rmsf"].values, plot,
                        f"{model.source}: {spread.attrs['n_members']} members")
    s = spread.attrs
    print(f"{s['n_members']} members refined; CC_mask mean {s['cc_mask_mean']:.3f} "
          f"(min {s['cc_mask_min']:.3f}, max {s['cc_mask_max']:.3f}); bond {s['bond_rmsd_mean']:.4f} Å, "
          f"angle {s['angle_rmsd_mean']:.2f}°; RMSF mean {s['rmsf_mean']:.2f} Å, max {s['rmsf_max']:.2f} Å")
    print(f"wrote {output} and {plot}")
    return 0
