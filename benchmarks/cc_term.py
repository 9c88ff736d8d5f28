"""Time the parts of one density-correlation evaluation (the final stage's data term).

On one model of ``benchmarks/refine.py``'s cases with a map simulated from it (4 Å for 3j6r,
3 Å otherwise; hydrogens, if any, kept as in the file), the term is built as the pipeline
builds it (merged Gaussians, mask cut to its box) and these are timed, medians over
``--repeats`` rounds of ``--number`` calls (threads as the process has them):

  model map        the merged-Gaussian model map on the term's box (``add_model_density``)
  CC + dCC/drho    masked sums and dCC/drho at the mask's points (``masked_correlation``)
  gradient         the coordinate gradient from dCC/drho (``coordinate_gradient_parts``)
  term             the whole evaluation (``DensityCorrelationTerm.evaluate``)

The term's value and gradient sum are printed to 12 digits, so two builds can be compared
number for number: run the script with each build's Python, alternating, e.g.
``for i in 1 2 3; do NEW/bin/python benchmarks/cc_term.py; OLD/bin/python
benchmarks/cc_term.py; done``. Builds without ``derivative_grid`` (before the eleventh
pass) overwrite the model map with dCC/drho; their map is restored before each timed call.

Usage:  python benchmarks/cc_term.py [--case 3j6r] [--repeats 7] [--number 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = {"3j6r": ("models/3j6r.pdb", 4.0), "6out": ("models/6out.pdb", 3.0),
         "trpv1": ("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", 3.0)}


def median_ms(call, repeats: int, number: int, before=None) -> float:
    """Median over ``repeats`` rounds of the mean time of ``number`` calls (ms); ``before``
    runs untimed before each call."""
    call()
    rounds = []
    for _ in range(repeats):
        total = 0.0
        for _ in range(number):
            if before is not None:
                before()
            start = time.perf_counter()
            call()
            total += time.perf_counter() - start
        rounds.append(total / number * 1e3)
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="3j6r", choices=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=20)
    args = parser.parse_args()
    path, resolution = CASES[args.case]
    if not (SHARED / path).exists():
        print(f"{SHARED / path} not found: nothing to benchmark", file=sys.stderr)
        return 0

    import varref
    from varref.engine import cc_target
    from varref.engine.model_map import add_model_density, coordinate_gradient_parts
    from varref.model import read_model
    from varref.refinement.options import RefineOptions
    from varref.refinement.terms import FINAL, TermSetup, build_data_terms
    from varref.simulate import simulate_map

    model = read_model(SHARED / path)
    options = RefineOptions(resolution=resolution)
    density = simulate_map(model, resolution).prepared(model.xyz, options.box_margin,
                                                       options.map_b)
    xyz = model.xyz[np.newaxis].copy()
    term = build_data_terms(TermSetup(model, None, None, density, options, xyz, None), FINAL)[0]
    data, members = term.correlation[0], np.arange(1)
    heavy_xyz = np.ascontiguousarray(xyz[0][term.heavy])
    amplitude, exponent, radius = term_gaussians(term)
    model_grid = np.zeros(data.shape)

    def model_map():
        add_model_density(model_grid, data.origin, data.voxel_size, heavy_xyz, amplitude,
                          exponent, radius, zero=True)

    model_map()
    reference = model_grid.copy()
    if hasattr(cc_target, "derivative_grid"):
        derivative = cc_target.derivative_grid(data)

        def correlation():
            cc_target.masked_correlation(model_grid, data, derivative)
        restore = None
    else:  # the older API overwrites the model map with dCC/drho
        derivative = model_grid

        def correlation():
            cc_target.masked_correlation(model_grid, data, derivative=True)

        def restore():
            model_grid[...] = reference
    gradient = np.empty_like(heavy_xyz)

    def coordinate_gradient():
        coordinate_gradient_parts(heavy_xyz, amplitude, exponent, radius, data.origin,
                                  data.voxel_size, derivative, gradient)

    rows = {"model map": median_ms(model_map, args.repeats, args.number)}
    rows["CC + dCC/drho"] = median_ms(correlation, args.repeats, args.number, restore)
    if restore is not None:
        restore()
    correlation()
    rows["gradient"] = median_ms(coordinate_gradient, args.repeats, args.number)
    rows["term"] = median_ms(lambda: term.evaluate(xyz, members), args.repeats, args.number)
    value, term_gradient = term.evaluate(xyz, members)
    n_points = int(np.prod(data.shape))
    print(f"{args.case}: build {Path(varref.__file__).resolve().parents[1]}, box "
          f"{n_points / 1e6:.2f} M points, mask {data.inside.size} points, "
          f"{len(heavy_xyz)} heavy atoms")
    print("  " + "  ".join(f"{name} {ms:.2f} ms" for name, ms in rows.items()))
    print(f"  value {value[0]:.12f}  gradient sum {term_gradient.sum():.12e}")
    return 0


def term_gaussians(term):
    """The amplitudes, exponents and summation radii the term's kernels use."""
    from varref.engine.cc_target import CORRELATION_CUTOFF
    from varref.engine.model_map import atom_gaussians, cutoff_radii

    amplitude, exponent = atom_gaussians(term.coeff_a, term.coeff_b, term.b_iso[0],
                                         term.occupancy, term.blur)
    return amplitude, exponent, cutoff_radii(exponent, CORRELATION_CUTOFF)


if __name__ == "__main__":
    sys.exit(main())
