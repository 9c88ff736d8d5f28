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
from varref.commands.options import add_chemistry_options
from varref.errors import InputError
from varref.maps import read_map
from varref.model import read_model
from varref.refine.protocol import RefineOptions
from varref.restraints import build_restraints

NAME = "ensemble"
HELP = "refine an ensemble of perturbed starting models (precision)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map or MTZ map coefficients")
    parser.add_argument("--resolution", type=float, required=True, help="map resolution, Å")
    parser.add_argument("--n-models", type=int, required=True, help="ensemble size")
    parser.add_argument("--perturb-rmsd", type=float, required=True, help="Cα r.m.s.d. of the starts, Å")
    parser.add_argument("--output", "-o", required=True, help="results store, e.g. ENS.zarr")
    parser.add_argument("--seed", type=int, default=0, help="random seed (perturbations, weight search)")
    parser.add_argument("--weight", type=float, help="data weight (default: searched once on the input model)")
    parser.add_argument("--macro-cycles", type=int, default=5, help="default 5")
    parser.add_argument("--plot", metavar="PNG", help="per-residue spread plot (default OUTPUT_spread.png)")
    add_cluster_options(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    from varref.ensemble.cluster import dask_client
    from varref.ensemble.ensemble import run_ensemble
    from varref.ensemble.plots import plot_residue_spread
    from varref.ensemble.precision import precision

    if args.resolution <= 0:
        raise InputError("--resolution", "must be positive")
    if args.perturb_rmsd < 0:
        raise InputError("--perturb-rmsd", "must be >= 0")
    output = Path(args.output)
    if output.exists() and not args.resume:
        raise InputError(output, "exists; use --resume to continue it or choose another --output")
    model = read_model(args.model)
    density = read_map(args.map)
    density.box_around(model.xyz)  # the standard error when the model is outside the map
    restraints = build_restraints(model, monlib_dir=args.monlib, extra_cifs=args.restraints)
    options = RefineOptions(resolution=args.resolution, macro_cycles=args.macro_cycles,
                            weight=args.weight, seed=args.seed, final_cc=False)
    with dask_client(args.scheduler, args.workers) as client:
        dataset = run_ensemble(client, model, restraints, density, output, args.n_models,
                               args.perturb_rmsd, options, batch_size=args.batch_size,
                               resume=args.resume)
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
