"""Benchmark one engine evaluation: map target + all restraints, value and gradient.

Cases (../shared/data; skipped when absent):
  trpv1   2,500 atoms   (EMD-5778 TM crop model)
  6out    11,505 atoms
  3j6r    17,214 atoms  (backbone + hydrogens: no side chains, no chiral centres)
and the batched path for K = 1, 10, 100 copies of the 2,500-atom model against calling the
single-model path K times from Python.

Each model is evaluated on a 3 Å map simulated from it (tricubic interpolation, hydrogens
excluded from the map term). The neighbour list is built once beforehand (as in
refinement, where it is rebuilt only when an atom moves by more than half the buffer); the
build time is reported separately. Times are medians over ``--repeats`` rounds of
``--number`` calls, single thread (NUMBA_NUM_THREADS=1).

Usage:  NUMBA_NUM_THREADS=1 python benchmarks/engine.py [--repeats 21] [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = {
    "trpv1": "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb",
    "6out": "models/6out.pdb",
    "3j6r": "models/3j6r.pdb",
}


def median_time(call, repeats: int, number: int) -> float:
    """Median over ``repeats`` rounds of the mean time of ``number`` calls (s)."""
    call()  # warm-up (compilation, caches)
    rounds = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(number):
            call()
        rounds.append((time.perf_counter() - began) / number)
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not SHARED.exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0

    from varref.engine.map_target import (
        map_target_value_gradient,
        map_target_value_gradient_batched,
        map_target_weights,
    )
    from varref.engine.restraint_target import (
        pack_restraints,
        restraint_value_and_gradient,
        restraint_values_and_gradients_batch,
    )
    from varref.engine.neighbours import BatchNonbondedPairs
    from varref.model import read_model
    from varref.restraints import build_restraints
    from varref.simulate import simulate_map

    rows, batch_rows = [], []
    prepared = {}
    for case, relative in CASES.items():
        model = read_model(SHARED / relative)
        packed = pack_restraints(build_restraints(model))
        density = simulate_map(model, 3.0).normalised()
        weights = map_target_weights(model.atomic_number, model.is_hydrogen)
        xyz = model.xyz.copy()
        neighbours = packed.neighbour_list()
        build_time = median_time(lambda: neighbours.rebuild(xyz), 5, 3)
        pairs = neighbours.update(xyz)
        map_grad = np.empty_like(xyz)
        restraint_grad = np.empty_like(xyz)

        def map_only():
            map_target_value_gradient(density.data, density.origin, density.voxel_size, xyz, weights,
                                      out=map_grad)

        def restraints_only():
            restraint_value_and_gradient(xyz, packed, pairs, grad=restraint_grad)

        def both():
            map_only()
            restraints_only()

        t_map = median_time(map_only, args.repeats, args.number)
        t_restraints = median_time(restraints_only, args.repeats, args.number)
        t_both = median_time(both, args.repeats, args.number)
        rows.append({"case": case, "atoms": model.n_atoms, "map_ms": 1e3 * t_map,
                     "restraints_ms": 1e3 * t_restraints, "total_ms": 1e3 * t_both,
                     "us_per_atom": 1e6 * t_both / model.n_atoms, "pairs": len(pairs),
                     "pair_build_ms": 1e3 * build_time})
        print(rows[-1], flush=True)
        prepared[case] = (model, packed, density, weights, pairs)

    model, packed, density, weights, pairs = prepared["trpv1"]
    for k in (1, 10, 100):
        xyz = np.repeat(model.xyz[np.newaxis], k, axis=0) + np.random.default_rng(0).normal(
            scale=0.02, size=(k, model.n_atoms, 3))
        batch_pairs = BatchNonbondedPairs(np.concatenate([pairs.pairs] * k),
                                          np.concatenate([pairs.contact] * k),
                                          np.arange(k + 1, dtype=np.int64) * len(pairs))

        def batched():
            map_target_value_gradient_batched(density.data, density.origin, density.voxel_size, xyz, weights)
            restraint_values_and_gradients_batch(xyz, packed, batch_pairs)

        def looped():
            for j in range(k):
                map_target_value_gradient(density.data, density.origin, density.voxel_size, xyz[j], weights)
                restraint_value_and_gradient(xyz[j], packed, pairs)

        number = max(1, args.number // k)
        t_batch = median_time(batched, args.repeats, number)
        t_loop = median_time(looped, args.repeats, number)
        batch_rows.append({"K": k, "batched_ms": 1e3 * t_batch, "loop_ms": 1e3 * t_loop,
                           "speedup": t_loop / t_batch})
        print(batch_rows[-1], flush=True)

    if args.markdown:
        print(f"\nmachine: {platform.machine()}, {platform.system()} {platform.release()}, "
              f"Python {platform.python_version()}")
        print("| model | atoms | map target (ms) | restraints (ms) | total (ms) | µs/atom | pair-list build (ms) |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['atoms']} | {r['map_ms']:.3f} | {r['restraints_ms']:.3f} | "
                  f"{r['total_ms']:.3f} | {r['us_per_atom']:.3f} | {r['pair_build_ms']:.2f} |")
        print("\n| K (2,500-atom copies) | batched (ms) | K single calls (ms) | throughput ratio |")
        print("|---|---|---|---|")
        for r in batch_rows:
            print(f"| {r['K']} | {r['batched_ms']:.2f} | {r['loop_ms']:.2f} | {r['speedup']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
