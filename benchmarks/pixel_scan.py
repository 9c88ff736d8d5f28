"""Benchmark `varref pixel-scan` on a ~250k-atom model (MagRef: ~100 fits of 250k atoms in ~4 min).

The model is built in code: 15 copies of 3j6r (17,214 atoms each, backbone + hydrogens) on a
3 x 5 grid, 258,210 atoms. A 4 Å map is simulated from it and its header voxel size is mis-set
by +2 %. The scan is the library call `run_pixel_scan` with 41 trial scales (0.95-1.05 in
0.25 % steps, rigid-body fit + CC_mask per trial) on a LocalCluster of 2 workers; wall time
includes the cluster start-up, the map preparation, the Brent polish and the final CC.

Usage:  python benchmarks/pixel_scan.py [--copies 15] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tiled_model(path: Path, copies: int):
    """``copies`` translated copies of a model on a grid, as one Model (two-character chains)."""
    import gemmi

    from varref.model import Model

    st = gemmi.read_structure(str(path))
    st.setup_entities()
    xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in st[0] for r in ch for a in r])
    size = np.ptp(xyz, axis=0) + 4.0
    big = gemmi.Structure()
    big.cell = st.cell
    model = gemmi.Model(1)
    columns = int(np.ceil(np.sqrt(copies)))
    for k in range(copies):
        shift = gemmi.Position(*(size * np.array([k % columns, k // columns, 0])))
        for chain in st[0]:
            copy = chain.clone()
            copy.name = f"{chain.name}{k:02d}"
            for residue in copy:
                for atom in residue:
                    atom.pos = atom.pos + shift
            model.add_chain(copy)
    big.add_model(model)
    big.setup_entities()
    return Model.from_structure(big, source=f"{copies} x {path.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (SHARED / "models/3j6r.pdb").exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0
    from varref.calibration import run_pixel_scan
    from varref.ensemble.cluster import dask_client
    from varref.simulate import simulate_map

    began = time.perf_counter()
    model = tiled_model(SHARED / "models/3j6r.pdb", args.copies)
    truth = simulate_map(model, 4.0, voxel_size=4.0 / 3)
    wrong = replace(truth, voxel_size=truth.voxel_size * 1.02)
    print(f"model {model.n_atoms} atoms, map {wrong.shape_xyz} voxels "
          f"({wrong.data.nbytes / 2**20:.0f} MiB), built in {time.perf_counter() - began:.0f} s", flush=True)
    scales = np.round(np.arange(0.95, 1.0501, 0.0025), 6)
    began = time.perf_counter()
    with dask_client(workers=args.workers, quiet=True) as client:
        result = run_pixel_scan(client, model, wrong, 4.0, scales, progress=True)
    elapsed = time.perf_counter() - began
    print(f"{len(scales)}-point scan of {model.n_atoms} atoms with {args.workers} workers: {elapsed:.1f} s; "
          f"scale {result['scale']:.5f} (truth {1 / 1.02:.5f}), sigma {result['scale_sigma']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
