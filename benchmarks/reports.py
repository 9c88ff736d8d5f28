"""Time the reports `varref refine` prints: the map-model FSC and the validation of a model.

On the start model and map of one case of ``benchmarks/refine.py`` (simulated cases: the
1 Å perturbation of the truth in its simulated map, made with the build's own ``varref``),
in one process of the Python it is run with, timed as `varref refine` runs them
(``varref.api._Reports``: the refinement's restraints, one topology cache shared by the start
and the result):

  validation, first    the first validation of the model (hydrogens rebuilt, clash topology)
  validation, again    a second call at other coordinates (the cache's topology reused)
  FSC                  the model-map FSC summary of the model

Each row is the median of ``--repeats`` calls, each "first" in a fresh cache; the process's
first call of each (numba's loading) is left out. Printed with the clashscores, the
FSC-average and the sum of the FSC curve to 12 digits, so that two builds are compared
number for number: run the script with each build's Python, alternating, e.g. ``for i in
1 2 3; do NEW/bin/python benchmarks/reports.py; OLD/bin/python benchmarks/reports.py;
done``.

Usage:  python benchmarks/reports.py [--case 3j6r] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def median_s(call, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    from refine import CASES, SHARED, prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="3j6r", choices=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not SHARED.exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0

    import numpy as np

    import varref
    from varref.api import _Reports, fsc_curves
    from varref.maps import read_map
    from varref.model import read_model
    from varref.refinement.options import RefineOptions
    from varref.restraints import build_restraints

    with tempfile.TemporaryDirectory() as tmp:
        start_path, map_path, resolution, _ = prepare(args.case, Path(tmp))
        model, density = read_model(start_path), read_map(map_path)
    restraints = build_restraints(model)
    moved = model.with_xyz(model.xyz + np.random.default_rng(1).normal(0.0, 0.1, model.xyz.shape))

    def reports() -> _Reports:
        return _Reports(model, restraints, density, resolution, None,
                        RefineOptions(resolution=resolution), None)

    warm = reports()
    warm.validate(model)
    warm.fsc(model)

    def first_validation():
        return reports().validate(model)

    rows = {}
    rows["validation, first"], report = median_s(first_validation, args.repeats)
    rows["validation, again"], again = median_s(lambda: warm.validate(moved), args.repeats)
    rows["FSC"], fsc = median_s(lambda: warm.fsc(model), args.repeats)
    print(f"{args.case}: build {Path(varref.__file__).resolve().parents[1]}, {model.n_atoms} atoms")
    print("  " + "  ".join(f"{name} {seconds:.3f} s" for name, seconds in rows.items()))
    curve = fsc_curves(model, model.xyz, density, resolution)["fsc_model"].values
    print(f"  clashscore {report['clashes']['clashscore']!r} (moved {again['clashes']['clashscore']!r})"
          f"  FSC-average {fsc['fsc_average_model']!r}  sum of the FSC curve {np.nansum(curve):.12f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
