"""Map series: joint vs chained vs independent refinement on a hinge motion with known truth.

Crambin (1crn, 327 atoms) bends about residue 22: residues 23-46 rotate about an axis through
the Cα of residue 22 by angles spread linearly over ±MAX_ANGLE (`varref.example_data.hinge_motion`,
regularised with the restraints). Each of the F frames is simulated at 4.5 Å with white noise
(`varref.simulate_map(..., snr=SNR, seed=seed·1000 + frame)`) on one grid. Every mode starts
every frame from the middle frame's true model (the consensus a user would have), with one
data weight (given, so all modes refine with the same w). Reported: r.m.s.d. of every frame's
refined model to its truth (all atoms), the trajectory's roughness (mean over frames and atoms
of |x_{f+1} − 2x_f + x_{f−1}|, Å; the truth's own value is printed alongside) and wall time
(one local Dask worker; includes task start-up, not map simulation).

Usage:  python benchmarks/series_modes.py [--seeds 1,2,3] [--snr 1.0] [--max-angle 20]
                                          [--frames 11] [--weight 20] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def hinge_series(model_path: Path, n_frames: int, max_angle: float, resolution: float,
                 snr: float, seed: int):
    """(consensus model, restraints, truths (F, N, 3), maps) of a noisy hinge series."""
    from varref.example_data import hinge_motion
    from varref.model import read_model
    from varref.restraints import build_restraints
    from varref.simulate import grid_around, simulate_map

    model = read_model(model_path)
    restraints = build_restraints(model)
    truths = hinge_motion(model, restraints, hinge_residue_index=21, n_frames=n_frames,
                          max_angle=max_angle)
    grid = grid_around(truths.reshape(-1, 3), resolution / 3.0, 8.0)
    maps = [simulate_map(model, resolution, snr=snr, seed=seed * 1000 + f, xyz=truth, grid=grid)
            for f, truth in enumerate(truths)]
    consensus = model.with_xyz(truths[n_frames // 2])
    return consensus, restraints, truths, maps


def rmsd_per_frame(xyz: np.ndarray, truths: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.sum((xyz - truths) ** 2, axis=-1), axis=-1))


def roughness(xyz: np.ndarray) -> float:
    """Mean |second difference| of the atoms' paths along the frames, Å."""
    return float(np.mean(np.linalg.norm(xyz[2:] - 2 * xyz[1:-1] + xyz[:-2], axis=-1)))


def best_xyz(dataset) -> np.ndarray:
    from varref.ensemble.series import frame_summary

    best = frame_summary(dataset, dataset.sizes["frame"] // 2)["best_member"]
    return dataset["xyz"].values[np.arange(dataset.sizes["frame"]), best].astype(np.float64)


def run_modes(client, consensus, restraints, truths, maps, resolution: float, weight: float,
              macro_cycles: int, **joint) -> dict:
    """Every mode on one series; ``joint`` holds ``smoothness`` / ``joint_weight``."""
    from varref.ensemble.memory_series import MemoryMapSeries
    from varref.ensemble.series import run_series
    from varref.refinement.options import RefineOptions

    series = MemoryMapSeries(maps, resolution=resolution)
    options = RefineOptions(resolution=resolution, macro_cycles=macro_cycles, weight=weight,
                            final_cc=False, adp=False, rotamer_fit=False)
    runs = [("independent", "independent", {}), ("chained", "chained", {}),
            ("joint", "joint", joint),
            ("joint, input start", "joint", dict(joint, joint_start="input")),
            ("joint, 1st differences", "joint", dict(joint, prior_order=1))]
    out = {}
    for label, mode, extra in runs:
        started = time.perf_counter()
        dataset = run_series(client, consensus, restraints, series, None, options, mode=mode,
                             progress=False, **extra)
        elapsed = time.perf_counter() - started
        xyz = best_xyz(dataset)
        out[label] = {"rmsd": rmsd_per_frame(xyz, truths), "roughness": roughness(xyz),
                      "time_s": elapsed}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--snr", type=float, default=1.0)
    parser.add_argument("--max-angle", type=float, default=12.0)
    parser.add_argument("--frames", type=int, default=11)
    parser.add_argument("--resolution", type=float, default=4.5)
    parser.add_argument("--weight", type=float, default=20.0)
    parser.add_argument("--macro-cycles", type=int, default=3)
    parser.add_argument("--smoothness", type=float, default=None)
    parser.add_argument("--joint-weight", type=float, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    model_path = SHARED / "models/1crn.pdb"
    if not model_path.exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 1
    from varref.ensemble.cluster import dask_client

    runs = []
    with dask_client(workers=1, quiet=True) as client:
        for seed in (int(s) for s in args.seeds.split(",")):
            consensus, restraints, truths, maps = hinge_series(
                model_path, args.frames, args.max_angle, args.resolution, args.snr, seed)
            motion = rmsd_per_frame(truths, consensus.xyz)
            largest = np.max(np.linalg.norm(truths[-1] - truths[0], axis=-1))
            results = run_modes(client, consensus, restraints, truths, maps, args.resolution,
                                args.weight, args.macro_cycles, smoothness=args.smoothness,
                                joint_weight=args.joint_weight)
            print(f"\nseed {seed}: {args.frames} frames, {args.resolution} Å, SNR {args.snr}, "
                  f"±{args.max_angle}°, largest atom displacement end to end {largest:.1f} Å, "
                  f"truth roughness {roughness(truths):.3f} Å")
            header = ["mode", *(f"f{f}" for f in range(args.frames)), "mean", "roughness Å", "time s"]
            rows = [["motion", *(f"{m:.2f}" for m in motion), f"{motion.mean():.2f}",
                     f"{roughness(truths):.3f}", ""]]
            for mode, r in results.items():
                rows.append([mode, *(f"{v:.2f}" for v in r["rmsd"]), f"{r['rmsd'].mean():.2f}",
                             f"{r['roughness']:.3f}", f"{r['time_s']:.0f}"])
            show(header, rows, args.markdown)
            runs.append(results)
    # over all seeds: mean and worst r.m.s.d., roughness, and at how many frames each mode is
    # closer to the truth than chained
    print(f"\nsummary over seeds {args.seeds}")
    header = ["mode", "mean r.m.s.d. Å", "worst frame Å", "roughness Å",
              "frames closer than chained", "time s"]
    rows = []
    for mode in runs[0]:
        rmsd = np.array([r[mode]["rmsd"] for r in runs])
        chained = np.array([r["chained"]["rmsd"] for r in runs])
        rows.append([mode, f"{rmsd.mean():.2f}", f"{rmsd.max():.2f}",
                     f"{np.mean([r[mode]['roughness'] for r in runs]):.3f}",
                     "" if mode == "chained" else f"{np.sum(rmsd < chained)}/{rmsd.size}",
                     f"{np.mean([r[mode]['time_s'] for r in runs]):.1f}"])
    show(header, rows, args.markdown)
    return 0


def show(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in [header, *rows]:
            print("  ".join(f"{c:>7}" for c in row))


if __name__ == "__main__":
    sys.exit(main())
