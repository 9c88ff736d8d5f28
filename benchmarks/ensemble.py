"""Benchmark ensemble throughput: N perturbed members of the 2,500-atom TRPV1 model refined
into a 3 Å simulated map, with 1 and with 2 local Dask workers.

Each run is the library call `run_ensemble` on a fresh LocalCluster (cluster start-up and the
one weight search are included in the wall time; the model/map/restraints preparation is not).
Defaults as `varref ensemble`: 5 macro-cycles, batches of 10, 1.0 Å perturbations, all
restraint terms, no final CC stage, no B refinement, no rotamer fit (`varref ensemble` leaves
those three off). `--full-protocol` adds B refinement and the rotamer fit (what `varref
refine` does by default; the ensemble timings of 2026-11-30 morning used this, by mistake
described as the ensemble defaults). `--repeats N` times each worker count N times (median),
the counts taking turns within each repeat.

`--restraints-off` switches off the restraint terms added after the first release
(Ramachandran, C-beta, rotamers and rotamer fit, secondary structure, NCS) to time the
protocol of older builds.

Usage:  python benchmarks/ensemble.py [--members 100] [--workers 1,2] [--repeats 1]
                                     [--restraints-off] [--full-protocol] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--restraints-off", action="store_true")
    parser.add_argument("--full-protocol", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    model_path = SHARED / "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb"
    if not model_path.exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0
    from varref.ensemble.cluster import dask_client
    from varref.ensemble.ensemble import run_ensemble
    from varref.model import read_model
    from varref.refinement.options import RefineOptions
    from varref.restraints import build_restraints
    from varref.simulate import simulate_map

    model = read_model(model_path)
    restraints = build_restraints(model)
    density = simulate_map(model, 3.0)
    extra = (dict(ramachandran=False, cbeta=False, rotamer=False, rotamer_fit=False,
                  secondary_structure=False, ncs=False) if args.restraints_off else {})
    protocol = (dict(adp=True, rotamer_fit=True) if args.full_protocol
                else dict(adp=False, rotamer_fit=False))
    options = RefineOptions(resolution=3.0, final_cc=False, **protocol, **extra)
    rows = []
    counts = [int(w) for w in args.workers.split(",")]
    times: dict[int, list[float]] = {n: [] for n in counts}
    datasets = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the worker counts take turns within each repeat, so a drift in the machine's speed
        # (this VM's varies by 15-35 % between minutes) does not land on one count only
        for repeat in range(args.repeats):
            for n_workers in counts:
                store = Path(tmp) / f"ens{n_workers}.zarr"
                shutil.rmtree(store, ignore_errors=True)
                began = time.perf_counter()
                with dask_client(workers=n_workers, quiet=True) as client:
                    datasets[n_workers] = run_ensemble(client, model, restraints, density, store,
                                                       args.members, 1.0, options,
                                                       batch_size=args.batch_size, progress=False)
                times[n_workers].append(time.perf_counter() - began)
                print(f"workers {n_workers} run {repeat + 1}: {times[n_workers][-1]:.1f} s", flush=True)
        for n_workers in counts:
            dataset = datasets[n_workers]
            elapsed = float(np.median(times[n_workers]))
            heavy = ~model.is_hydrogen
            refined = dataset["xyz"].values[0].astype(np.float64)[:, heavy]
            start = dataset["start_xyz"].values[0].astype(np.float64)[:, heavy]
            to_truth = lambda x: np.sqrt(np.mean(np.sum((x - model.xyz[heavy]) ** 2, axis=-1), axis=-1))  # noqa: E731
            rows.append({"workers": n_workers, "wall_s": elapsed, "wall_s_all": times[n_workers],
                         "per_minute": 60 * args.members / elapsed,
                         "start_rmsd": float(np.median(to_truth(start))),
                         "refined_rmsd": float(np.median(to_truth(refined))),
                         "cc_mask_mean": float(dataset["cc_mask"].values.mean())})
            print(rows[-1], flush=True)
    if args.markdown:
        base = rows[0]["wall_s"]
        print(f"\n| workers | wall (s) for {args.members} members | refinements / min | speed-up | "
              "median r.m.s.d. start → refined (Å) | mean CC_mask |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['workers']} | {r['wall_s']:.1f} | {r['per_minute']:.1f} | {base / r['wall_s']:.2f} | "
                  f"{r['start_rmsd']:.2f} → {r['refined_rmsd']:.2f} | {r['cc_mask_mean']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
