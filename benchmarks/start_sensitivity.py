"""How much a refinement's result depends on noise in the last digit of its start.

For each case of ``benchmarks/refine.py`` the case's start and ``--starts - 1`` copies of it
moved by Gaussian noise of ``--jitter`` Å per coordinate (0.0005 Å by default: below the last
digit of a PDB file, which the copies are written with) are refined once each by `varref
refine`, and by the baseline build and servalcat when given. Reported per program: the mean,
smallest and largest r.m.s.d. to the truth (simulated cases; heavy atoms) or CC_mask
(real map, varref's code for every program), and the weights varref chose.

A benchmark that refines one start reports one draw from this spread; comparing two builds
(or programs) on one start can show a difference that a different last digit would reverse.

Usage:  python benchmarks/start_sensitivity.py [--cases 3j6r,trpv1-sim,6out-ab-box,trpv1]
        [--starts 4] [--jitter 0.0005] [--baseline /path/to/old/bin/varref]
        [--servalcat /path/to/bin/servalcat] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from refine import SHARED, cc_mask_of, heavy_rmsd, prepare, run_servalcat, run_varref  # noqa: E402


def jittered_starts(start: Path, n_starts: int, jitter: float, work: Path, case: str) -> list[Path]:
    """The start and ``n_starts - 1`` copies moved by N(0, jitter) Å per coordinate (seeds
    1, 2, ...), written as PDB files."""
    from varref.model import read_model, write_model

    model = read_model(start)
    starts = [start]
    for seed in range(1, n_starts):
        moved = model.xyz + np.random.default_rng(seed).normal(0.0, jitter, model.xyz.shape)
        path = work / f"{case}_start_j{seed}.pdb"
        write_model(model.with_xyz(moved), path)
        starts.append(path)
    return starts


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="3j6r,trpv1-sim,6out-ab-box,trpv1")
    parser.add_argument("--starts", type=int, default=4, help="starts per case (the case's own + jittered copies)")
    parser.add_argument("--jitter", type=float, default=0.0005, help="noise per coordinate, Å")
    parser.add_argument("--baseline", help="another varref executable, refined from the same starts")
    parser.add_argument("--servalcat", help="path of a servalcat executable (separate venv)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    if not SHARED.exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0
    from varref.monlib import find_monomer_library

    monlib = find_monomer_library()
    programs = {"varref": "varref"}
    if args.baseline:
        programs["baseline"] = args.baseline
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in args.cases.split(","):
            start, density, resolution, truth = prepare(case, work)
            starts = jittered_starts(start, args.starts, args.jitter, work, case)
            row = {"case": case, "resolution": resolution, "starts": len(starts), "jitter_A": args.jitter,
                   "measure": "rmsd_to_truth" if truth is not None else "cc_mask"}
            for name, executable in programs.items():
                values, weights = [], []
                for k, path in enumerate(starts):  # programs alternate start by start
                    _, _, out, report = run_varref(path, density, resolution, work, f"{case}{k}{name}",
                                                   executable)
                    values.append(heavy_rmsd(truth, out) if truth is not None
                                  else cc_mask_of(out, density, resolution))
                    weights.append(report["weight"])
                row[name] = dict(summary(values), all=values, weights=weights)
            if args.servalcat and shutil.which(args.servalcat):
                values = []
                for k, path in enumerate(starts):
                    _, _, produced = run_servalcat(args.servalcat, path, density, resolution, work,
                                                   f"{case}{k}", monlib)
                    values.append(heavy_rmsd(truth, produced) if truth is not None
                                  else cc_mask_of(produced, density, resolution))
                row["servalcat"] = dict(summary(values), all=values)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.markdown:
        print(f"\nmachine: {platform.machine()}, Python {platform.python_version()}; "
              f"{args.starts} starts per case, jitter {args.jitter} Å")
        names = [n for n in ("varref", "baseline", "servalcat") if any(n in r for r in rows)]
        print("| case | measure | " + " | ".join(f"{n}: mean (min–max)" for n in names)
              + " | varref weights |")
        print("|---|---|" + "---|" * len(names) + "---|")
        for r in rows:
            cells = [f"{r[n]['mean']:.3f} ({r[n]['min']:.3f}–{r[n]['max']:.3f})" if n in r else "–"
                     for n in names]
            measure = "r.m.s.d. to truth (Å)" if r["measure"] == "rmsd_to_truth" else "CC_mask"
            print(f"| {r['case']} ({r['resolution']} Å) | {measure} | " + " | ".join(cells)
                  + " | " + ", ".join(f"{w:.3g}" for w in r["varref"]["weights"]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
