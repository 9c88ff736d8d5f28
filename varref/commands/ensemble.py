"""Perturbed-start ensemble: perturb the model N times (smooth random fields to a Cα r.m.s.d.),
refine every member into the map with one weight, and collect coordinates and metrics in a
zarr store (xarray Dataset; finished members are written as they come, so a killed run keeps
them and --resume completes it). Reports the precision (per-atom/per-residue RMSF after
superposition, CC_mask mean/min/max) and plots the per-residue spread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varref.commands.cluster_options import add_cluster_options
from varref.commands.options import add_chemistry_options, add_refinement_options, refinement_options
from varref.errors import InputError
from varref.refinement.options import RefineOptions

NAME = "ensemble"
HELP = "refine an ensemble of perturbed starting models (precision)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map or MTZ map coefficients")
    parser.add_argument("--resolution", type=float, required=True, help="map resolution, Å")
    parser.add_argument("--n-models", type=int, required=True, help="ensemble size")
    parser.add_argument("--perturb-rmsd", type=float, required=True, help="Cα r.m.s.d. of the starts, Å")
    parser.add_argument("--output", "-o", required=True, help="results store, e.g. ENS.zarr")
    parser.add_argument("--plot", metavar="PNG", help="per-residue spread plot (default OUTPUT_spread.png)")
    add_refinement_options(parser, final_cc=False,
                           weight_help="data weight (default: searched once on the input model)")
    add_cluster_options(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    from varref.api import as_map, as_model, refine_ensemble
    from varref.ensemble.cluster import dask_client
    from varref.ensemble.plots import plot_residue_spread
    from varref.ensemble.precision import precision

    options = refinement_options(args)
    RefineOptions(resolution=args.resolution, **options)  # every option checked before any reading
    if args.perturb_rmsd < 0:
        raise InputError("--perturb-rmsd", "must be >= 0")
    output = Path(args.output)
    if output.exists() and not args.resume:
        raise InputError(output, "exists; use --resume to continue it or choose another --output")
    model = as_model(args.model)
    density = as_map(args.map)
    density.box_around(model.xyz)  # the standard error when the model is outside the map
    with dask_client(args.scheduler, args.workers) as client:
        dataset = refine_ensemble(model, density, args.resolution, args.n_models, args.perturb_rmsd,
                                  client=client, store=output, batch_size=args.batch_size,
                                  resume=args.resume, monlib=args.monlib,
                                  extra_restraints=args.restraints, progress=True, **options)
    spread = precision(dataset)
    plot = Path(args.plot) if args.plot else output.with_name(output.stem + "_spread.png")
    plot_residue_spread(spread["residue_number"].values, spread["residue_chain"].values,
                        spread["residue_rmsf"].values, plot,
                        f"{model.source}: {spread.attrs['n_members']} members")
    s = spread.attrs
    print(f"{s['n_members']} members refined; CC_mask mean {s['cc_mask_mean']:.3f} "
          f"(min {s['cc_mask_min']:.3f}, max {s['cc_mask_max']:.3f}); bond {s['bond_rmsd_mean']:.4f} Å, "
          f"angle {s['angle_rmsd_mean']:.2f}°; RMSF mean {s['rmsf_mean']:.2f} Å, max {s['rmsf_max']:.2f} Å")
    print(f"wrote {output} and {plot}")
    return 0
