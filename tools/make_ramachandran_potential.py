"""Derive varref's Ramachandran restraint potential from the MolProbity Top8000 grids.

Writes ``varref/data/ramachandran_potential.npz``: for each of the six MolProbity classes
(order of :data:`varref.validation.ramachandran.RAMA_CLASSES`) a float32 table V_c on the
180 x 180 bin centres of the Top8000 grids (phi, psi = -179, -177, ..., 179 degrees).

    V_c(phi, psi) = 2 (sqrt(1 + (D_c / delta)^2) - 1)

* F_c: the nodes MolProbity calls favoured (grid value >= 2 %, by
  :func:`varref.validation.ramachandran.classify`); V = 0 there.
* D_c: the cheapest-path distance (degrees) on the torus from a node to F_c, each degree
  spent in the MolProbity outlier region of the class counting ``OUTLIER_COST`` times
  (multi-source Dijkstra on the periodic grid with 16 neighbours, edge cost = length x mean
  cost of its two ends). Every node outside F_c has a neighbour closer to F_c, so the
  potential has no local minimum outside the favoured region: deep outliers are pulled
  back along the cheapest route, through allowed regions where there are some.
* delta = 3 degrees: V ~ (D/delta)^2 near the favoured region (a harmonic restraint with
  sigma delta), ~ 2 D/delta far away (a constant, bounded pull). The value was chosen with
  the refinement weight (``varref/refinement/terms/ramachandran.py``): a stiff edge keeps
  residues the map pushes against it inside the favoured region.

Between nodes the kernel interpolates (``varref/engine/ramachandran.py``): V is exactly zero
in every 2-degree cell whose four corners are favoured and rises from zero inside the cells
that straddle the favoured contour, so the edge of the flat region lies on or just inside
the contour. That is deliberate: the map pushes residues against the edge of a flat-bottom
restraint, and an edge inside the contour leaves them favoured (see
``docs/methods-restraints.md``).

Usage (from the repository root; the grids are CC-BY-4.0 data not shipped with varref)::

    python tools/make_ramachandran_potential.py [--top8000 ../shared/data/validation/top8000]

The licence and attribution of the derived table are in ``varref/data/TOP8000_LICENSE.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from varref.validation.ramachandran import (
    RAMA_CLASSES,
    RAMA_GRID_FILES,
    classify,
    load_ramachandran_tables,
)
from varref.validation.tables import FAVOURED, OUTLIER

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOP8000 = REPO.parent / "shared" / "data" / "validation" / "top8000"
OUTPUT = REPO / "varref" / "data" / "ramachandran_potential.npz"

#: Transition (degrees) from the harmonic to the linear regime of V (see the docstring).
DELTA = 3.0
#: A degree crossed inside the MolProbity outlier region counts this many degrees.
OUTLIER_COST = 2.0
#: Neighbour offsets of the Dijkstra graph: 8 nearest plus the 8 knight moves (16
#: directions keep the grid distance within ~3 % of the Euclidean one).
NEIGHBOURS = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)] + \
             [(a, b) for a in (-2, -1, 1, 2) for b in (-2, -1, 1, 2) if abs(a) != abs(b)]


def roll2(a: np.ndarray, di: int, dj: int) -> np.ndarray:
    """``a[i + di, j + dj]`` with periodic indices."""
    return np.roll(np.roll(a, -di, axis=0), -dj, axis=1)


def cheapest_distance(sources: np.ndarray, cost: np.ndarray, spacing: float) -> np.ndarray:
    """Cheapest-path distance (degrees) on the periodic grid from every node to ``sources``."""
    n_phi, n_psi = sources.shape
    index = np.arange(n_phi * n_psi).reshape(n_phi, n_psi)
    rows, cols, weights = [], [], []
    for di, dj in NEIGHBOURS:
        rows.append(index.ravel())
        cols.append(roll2(index, di, dj).ravel())
        weights.append((spacing * np.hypot(di, dj) * 0.5 * (cost + roll2(cost, di, dj))).ravel())
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(index.size, index.size)).tocsr()
    distance = dijkstra(graph, directed=True, indices=np.flatnonzero(sources.ravel()), min_only=True)
    return distance.reshape(n_phi, n_psi)


def potential_of(distance: np.ndarray) -> np.ndarray:
    """V = 2 (sqrt(1 + (D/delta)^2) - 1)."""
    return 2.0 * (np.sqrt(1.0 + (distance / DELTA) ** 2) - 1.0)


def has_lower_neighbour(values: np.ndarray) -> np.ndarray:
    """True where one of the 8 neighbours has a strictly lower value (no local minimum)."""
    lowest = np.full(values.shape, np.inf)
    for di, dj in NEIGHBOURS[:8]:
        lowest = np.minimum(lowest, roll2(values, di, dj))
    return lowest < values


def source_line(top8000: Path) -> str:
    sources = top8000 / "SOURCES.txt"
    if sources.is_file():
        return sources.read_text(encoding="utf-8").splitlines()[0].strip()
    return f"MolProbity Top8000 Ramachandran grids read from {top8000}"


def build(top8000: Path) -> dict[str, np.ndarray]:
    tables = load_ramachandran_tables(top8000)
    first = tables[RAMA_CLASSES[0]]
    n_bins = first.n_bins
    spacing = float(first.bin_width[0])
    origin = float(first.lower[0] + 0.5 * spacing)  # bin centres are the nodes
    potential = np.zeros((len(RAMA_CLASSES), *n_bins), dtype=np.float32)
    for c, rama_class in enumerate(RAMA_CLASSES):
        table = tables[rama_class]
        if (not np.array_equal(table.n_bins, n_bins) or not np.all(table.wrap)
                or not np.allclose(table.bin_width, spacing) or not np.allclose(table.lower, first.lower)):
            raise SystemExit(f"{rama_class}: grid layout differs from {RAMA_CLASSES[0]}")
        status = np.vectorize(lambda v: classify(v, rama_class))(table.values)
        favoured = status == FAVOURED
        cost = np.where(status == OUTLIER, OUTLIER_COST, 1.0)
        distance = cheapest_distance(favoured, cost, spacing)
        potential[c] = potential_of(distance)
        # the properties the restraint relies on, checked on the stored float32 values
        stored = potential[c]
        if not (np.all(stored[favoured] == 0.0) and np.all(stored[~favoured] > 0.0)):
            raise SystemExit(f"{rama_class}: V is not zero exactly on the favoured nodes")
        if not np.all(has_lower_neighbour(stored.astype(np.float64))[~favoured]):
            raise SystemExit(f"{rama_class}: V has a local minimum outside the favoured region")
        print(f"{rama_class:18s} favoured {favoured.mean():6.1%}  "
              f"outlier {np.mean(status == OUTLIER):6.1%}  max D {distance.max():6.1f} deg  "
              f"max V {stored.max():6.2f}")
    return {
        "potential": potential,
        "classes": np.array(RAMA_CLASSES),
        "grid_files": np.array([RAMA_GRID_FILES[c] for c in RAMA_CLASSES]),
        "origin": np.float64(origin),
        "spacing": np.float64(spacing),
        "delta": np.float64(DELTA),
        "outlier_cost": np.float64(OUTLIER_COST),
        "source": np.array(source_line(top8000)),
        "licence": np.array("CC-BY-4.0; derived from the MolProbity Top8000 Ramachandran "
                            "contour grids (Richardson lab; Williams et al. 2018, Protein Sci "
                            "27:293); see varref/data/TOP8000_LICENSE.md"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top8000", type=Path, default=DEFAULT_TOP8000,
                        help="directory with Top8000_ramachandran_pct_contour_grids/")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    arrays = build(args.top8000)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
