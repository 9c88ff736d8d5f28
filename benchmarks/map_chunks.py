"""Map-series chunk layout: one chunk per frame against 64³ chunks, by frame size.

For cubic frames of EDGE³ voxels at 1 Å (crambin's model map at 3 Å in the middle plus white
noise at 0.2 × its r.m.s., so the frame compresses like a real unmasked map), a 3-frame store
is written in each layout, and reported: size on disk, write time per frame, and the medians
over REPEATS of reading a whole frame (``frame(k)``) and of reading the box a series task of
crambin reads (``frame_prepared(k, xyz, 8 Å)``: box plus normalisation), each from a freshly
opened store. Files are read through the page cache (the store was just written), so the
times are decoding, not disk.

Usage:  python benchmarks/map_chunks.py [--edges 64,96,128,160,192,256] [--repeats 5]
                                        [--directory DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def frames(model, edge: int, n_frames: int, seed: int = 0):
    """EDGE³ grids, 1 Å voxels, crambin's map in the middle plus noise; one at a time."""
    from varref.maps import Map
    from varref.simulate import grid_around, model_density

    small = grid_around(model.xyz, 1.0, 6.0)
    nz, ny, nx = small.data.shape
    start = [(edge - n) // 2 for n in (nx, ny, nz)]
    origin = small.origin - np.array(start, dtype=float)
    density = model_density(model, model.xyz, small, 3.0)
    rng = np.random.default_rng(seed)
    scale = 0.2 * float(np.sqrt(np.mean(density**2)))
    for k in range(n_frames):
        data = rng.normal(scale=scale, size=(edge,) * 3).astype(np.float32)
        x0, y0, z0 = start
        data[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx] += density
        yield Map(data, origin, (1.0,) * 3, (90.0,) * 3, source=f"frame_{k}")


def measure(model, edge: int, chunk, directory: Path, repeats: int) -> dict[str, float]:
    from varref.ensemble.mapseries import open_map_series, write_series_frames

    store = directory / f"e{edge}_{chunk}.zarr"
    n_frames = 3
    started = time.perf_counter()
    write_series_frames(frames(model, edge, n_frames), store,
                        sources=[f"frame_{k}" for k in range(n_frames)], chunk=chunk)
    write_s = (time.perf_counter() - started) / n_frames
    stored = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / n_frames
    whole, box = [], []
    for r in range(repeats):
        k = r % n_frames
        series = open_map_series(store)
        started = time.perf_counter()
        series.frame(k)
        whole.append(time.perf_counter() - started)
        series = open_map_series(store)
        started = time.perf_counter()
        boxed = series.frame_prepared(k, model.xyz, 8.0)
        box.append(time.perf_counter() - started)
    chunks = open_map_series(store).chunks
    shutil.rmtree(store)
    return {"edge": edge, "chunks": "x".join(map(str, chunks[1:])), "stored_mb": stored / 1e6,
            "raw_mb": edge**3 * 4 / 1e6, "write_s": write_s,
            "whole_ms": 1e3 * statistics.median(whole), "box_ms": 1e3 * statistics.median(box),
            "box_voxels": "x".join(map(str, boxed.data.shape[::-1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", default="64,96,128,160,192,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--directory", help="where to write the stores (default: a temporary "
                        "directory)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    from varref.model import read_model

    model = read_model(SHARED / "models" / "1crn.pdb")
    edges = [int(e) for e in args.edges.split(",")]
    directory = Path(args.directory or tempfile.mkdtemp(prefix="varref-chunks-"))
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for edge in edges:
            for chunk in ("frame", 64):
                row = measure(model, edge, chunk, directory, args.repeats)
                rows.append(row)
                print(row, flush=True)
    finally:
        if not args.directory:
            shutil.rmtree(directory, ignore_errors=True)
    if args.markdown:
        print("\n| frame | chunks | on disk MB/frame (raw) | write s/frame | whole frame ms | "
              "task box ms (box) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['edge']}³ | {r['chunks']} | {r['stored_mb']:.1f} ({r['raw_mb']:.1f}) | "
                  f"{r['write_s']:.2f} | {r['whole_ms']:.0f} | {r['box_ms']:.0f} "
                  f"({r['box_voxels']}) |")


if __name__ == "__main__":
    main()
