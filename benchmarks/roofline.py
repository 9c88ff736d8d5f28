"""Where the physical limit is: the model-map kernels and the restraint kernel against this
machine's memory bandwidth and the work they must do per evaluation.

For each case (a box of `benchmarks/refine.py`: start model and simulated map) it measures

* the machine's memory bandwidth: a numba triad ``a = b + s c`` over 3 x 64 MB arrays, one
  thread and two (bytes moved = 3 x 8 per element; medians of 7);
* the model map of the correlation target (merged Gaussians, ``CORRELATION_CUTOFF``) and its
  coordinate gradient, one thread: grid points inside the atoms' spheres (the stencil), the
  bytes they must move at least (model map: read + write 8 bytes per stencil point; gradient:
  read 8), the time that takes at the measured bandwidth, and the measured time;
* the restraint kernel (bonds, angles, torsions, chiralities, planes, non-bonded pairs), one
  thread: restraint terms per evaluation and ns per term.

Usage:  python benchmarks/roofline.py [--cases trpv1-sim,3j6r] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent))


@njit(nogil=True, cache=True)
def _triad(a, b, c, scalar):
    for i in range(a.size):
        a[i] = b[i] + scalar * c[i]


@njit(parallel=True, cache=True)
def _triad_parallel(a, b, c, scalar):
    for i in prange(a.size):
        a[i] = b[i] + scalar * c[i]


@njit(cache=True)
def _stencil_points(xyz, radius, origin, voxel, shape):
    total = 0
    for i in range(xyz.shape[0]):
        r2 = radius[i] * radius[i]
        lo = np.empty(3, np.int64)
        hi = np.empty(3, np.int64)
        for axis in range(3):
            n = shape[2 - axis]
            lo[axis] = max(0, int(np.ceil((xyz[i, axis] - radius[i] - origin[axis]) / voxel[axis])))
            hi[axis] = min(n - 1, int(np.floor((xyz[i, axis] + radius[i] - origin[axis]) / voxel[axis])))
        for iz in range(lo[2], hi[2] + 1):
            dz = origin[2] + iz * voxel[2] - xyz[i, 2]
            for iy in range(lo[1], hi[1] + 1):
                dy = origin[1] + iy * voxel[1] - xyz[i, 1]
                for ix in range(lo[0], hi[0] + 1):
                    dx = origin[0] + ix * voxel[0] - xyz[i, 0]
                    if dx * dx + dy * dy + dz * dz <= r2:
                        total += 1
    return total


def median_time(function, repeats: int = 7) -> float:
    function()  # compile / warm the caches
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bandwidth() -> tuple[float, float]:
    """Triad bandwidth (GB/s) on one thread and on every thread numba has."""
    n = 8 * 1024 * 1024  # 64 MB per array: far beyond the caches
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    moved = 3 * 8 * n
    one = moved / median_time(lambda: _triad(a, b, c, 3.0)) / 1e9
    every = moved / median_time(lambda: _triad_parallel(a, b, c, 3.0)) / 1e9
    return one, every


def kernel_case(case: str, work: Path, gigabytes_per_s: float) -> dict:
    import refine as cases  # benchmarks/refine.py

    from varref.engine import model_map as mm
    from varref.engine.correlation import mask_radii, molecular_mask
    from varref.engine.restraint_target import pack_restraints, restraint_values_and_gradients_batch
    from varref.maps import read_map
    from varref.model import read_model
    from varref.restraints import build_restraints

    start, density_path, resolution, _ = cases.prepare(case, work)
    model, density = read_model(start), read_map(density_path)
    heavy = ~model.is_hydrogen
    xyz = np.ascontiguousarray(model.xyz[heavy])
    blur = mm.resolution_blur(resolution)
    coeff_a, coeff_b = mm.merged_coefficients(*mm.scattering_coefficients(model.element[heavy]),
                                              extra_b=float(model.b_iso[heavy].min()) + blur)
    amplitude, exponent = mm.atom_gaussians(coeff_a, coeff_b, model.b_iso[heavy], blur=blur)
    radius = mm.cutoff_radii(exponent, mm.CORRELATION_CUTOFF)
    origin, voxel = np.asarray(density.origin, float), np.asarray(density.voxel_size, float)
    grid = np.zeros(density.data.shape)
    # stencil: every grid point within R of an atom (inside the grid), counted exactly
    stencil = _stencil_points(xyz, radius, origin, voxel, np.array(grid.shape))
    mask = molecular_mask(xyz, mask_radii(model.element[heavy]), grid.shape, origin, voxel)
    weights = np.where(mask, 1.0, 0.0)
    gradient = np.zeros_like(xyz)

    def model_map():
        grid[:] = 0.0
        mm._add_model_density_kernel(xyz, amplitude, exponent, radius, origin, voxel, grid, 0,
                                     grid.shape[0] - 1)

    def coordinate_gradient():
        mm._coordinate_gradient_kernel(xyz, amplitude, exponent, radius, origin, voxel, weights,
                                       gradient)

    restraints = build_restraints(model)
    packed = pack_restraints(restraints)
    pair_list = packed.batch_neighbour_list()
    batch = model.xyz[np.newaxis].copy()
    pairs = pair_list.update(batch)
    n_terms = (len(restraints.bonds.ideal) + len(restraints.angles.ideal)
               + len(restraints.torsions.ideal) + len(restraints.chirals.ideal)
               + len(restraints.planes.atoms) + len(pairs.contact))
    restraint_time = median_time(lambda: restraint_values_and_gradients_batch(batch, packed, pairs))
    map_time, gradient_time = median_time(model_map), median_time(coordinate_gradient)
    return {
        "case": case, "heavy_atoms": int(heavy.sum()), "gaussians": int(amplitude.shape[1]),
        "grid": "x".join(str(n) for n in grid.shape[::-1]), "voxel": float(voxel[0]),
        "radius": float(np.median(radius)), "stencil_points": int(stencil),
        "map_ms": 1e3 * map_time, "map_bound_ms": 1e3 * 16 * stencil / (gigabytes_per_s * 1e9),
        "gradient_ms": 1e3 * gradient_time,
        "gradient_bound_ms": 1e3 * 8 * stencil / (gigabytes_per_s * 1e9),
        "ns_per_point_map": 1e9 * map_time / stencil, "ns_per_point_gradient": 1e9 * gradient_time / stencil,
        "restraint_terms": int(n_terms), "restraint_ms": 1e3 * restraint_time,
        "ns_per_term": 1e9 * restraint_time / n_terms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="trpv1-sim,3j6r")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    import refine as cases

    if not cases.SHARED.exists():
        print("../shared/data not found: nothing to measure", file=sys.stderr)
        return 0
    one, every = bandwidth()
    print(f"triad bandwidth: {one:.1f} GB/s on one thread, {every:.1f} GB/s on all", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            rows.append(kernel_case(case, Path(tmp), one))
            print(rows[-1], flush=True)
    if args.markdown:
        print(f"\nbandwidth (triad): {one:.1f} GB/s one thread, {every:.1f} GB/s all threads\n")
        print("| case | heavy atoms (Gaussians) | grid, voxel | stencil points (R) | model map: "
              "measured / bandwidth bound (ms), ns per point | gradient: measured / bound (ms), "
              "ns per point | restraint terms: ms, ns per term |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['heavy_atoms']} ({r['gaussians']}) | {r['grid']}, "
                  f"{r['voxel']:.2f} Å | {r['stencil_points'] / 1e6:.2f} M ({r['radius']:.1f} Å) | "
                  f"{r['map_ms']:.1f} / {r['map_bound_ms']:.1f}, {r['ns_per_point_map']:.1f} | "
                  f"{r['gradient_ms']:.1f} / {r['gradient_bound_ms']:.1f}, "
                  f"{r['ns_per_point_gradient']:.1f} | {r['restraint_terms']:,}: "
                  f"{r['restraint_ms']:.2f}, {r['ns_per_term']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
