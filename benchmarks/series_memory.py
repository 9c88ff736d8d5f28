"""Memory of `varref series` on a large map series: peak RSS per worker, bytes read.

A series of N frames of EDGE³ voxels (1 Å) is generated on disk as a map-series store: each
frame is crambin's (1crn, 327 atoms) model map at 3 Å, moved 0.05 Å along x per frame, in
the middle of the grid, plus white noise over the whole grid at 0.2 × the model map's r.m.s.
(noise does not compress, so the store is about the size of the raw frames, as an unmasked
3DVA series is). Then `varref series 1crn.pdb STORE --mode independent --weight 20` runs as
its own process against a LocalCluster of WORKERS worker processes (one thread each, dask
memory limit LIMIT per worker, the single-thread and malloc settings of `varref`'s own
LocalCluster). Measured:

- each worker's peak RSS (``VmHWM`` of the worker process: Python, numba kernels, dask and
  the tasks; the worker is started fresh for the run), and the bytes it read through ``read()`` (Linux
  ``rchar``, from ``/proc/PID/io``: files and sockets, the page cache included) during the run;
- the client's (the `varref series` process's) peak RSS and ``rchar``: it hashes the stored
  chunks once (streamed) and reads frame 0 whole for the voxel-size check;
- wall time of the run (indicative only: the machine is shared).

Usage:  python benchmarks/series_memory.py --frames 60 --edge 256 [--chunk auto|frame|N]
                                           [--workers 2] [--limit 2GB] [--directory DIR]
                                           [--keep] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODEL = SHARED / "models" / "1crn.pdb"

#: Runs `varref series` and prints this process's peak RSS (kB) and rchar last on stderr.
CLIENT = """
import sys
from varref.cli import main
status = main(sys.argv[1:])
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print("CLIENT", hwm, io["rchar"], file=sys.stderr)
sys.exit(status)
"""


def generate(store: Path, n_frames: int, edge: int, chunk) -> float:
    """Write the series; seconds taken."""
    from varref.ensemble.mapseries import write_series_frames
    from varref.maps import Map
    from varref.model import read_model
    from varref.simulate import grid_around, model_density

    model = read_model(MODEL)
    small = grid_around(model.xyz, 1.0, 8.0)
    nz, ny, nx = small.data.shape
    x0, y0, z0 = ((edge - n) // 2 for n in (nx, ny, nz))
    origin = small.origin - np.array((x0, y0, z0), dtype=float)
    rng = np.random.default_rng(0)

    def frames():
        for k in range(n_frames):
            density = model_density(model, model.xyz + [0.05 * k, 0.0, 0.0], small, 3.0)
            scale = 0.2 * float(np.sqrt(np.mean(density**2)))
            data = rng.normal(scale=scale, size=(edge,) * 3).astype(np.float32)
            data[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx] += density
            yield Map(data, origin, (1.0,) * 3, (90.0,) * 3, source=f"frame_{k:03d}")

    started = time.perf_counter()
    write_series_frames(frames(), store, sources=[f"frame_{k:03d}.mrc" for k in range(n_frames)],
                        resolution=3.0, chunk=chunk, progress=True)
    return time.perf_counter() - started


def peak_rss_kb() -> int:
    """This process's peak RSS, kB: ``VmHWM`` of /proc/self/status. (Not ``ru_maxrss``: Linux
    carries it over fork and exec, so a worker spawned by a big parent reports the parent's.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker_stats() -> dict[str, int]:
    """In a worker: peak RSS (kB) and bytes read so far (rchar, read_bytes)."""
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"maxrss_kb": peak_rss_kb(), "rchar": int(io["rchar"]),
            "read_bytes": int(io["read_bytes"]), "pid": os.getpid()}


def run(store: Path, output: Path, workers: int, limit: str) -> dict:
    import dask
    from distributed import Client, LocalCluster

    from varref.ensemble.cluster import WORKER_ENV, WORKER_MALLOC_ENV, warm_up

    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": value
                          for key, value in WORKER_MALLOC_ENV.items()}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit=limit, dashboard_address=":0", env=WORKER_ENV)
    client = Client(cluster)
    try:
        client.run(warm_up)
        before = client.run(worker_stats)
        env = dict(os.environ, PYTHONPATH=str(ROOT), **WORKER_ENV)
        command = [sys.executable, "-c", CLIENT, "series", str(MODEL), str(store), "--resolution",
                   "3", "--mode", "independent", "--weight", "20", "-o", str(output),
                   "--scheduler", cluster.scheduler_address, "--overwrite"]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"varref series failed:\n{result.stderr}")
        after = client.run(worker_stats)
        client_line = [line for line in result.stderr.splitlines() if line.startswith("CLIENT")]
        _, client_rss, client_rchar = client_line[-1].split()
        restarted = [a for a in after if a not in before or before[a]["pid"] != after[a]["pid"]]
        per_worker = [{"peak_rss_mb": after[a]["maxrss_kb"] / 1024,
                       "read_mb": (after[a]["rchar"] - before[a]["rchar"]) / 1e6,
                       "disk_read_mb": (after[a]["read_bytes"] - before[a]["read_bytes"]) / 1e6}
                      for a in sorted(after) if a in before]
        return {"wall_s": wall, "workers": per_worker, "restarted": len(restarted),
                "client_peak_rss_mb": int(client_rss) / 1024,
                "client_read_mb": int(client_rchar) / 1e6}
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--edge", type=int, default=256)
    parser.add_argument("--chunk", default="auto", help="auto, frame or an edge in voxels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", default="2GB", help="dask memory limit per worker")
    parser.add_argument("--directory", help="where to write (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated series")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    chunk = args.chunk if args.chunk in ("auto", "frame") else int(args.chunk)
    directory = Path(args.directory or tempfile.mkdtemp(prefix="varref-series-memory-"))
    directory.mkdir(parents=True, exist_ok=True)
    store = directory / f"series_{args.frames}x{args.edge}_{args.chunk}.zarr"
    output = directory / f"results_{args.frames}x{args.edge}_{args.chunk}.zarr"
    shutil.rmtree(output, ignore_errors=True)
    try:
        from varref.ensemble.mapseries import open_map_series

        generated = None
        if not store.exists():
            generated = generate(store, args.frames, args.edge, chunk)
        series = open_map_series(store)
        stored = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
        measured = run(store, output, args.workers, args.limit)
        from varref.ensemble.results import ResultStore

        finished = int(ResultStore.open(output).finished().sum())
    finally:
        shutil.rmtree(output, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
            if not args.directory:
                shutil.rmtree(directory, ignore_errors=True)
    raw = args.frames * args.edge**3 * 4
    report = {"frames": args.frames, "edge": args.edge, "chunks": series.chunks[1:],
              "raw_gib": raw / 2**30, "stored_gib": stored / 2**30, "generate_s": generated,
              "finished": finished, **measured}
    print(json.dumps(report, indent=1))
    if args.markdown:
        peak = max(w["peak_rss_mb"] for w in measured["workers"])
        read = sum(w["read_mb"] for w in measured["workers"])
        chunks = "x".join(map(str, series.chunks[1:]))
        print(f"| {args.frames} × {args.edge}³ | {chunks} | {raw / 2**30:.2f} | "
              f"{stored / 2**30:.2f} | {finished} | "
              + " / ".join(f"{w['peak_rss_mb']:.0f}" for w in measured["workers"])
              + f" | {peak:.0f} | {read:.0f} | {measured['client_peak_rss_mb']:.0f} | "
              f"{measured['client_read_mb']:.0f} | {measured['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
