"""Benchmark `varref refine` (whole process, wall time) and, if installed, servalcat side by side.

Cases (models from ../shared/data; skipped when absent):
  trpv1   2,500 atoms, the real EMD-5778 crop at 3.4 Å (deposited model as start)
  trpv1-sim  2,500 atoms, simulated 3 Å map, start perturbed 1.0 Å Cα r.m.s.d.
  6out    11,505 atoms, simulated 3 Å map, start perturbed 1.0 Å
  3j6r    17,214 atoms (backbone + H), simulated 4 Å map, start perturbed 1.0 Å
  6out-ab-box   4,505 atoms, two chains of 6out (residues 1-300 of A and B), simulated 3 Å
                map in a generous box (25 Å margin), start perturbed 1.0 Å
  6out-ab-fine  the same model, simulated 3 Å map on a 0.75 Å grid (d/4), start perturbed 1.0 Å

For the simulated cases the r.m.s.d. (heavy atoms) to the truth is reported. Each varref run
is a fresh `varref refine` process (numba kernels from the on-disk cache, as a user sees it);
`--repeats N` runs each N times and reports the median. Besides wall time the CPU time of
each process (user + system, from ``getrusage`` of the child) is reported: on a machine shared
with other jobs it is the steadier measure, and the ratio to servalcat is given for both.

servalcat: `servalcat refine_spa_norefmac --model START --map MAP --resolution D
--monlib MONLIB -o PREFIX` (10 cycles, its defaults) from a separate venv given by
`--servalcat PATH/TO/servalcat`.

`--baseline PATH/TO/varref` also times another varref build (e.g. the previous commit in its
own venv) in the same run, so a refactoring is measured against what it replaced;
`--varref-args "..."` passes options to varref and `--baseline-args "..."` to the baseline
(e.g. switch the newer restraint terms off to time the baseline's protocol).

Usage:  python benchmarks/refine.py [--repeats 3] [--servalcat /path/to/bin/servalcat]
        [--baseline /path/to/old/bin/varref] [--varref-args "..."] [--baseline-args "..."]
        [--cases trpv1,6out] [--servalcat-repeats 1] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CASES = {
    "trpv1": ("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", "maps/emd5778_trpv1_tm/transmem.mrc", 3.4, False),
    "trpv1-sim": ("maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb", None, 3.0, True),
    "6out": ("models/6out.pdb", None, 3.0, True),
    "3j6r": ("models/3j6r.pdb", None, 4.0, True),
    "6out-ab-box": ("models/6out.pdb", None, 3.0, True),
    "6out-ab-fine": ("models/6out.pdb", None, 3.0, True),
}
#: Options of ``varref simulate-map`` per case (default: its own margin and voxel d/3).
SIMULATE_ARGS = {"6out-ab-box": ["--margin", "25"], "6out-ab-fine": ["--voxel", "0.75"]}
#: Cases refined on a part of their model: chains kept and residues per chain.
SUBSETS = {"6out-ab-box": (("A", "B"), 300), "6out-ab-fine": (("A", "B"), 300)}


def model_subset(source: Path, chains: tuple[str, ...], n_residues: int, output: Path) -> Path:
    """The first ``n_residues`` polymer residues of ``chains`` (no waters, ligands, H)."""
    import gemmi

    st = gemmi.read_structure(str(source))
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    model = st[0]
    for name in [ch.name for ch in model if ch.name not in chains]:
        model.remove_chain(name)
    for chain in model:
        while len(chain) > n_residues:
            del chain[len(chain) - 1]
    st.setup_entities()
    st.write_pdb(str(output))
    return output


def timed_run(command: list[str], **kwargs) -> tuple[float, float]:
    """Run a command; its wall time and CPU time (user + system of the child), s."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_rmsd(truth_path: Path, refined_path: Path) -> float:
    from varref.model import read_model

    truth, refined = read_model(truth_path), read_model(refined_path)
    if refined.n_atoms != truth.n_atoms:  # e.g. servalcat adds or removes hydrogens
        key = lambda m: list(zip(m.chain_id, m.residue_number, m.atom_name))  # noqa: E731
        index = {k: i for i, k in enumerate(key(refined))}
        pairs = [(i, index[k]) for i, k in enumerate(key(truth)) if k in index and not truth.is_hydrogen[i]]
        a = truth.xyz[[p[0] for p in pairs]]
        b = refined.xyz[[p[1] for p in pairs]]
    else:
        heavy = ~truth.is_hydrogen
        a, b = truth.xyz[heavy], refined.xyz[heavy]
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def prepare(case: str, work: Path) -> tuple[Path, Path, float, Path | None]:
    """Start model, map, resolution and (simulated cases) the truth."""
    model_rel, map_rel, resolution, simulated = CASES[case]
    truth = SHARED / model_rel
    if not simulated:
        return truth, SHARED / map_rel, resolution, None
    if case in SUBSETS:
        truth = model_subset(truth, *SUBSETS[case], work / f"{case}_truth.pdb")
    density, start = work / f"{case}.mrc", work / f"{case}_start.pdb"
    for stale in (density, start):  # varref refuses to overwrite outputs of an earlier run
        stale.unlink(missing_ok=True)
    subprocess.run(["varref", "simulate-map", str(truth), "--resolution", str(resolution), "-o", str(density),
                    *SIMULATE_ARGS.get(case, [])], check=True, capture_output=True)
    subprocess.run(["varref", "perturb", str(truth), "--rmsd", "1.0", "--seed", "1", "-o", str(start)],
                   check=True, capture_output=True)
    return start, density, resolution, truth


