"""Real maps in ../shared: the deposited model, `varref refine` (defaults) and servalcat
`refine_spa_norefmac` (defaults), judged by the independent referee and by varref's validation.

For every real map/model pair: wall time; Phenix's CC_mask (cctbx mmtbx.maps.map_model_cc),
MolProbity's Ramachandran favoured/outliers (cctbx molprobity.ramalyze) and heavy-atom bond/
angle r.m.s.d., all from ../shared/tools/referee.py; and from `varref validate` (Top8000
grids): rotamer outliers, clashscore, CC_mask, map–model FSC-average and the B-factor range.

The referee venv is built by ../shared/tools/referee-setup.sh (cctbx-base, servalcat); pass
its directory with --referee (default $REFEREE_VENV or ~/.cache/varref-referee).

Usage:  python benchmarks/real_maps.py [--referee /path/to/venv] [--cases trpv1,...] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

CASES = {
    "trpv1": ("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", "maps/emd5778_trpv1_tm/transmem.mrc", 3.4),
    "3j6b-chain9": ("maps/emd2566_ribosome_chain9/3J6B_9.pdb",
                    "maps/emd2566_ribosome_chain9/2566_3J6B_9.mrc", 3.2),
    "factin-3mfp": ("maps/emd5168_factin/3MFP.pdb", "maps/emd5168_factin/emd_5168.map", 6.6),
    "factin-1j6z": ("maps/emd5168_factin/1J6Z.pdb", "maps/emd5168_factin/emd_5168.map", 6.6),
}
# not used: emd1997_groel_unfitted (the model is deliberately not fitted into the map) and
# io_only (maps without models)


def referee(venv: Path, model: Path, density: Path, resolution: float) -> dict:
    """referee.py's JSON for one model (an error message on failure)."""
    run = subprocess.run([str(venv / "bin" / "python"), str(SHARED / "tools" / "referee.py"),
                          str(model), str(density), str(resolution)], capture_output=True, text=True)
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"}
    return json.loads(run.stdout[run.stdout.index("{"):])


def varref_validation(model: Path, density: Path, resolution: float) -> dict:
    from varref.api import validate
    from varref.maps import read_map
    from varref.model import read_model

    m = read_model(model)
    box = read_map(density).box_around(m.xyz, margin=8.0)
    report = validate(m, box, resolution, reference_data=SHARED / "data/validation/top8000")
    heavy = ~m.is_hydrogen
    return {"rotamer_outliers": report["rotamers"].get("percent_outliers"),
            "clashscore": report["clashes"].get("clashscore"),
            "rama_favoured": report["ramachandran"].get("percent_favoured"),
            "rama_outliers": report["ramachandran"].get("percent_outliers"),
            "cc_mask": report["map_fit"].get("cc_mask"),
            "fsc_average": report["fsc"].get("fsc_average_model"),
            "b_min": float(m.b_iso[heavy].min()), "b_max": float(m.b_iso[heavy].max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--referee", default=os.environ.get("REFEREE_VENV",
                                                            str(Path.home() / ".cache/varref-referee")))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not (SHARED / "data").exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0
    venv = Path(args.referee)
    servalcat = venv / "bin" / "servalcat"
    from varref.monlib import find_monomer_library

    monlib = find_monomer_library()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in args.cases.split(","):
            model_rel, map_rel, resolution = CASES[case]
            model, density = SHARED / "data" / model_rel, SHARED / "data" / map_rel
            outputs = {"deposited": (model, 0.0)}
            began = time.perf_counter()
            refined = work / f"{case}_varref.pdb"
            for stale in (refined, refined.with_suffix(".log"), refined.with_suffix(".params.json")):
                stale.unlink(missing_ok=True)  # varref refuses to overwrite an earlier run's output
            subprocess.run(["varref", "refine", str(model), str(density), "--resolution", str(resolution),
                            "-o", str(refined), "--no-summary"], check=True, capture_output=True)
            outputs["varref"] = (refined, time.perf_counter() - began)
            if servalcat.exists():
                began = time.perf_counter()
                prefix = work / f"{case}_servalcat"
                run = subprocess.run([str(servalcat), "refine_spa_norefmac", "--model", str(model),
                                      "--map", str(density), "--resolution", str(resolution),
                                      "--monlib", str(monlib), "-o", str(prefix)],
                                     capture_output=True, text=True, cwd=work)
                produced = sorted(work.glob(f"{prefix.name}*.pdb")) or sorted(work.glob(f"{prefix.name}*.mmcif"))
                if run.returncode == 0 and produced:
                    outputs["servalcat"] = (produced[-1], time.perf_counter() - began)
                else:  # e.g. a residue its dictionary lacks (3MFP's methylated HIS 73)
                    tail = (run.stderr or run.stdout).strip().splitlines()
                    print(json.dumps({"case": case, "model": "servalcat",
                                      "error": tail[-1] if tail else "failed"}), flush=True)
            for name, (path, wall) in outputs.items():
                row = {"case": case, "model": name, "wall_s": wall, "resolution": resolution}
                if venv.exists():
                    row["referee"] = referee(venv, path, density, resolution)
                row["varref_validate"] = varref_validation(path, density, resolution)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.markdown:
        print(f"\nmachine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
        print("| map (d) | model | wall (s) | CC_mask (cctbx) | Rama fav / out % (MolProbity) | bond / angle | "
              "rotamer out % | clashscore | FSC-avg | B range (Å²) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            ref, val = r.get("referee", {}), r["varref_validate"]

            def f(value, digits=3):
                return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) \
                    else f"{value:.{digits}f}"
            print(f"| {r['case']} ({r['resolution']} Å) | {r['model']} | {r['wall_s']:.1f} | "
                  f"{f(ref.get('cc_mask'))} | {f(ref.get('rama_favoured_pct'), 2)} / {f(ref.get('rama_outliers_pct'), 2)} | "
                  f"{f(ref.get('bond_rmsd'), 4)} / {f(ref.get('angle_rmsd'), 2)} | "
                  f"{f(val['rotamer_outliers'], 2)} | {f(val['clashscore'], 1)} | {f(val['fsc_average'])} | "
                  f"{val['b_min']:.0f}-{val['b_max']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
