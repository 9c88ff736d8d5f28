"""Where an ensemble task spends its time: CPU seconds per stage of one batch of members.

One `refine_coordinates` call on a batch of perturbed TRPV1 members (the work of one Dask
task of `varref ensemble` with its defaults: 5 macro-cycles, no B refinement, no rotamer fit,
no final CC stage; `--full-protocol` adds B refinement and the rotamer fit),
in-process, with the weight given (an ensemble searches it once, on the client). Stages are
timed in process CPU time, so the split holds on a busy machine.

Usage:  python benchmarks/profile_ensemble_task.py [--members 10] [--full-protocol]
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
from dataclasses import replace
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STAGES = ("_fit_rotamers", "_refine_b", "minimise_lbfgs", "model_metrics")
LABELS = {"_fit_rotamers": "rotamer fit", "_refine_b": "adp", "minimise_lbfgs": "macro-cycles (L-BFGS)",
          "model_metrics": "metrics (before / after)"}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--full-protocol", action="store_true")
    args = parser.parse_args()
    model_path = SHARED / "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb"
    if not model_path.exists():
        print("../shared/data not found: nothing to profile", file=sys.stderr)
        return 0
    from varref.model import read_model
    from varref.perturbation import perturb_batch
    from varref.refinement import pipeline
    from varref.refinement.options import RefineOptions
    from varref.restraints import build_restraints
    from varref.simulate import simulate_map

    totals: dict[str, float] = {}

    def timed(name):
        function = getattr(pipeline, name)

        @functools.wraps(function)
        def wrapper(*a, **k):
            began = cpu()
            try:
                return function(*a, **k)
            finally:
                totals[name] = totals.get(name, 0.0) + cpu() - began
        setattr(pipeline, name, wrapper)

    for name in STAGES:
        timed(name)
    model = read_model(model_path)
    restraints = build_restraints(model)
    density = simulate_map(model, 3.0).prepared(model.xyz, 5.0)
    options = RefineOptions(resolution=3.0, final_cc=False, adp=args.full_protocol,
                            rotamer_fit=args.full_protocol)
    weight = pipeline.find_weight(model, density, restraints, model.xyz, options).weight
    options = replace(options, weight=weight)
    starts = perturb_batch(model, restraints, 1.0, list(range(args.members)))
    pipeline.refine_coordinates(model, density, restraints, starts[:2], options)  # warm-up (JIT)
    totals.clear()
    began = cpu()
    pipeline.refine_coordinates(model, density, restraints, starts, options)
    total = cpu() - began
    print(f"{args.members} TRPV1 members, weight {weight:.3g}: CPU {total:.1f} s "
          f"({total / args.members:.2f} s per member)")
    print("| stage | CPU (s) | share |")
    print("|---|---|---|")
    for name in STAGES:
        print(f"| {LABELS[name]} | {totals.get(name, 0.0):.2f} | {100 * totals.get(name, 0.0) / total:.0f} % |")
    rest = total - sum(totals.values())
    print(f"| rest | {rest:.2f} | {100 * rest / total:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
