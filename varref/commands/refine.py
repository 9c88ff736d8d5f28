"""Real-space refinement of one model into one map (the method of phenix.real_space_refine).

Minimises w·T_map + T_restraints with L-BFGS over 5 macro-cycles; the weight w is found by
short trial refinements of random 10-residue segments aiming at bond r.m.s.d. 0.01 Å and
angle r.m.s.d. 1.0° (Afonine et al. 2018), unless --weight is given. Writes the refined
model (format from the suffix) and, with --json, the weight, timing and before/after metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from varref.api import as_map, as_model, refine
from varref.atomic import atomic_path
from varref.commands.options import add_chemistry_options, add_refinement_options, refinement_options
from varref.model import write_model
from varref.refinement.options import RefineOptions

NAME = "refine"
HELP = "refine a model into a map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="PDB or mmCIF model")
    parser.add_argument("map", help="MRC/CCP4 map or MTZ map coefficients")
    parser.add_argument("--resolution", type=float, required=True, help="map resolution, Å")
    parser.add_argument("--output", "-o", help="refined model, .cif or .pdb "
                        "(default: MODEL_refined.cif)")
    parser.add_argument("--json", metavar="METRICS.json", help="write metrics as JSON (default none)")
    add_refinement_options(parser)
    add_chemistry_options(parser)


def run(args: argparse.Namespace) -> int:
    options = refinement_options(args)
    RefineOptions(resolution=args.resolution, **options)  # every option checked before any reading
    model = as_model(args.model)
    density = as_map(args.map)
    density.require_orthogonal()
    inside = density.contains(model.xyz)
    if not inside.any():
        density.box_around(model.xyz)  # raises the standard "entirely outside" error
    output = Path(args.output) if args.output else Path(args.model).with_name(
        Path(args.model).stem + "_refined.cif")
    result = refine(model, density, args.resolution, monlib=args.monlib,
                    extra_restraints=args.restraints, **options)
    write_model(model, output, xyz=result.xyz)
    report = {"model": args.model, "map": args.map, "output": str(output),
              "resolution": args.resolution, "atoms_outside_map": int(np.count_nonzero(~inside)),
              **result.to_dict()}
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    b, a = result.before, result.after
    print(f"refined {model.n_atoms} atoms in {result.runtime_s:.1f} s, weight {result.weight:.3g}")
    print(f"  cc_mask {b['cc_mask']:.4f} -> {a['cc_mask']:.4f}   cc_box {b['cc_box']:.4f} -> {a['cc_box']:.4f}")
    print(f"  bond rmsd {b['bond_rmsd']:.4f} -> {a['bond_rmsd']:.4f} Å   "
          f"angle rmsd {b['angle_rmsd']:.3f} -> {a['angle_rmsd']:.3f}°")
    print(f"wrote {output}")
    return 0
