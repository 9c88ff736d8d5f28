"""Where `varref refine` spends its time: wall and CPU seconds per stage of one run, in-process.

Runs the command line (`varref.cli.main`) on one case of `benchmarks/refine.py` with timers
wrapped around the stages (wall time, and process CPU time, which counts every thread and
holds its split on a busy machine; a stage called inside another is counted in its own row,
except L-BFGS, which counts as "macro" only when it is not inside another stage):

  restraints   building the restraints (monomer library, topology)
  weight       the weight searches (coarse and full)
  macro        L-BFGS of the macro-cycles (atom-centred map term + restraints)
  rotamer fit  fitting outlier side chains after cycle 1
  adp          B-factor refinement
  final CC     the density-correlation stage (L-BFGS + its geometry checks)
  metrics      CC_mask/CC_box/... and bond/angle r.m.s.d. per cycle
  validation   validation of start and result (MolProbity-style statistics)
  fsc          model-map FSC of start and result
  rest         everything else (imports, reading, writing, setup)

The start's FSC and validation run beside the refinement, in a second thread
(varref.engine.parallel.beside): their rows are marked "(beside)" and their wall time is not
part of the run's (the CPU column is the process's, so it includes what ran beside).

Usage:  python benchmarks/profile_refine.py [--case 6out-ab-fine]   (VARREF_THREADS=1 for one thread)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = {  # (module, attribute) -> stage
    ("varref.api", "_restraints_for"): "restraints",
    ("varref.refinement.pipeline", "search_weight"): "weight",
    ("varref.refinement.pipeline", "_fit_rotamers"): "rotamer fit",
    ("varref.refinement.pipeline", "_refine_b"): "adp",
    ("varref.refinement.pipeline", "_final_stage"): "final CC",
    ("varref.refinement.pipeline", "model_metrics"): "metrics",
    ("varref.refinement.pipeline", "minimise_lbfgs"): "macro",
    ("varref.validation", "validate"): "validation",
    ("varref.api", "fsc_summaries"): "fsc",
}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def stage_timers(totals: dict[str, float]):
    """Wrap the stage functions; time spent in an inner stage is moved out of the outer one."""
    import importlib
    import threading

    local = threading.local()  # a stack of open stages per thread
    saved = []

    def wrap(function, stage):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return beside(function, stage + " (beside)", *args, **kwargs)
            stack = local.__dict__.setdefault("stack", [])
            if stage == "macro" and stack:  # L-BFGS inside another stage belongs to it
                return function(*args, **kwargs)
            stack.append([cpu(), time.perf_counter(), 0.0, 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                began_cpu, began_wall, inner_cpu, inner_wall = stack.pop()
                spent_cpu, spent_wall = cpu() - began_cpu, time.perf_counter() - began_wall
                cpu_total, wall_total = totals.get(stage, (0.0, 0.0))
                totals[stage] = (cpu_total + spent_cpu - inner_cpu,
                                 wall_total + spent_wall - inner_wall)
                if stack:
                    stack[-1][2] += spent_cpu
                    stack[-1][3] += spent_wall
        return timed

    def beside(function, stage, *args, **kwargs):
        began_cpu, began_wall = cpu(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            cpu_total, wall_total = totals.get(stage, (0.0, 0.0))
            totals[stage] = (cpu_total + cpu() - began_cpu,
                             wall_total + time.perf_counter() - began_wall)

    for (module_name, attribute), stage in STAGES.items():
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)
        saved.append((module, attribute, original))
        setattr(module, attribute, wrap(original, stage))
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)


def main() -> int:
    import refine as cases  # benchmarks/refine.py

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="6out-ab-fine", choices=sorted(cases.CASES))
    args = parser.parse_args()
    if not cases.SHARED.exists():
        print("../shared/data not found: nothing to profile", file=sys.stderr)
        return 0
    from varref.cli import main as varref_main
    from varref.engine.parallel import threads

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start, density, resolution, _ = cases.prepare(args.case, work)
        totals: dict[str, float] = {}
        began_cpu, began_wall = cpu(), time.perf_counter()
        with stage_timers(totals):
            code = varref_main(["refine", str(start), str(density), "--resolution", str(resolution),
                                "-o", str(work / "out.cif")])
        total, wall = cpu() - began_cpu, time.perf_counter() - began_wall
    if code != 0:
        print(f"varref refine failed with exit code {code}", file=sys.stderr)
        return 1
    in_main = [value for stage, value in totals.items() if not stage.endswith("(beside)")]
    totals["rest"] = (total - sum(c for c, _ in in_main), wall - sum(w for _, w in in_main))
    print(f"\ncase {args.case}: CPU {total:.1f} s, wall {wall:.1f} s (imports before the run not "
          f"counted), {threads()} thread(s)")
    print("| stage | wall (s) | share of wall | CPU (s) | share of CPU |")
    print("|---|---|---|---|---|")
    for stage in ["restraints", "weight", "macro", "rotamer fit", "adp", "final CC", "metrics",
                  "validation", "fsc", "rest", "validation (beside)", "fsc (beside)"]:
        if stage in totals:
            stage_cpu, stage_wall = totals[stage]
            print(f"| {stage} | {stage_wall:.2f} | {100 * stage_wall / wall:.0f} % | "
                  f"{stage_cpu:.2f} | {100 * stage_cpu / total:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
