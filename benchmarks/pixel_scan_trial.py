"""Time one pixel-scan trial on the 258k-atom model of `benchmarks/pixel_scan.py` (issue 14).

CPU seconds of this thread (``time.thread_time``, less sensitive than wall time to other jobs
on a shared machine), median of ``--repeats``, at the true scale and 1 % off it. For the
current build: the coarse trial (translation-search start, rigid fit on the atom subset,
atom-centred score) and the accurate score (profile-matched CC, CC_mask, segment sums) with
the map's transform made once. An older build without the two stages (before issue 14's speed
work: ``fit_at_scale`` fitted all atoms in two stages and scored every trial) is timed through
its own ``fit_at_scale`` when run with that build first on ``PYTHONPATH``, for a before/after
ratio measured back to back:

    PYTHONPATH=/path/to/old/checkout python benchmarks/pixel_scan_trial.py
    python benchmarks/pixel_scan_trial.py

Usage:  python benchmarks/pixel_scan_trial.py [--copies 15] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pixel_scan import SHARED, tiled_model  # noqa: E402


def thread_seconds(function, repeats: int) -> tuple[float, object]:
    """Median thread CPU seconds of ``function()`` over ``repeats`` calls, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        began = time.thread_time()
        result = function()
        times.append(time.thread_time() - began)
    return float(np.median(times)), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not (SHARED / "models/3j6r.pdb").exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0
    import varref
    from varref import calibration
    from varref.simulate import simulate_map

    model = tiled_model(SHARED / "models/3j6r.pdb", args.copies)
    truth = simulate_map(model, 4.0, voxel_size=4.0 / 3)
    wrong = replace(truth, voxel_size=truth.voxel_size * 1.02)
    prepared = wrong.prepared(model.xyz, 8.0 + 0.05 * float(np.max(wrong.voxel_size * np.array(wrong.shape_xyz))))
    print(f"varref from {Path(varref.__file__).parent}; {model.n_atoms} atoms, map {wrong.shape_xyz}")
    for scale in (1 / 1.02, 0.99 / 1.02):
        if hasattr(calibration, "coarse_trial"):
            from varref.scale_score import ProfileMatcher
            from varref.translation_search import translation_search

            offset = translation_search(model, prepared, 4.0,
                                        calibration.max_offset(model, wrong, np.array([0.95, 1.05])))
            atoms = calibration.fit_atoms(model)
            calibration.coarse_trial(model, prepared, scale, atoms, offset)  # compile / warm up
            fit, coarse = thread_seconds(
                lambda: calibration.coarse_trial(model, prepared, scale, atoms, offset), args.repeats)
            matcher_seconds, matcher = thread_seconds(lambda: ProfileMatcher(prepared.data), 1)
            pose = (coarse["rotation"], coarse["shift"])
            score, result = thread_seconds(
                lambda: calibration.fit_at_scale(model, prepared, 4.0, scale, pose=pose,
                                                 matcher=matcher), args.repeats)
            print(f"scale {scale:.5f}: coarse trial {fit:.2f} s, accurate score {score:.2f} s "
                  f"(map transform, once per batch: {matcher_seconds:.2f} s); matched CC "
                  f"{result['cc_matched']:.4f}, CC_mask {result['cc_mask']:.4f}", flush=True)
        else:  # the one-stage build: every trial fits all atoms in two stages and is scored
            blurred = prepared.blurred(100.0).normalised()
            calibration.fit_at_scale(model, prepared, 4.0, scale, blurred=blurred)  # warm up
            seconds, result = thread_seconds(
                lambda: calibration.fit_at_scale(model, prepared, 4.0, scale, blurred=blurred),
                args.repeats)
            print(f"scale {scale:.5f}: one-stage trial {seconds:.2f} s; matched CC "
                  f"{result['cc_matched']:.4f}, CC_mask {result['cc_mask']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