def cc_mask_of(model_path: Path, density_path: Path, resolution: float) -> float:
    """CC_mask of a model in a map by varref's own code (the same for every program's output)."""
    from varref.mapfit import correlations
    from varref.maps import read_map
    from varref.model import read_model

    model = read_model(model_path)
    density = read_map(density_path).box_around(model.xyz, margin=8.0)
    return float(correlations(model, model.xyz, density, resolution, which=("cc_mask",))["cc_mask"])


def run_varref(start: Path, density: Path, resolution: float, work: Path, tag: str,
               executable: str = "varref", extra: list[str] | None = None
               ) -> tuple[float, float, Path, dict]:
    out, metrics = work / f"{tag}_varref.cif", work / f"{tag}_varref.json"
    # varref refuses to overwrite outputs of an earlier run (older builds would replace them)
    for stale in (out, metrics, out.with_suffix(".log"), out.with_suffix(".params.json")):
        stale.unlink(missing_ok=True)
    wall, cpu = timed_run([executable, "refine", str(start), str(density), "--resolution", str(resolution),
                           "-o", str(out), "--json", str(metrics), *(extra or [])])
    return wall, cpu, out, json.loads(metrics.read_text())


def run_servalcat(executable: str, start: Path, density: Path, resolution: float, work: Path,
                  tag: str, monlib: Path) -> tuple[float, float, Path]:
    prefix = work / f"{tag}_servalcat"
    wall, cpu = timed_run([executable, "refine_spa_norefmac", "--model", str(start), "--map", str(density),
                           "--resolution", str(resolution), "--monlib", str(monlib), "-o", str(prefix)],
                          cwd=work)
    produced = sorted(work.glob(f"{prefix.name}*.pdb")) or sorted(work.glob(f"{prefix.name}*.mmcif"))
    return wall, cpu, produced[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--servalcat", help="path of a servalcat executable (separate venv)")
    parser.add_argument("--servalcat-repeats", type=int, default=1, help="servalcat runs per case (median)")
    parser.add_argument("--baseline", help="another varref executable to time in the same run")
    parser.add_argument("--varref-args", default="", help="extra options of varref refine")
    parser.add_argument("--baseline-args", default="", help="extra options of the baseline's refine")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    if not SHARED.exists():
        print("../shared/data not found: nothing to benchmark", file=sys.stderr)
        return 0
    from varref.monlib import find_monomer_library

    monlib = find_monomer_library()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in args.cases.split(","):
            start, density, resolution, truth = prepare(case, work)
            times, cpus, report, out = [], [], None, None
            base_times, base_cpus, base_out = [], [], None
            extra = args.varref_args.split()
            for k in range(args.repeats):  # alternate the builds so drifts of the machine hit both
                elapsed, cpu, out, report = run_varref(start, density, resolution, work, f"{case}{k}",
                                                       extra=extra)
                times.append(elapsed)
                cpus.append(cpu)
                if args.baseline:
                    elapsed, cpu, base_out, base_report = run_varref(
                        start, density, resolution, work, f"{case}{k}base", args.baseline,
                        args.baseline_args.split())
                    base_times.append(elapsed)
                    base_cpus.append(cpu)
            row = {
                "case": case, "atoms": report["n_atoms"], "resolution": resolution,
                "varref_wall_s_median": statistics.median(times), "varref_wall_s_all": times,
                "varref_cpu_s_median": statistics.median(cpus), "varref_cpu_s_all": cpus,
                "varref_refine_s": report["runtime_s"], "weight": report["weight"],
                "cc_mask": [report["before"]["cc_mask"], report["after"]["cc_mask"]],
                "bond_rmsd": report["after"]["bond_rmsd"], "angle_rmsd": report["after"]["angle_rmsd"],
            }
            if truth is not None:
                row["start_rmsd_to_truth"] = heavy_rmsd(truth, start)
                row["varref_rmsd_to_truth"] = heavy_rmsd(truth, out)
            if args.baseline:
                row["baseline_wall_s_median"] = statistics.median(base_times)
                row["baseline_wall_s_all"] = base_times
                row["baseline_cpu_s_median"] = statistics.median(base_cpus)
                row["baseline_refine_s"] = base_report["runtime_s"]
                row["baseline_cc_mask"] = base_report["after"]["cc_mask"]
                row["wall_ratio_new_over_baseline"] = row["varref_wall_s_median"] / row["baseline_wall_s_median"]
                if truth is not None:
                    row["baseline_rmsd_to_truth"] = heavy_rmsd(truth, base_out)
            if args.servalcat and shutil.which(args.servalcat):
                walls, cpus_s = [], []
                for k in range(args.servalcat_repeats):
                    wall, cpu, produced = run_servalcat(args.servalcat, start, density, resolution, work,
                                                        f"{case}{k}", monlib)
                    walls.append(wall)
                    cpus_s.append(cpu)
                row["servalcat_wall_s_median"] = statistics.median(walls)
                row["servalcat_wall_s_all"] = walls
                row["servalcat_cpu_s_median"] = statistics.median(cpus_s)
                row["wall_ratio_servalcat_over_varref"] = row["servalcat_wall_s_median"] / row["varref_wall_s_median"]
                row["cpu_ratio_servalcat_over_varref"] = row["servalcat_cpu_s_median"] / row["varref_cpu_s_median"]
                if truth is not None:
                    row["servalcat_rmsd_to_truth"] = heavy_rmsd(truth, produced)
                else:  # real map: CC_mask of both results, computed the same way (varref's)
                    row["servalcat_cc_mask"] = cc_mask_of(produced, density, resolution)
                    row["varref_cc_mask_same_code"] = cc_mask_of(out, density, resolution)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.markdown:
        nan = float("nan")
        print(f"\nmachine: {platform.processor() or platform.machine()}, {platform.system()} "
              f"{platform.release()}, Python {platform.python_version()}")
        print("| case | atoms | d (Å) | varref wall / CPU (median, s) | servalcat wall / CPU (s) | "
              "ratio servalcat/varref wall / CPU | r.m.s.d. start → varref / servalcat (Å), real: CC_mask | "
              "varref bond / angle | baseline wall / CPU (s) | baseline r.m.s.d. (Å) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if "varref_rmsd_to_truth" in r:
                accuracy = (f"{r['start_rmsd_to_truth']:.3f} → {r['varref_rmsd_to_truth']:.3f} / "
                            f"{r.get('servalcat_rmsd_to_truth', nan):.3f}")
            else:
                accuracy = (f"CC_mask {r.get('varref_cc_mask_same_code', r['cc_mask'][1]):.3f} / "
                            f"{r.get('servalcat_cc_mask', nan):.3f}")
            print(f"| {r['case']} | {r['atoms']} | {r['resolution']} | {r['varref_wall_s_median']:.1f} / "
                  f"{r['varref_cpu_s_median']:.1f} | {r.get('servalcat_wall_s_median', nan):.1f} / "
                  f"{r.get('servalcat_cpu_s_median', nan):.1f} | {r.get('wall_ratio_servalcat_over_varref', nan):.2f} / "
                  f"{r.get('cpu_ratio_servalcat_over_varref', nan):.2f} | {accuracy} | "
                  f"{r['bond_rmsd']:.4f} / {r['angle_rmsd']:.2f} | {r.get('baseline_wall_s_median', nan):.1f} / "
                  f"{r.get('baseline_cpu_s_median', nan):.1f} | "
                  f"{r.get('baseline_rmsd_to_truth', nan):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
