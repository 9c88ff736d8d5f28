"""Store a series of maps on one grid as one zarr map series (MAPS.zarr).

For cryoSPARC 3D-variability frames (``*_component_NNN_frame_MMM.mrc``), cryoDRGN volumes
(``analyze.N/pc1/vol_000.mrc``), RELION classes and the like, given as files, directories,
globs or a text file listing maps (varref.ensemble.series_inputs). 3DVA frames are ordered
by component and frame number, cryoDRGN volumes by directory and number, RELION classes by
class number, other maps in NATURAL ORDER of their paths (``frame_2`` before ``frame_10``);
``--keep-order`` keeps the order given instead. Components are stored with the series, so
`varref series MAPS.zarr` chains within each. Every map must share the first one's
grid, voxel size (to 1e-4 relative), origin (to 1e-3 Å) and cell angles, else nothing is
written. zstd-compressed; frames above 128³ voxels are cut into 64³ chunks (``--chunk``),
so a worker reads only the box around its model. ``-o`` may be a URL (``s3://bucket/maps.zarr``)
that fsspec writes (its backend, e.g. s3fs, installed). Layout: docs/methods-map-series.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from varref.atomic import check_output_path
from varref.commands.option_types import chunk, positive_float, resolution
from varref.errors import InputError
from varref.ensemble import urls
from varref.ensemble.mapseries import (DEFAULT_CHUNK, WHOLE_FRAME_MAX_VOXELS, open_map_series,
                                       write_map_series)
from varref.ensemble.series_inputs import collect_series_inputs

NAME = "maps-to-zarr"
HELP = "store a map series (3DVA frames, cryoDRGN volumes) as one zarr, in natural order"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("maps", nargs="+", metavar="MAP",
                        help="maps on one grid: files, directories, globs or a .txt list; 3DVA "
                        "components, cryoDRGN directories and RELION classes ordered numerically, "
                        "other maps naturally (frame_2 before frame_10)")
    parser.add_argument("-o", "--output", required=True, metavar="MAPS.zarr",
                        help="map-series store to write: a directory, or a URL (s3://, gs://, "
                        "memory://; needs the fsspec backend, e.g. s3fs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing map series at --output (default: refuse)")
    parser.add_argument("--resolution", type=resolution, metavar="D",
                        help="nominal resolution, Å (0.5-30), stored with the series (default none)")
    parser.add_argument("--keep-order", action="store_true",
                        help="keep the maps in the order given instead of sorting them")
    parser.add_argument("--voxel-size", type=positive_float, metavar="A",
                        help="voxel size, Å, stored instead of the headers' (cryoDRGN writes 1 Å "
                        "without a CTF file); the origin keeps its place in voxels")
    parser.add_argument("--chunk", type=chunk, default="auto", metavar="N|frame|auto",
                        help=f"chunk edge in voxels, or 'frame' for one chunk per map (default "
                        f"auto: one chunk per map up to {round(WHOLE_FRAME_MAX_VOXELS ** (1 / 3))}³ "
                        f"voxels, {DEFAULT_CHUNK}³ chunks above)")


def run(args: argparse.Namespace) -> int:
    inputs = collect_series_inputs(args.maps, keep_order=args.keep_order,
                                   voxel_size=args.voxel_size)
    paths = inputs.paths
    if urls.is_url(args.output):
        exists = urls.exists(args.output)
    else:
        exists = check_output_path(args.output, paths, "--output", store=True).exists()
    if exists and not args.overwrite:
        raise InputError("--output", f"{args.output} exists; use --overwrite to replace it")
    write_map_series(paths, args.output, resolution=args.resolution, progress=True,
                     voxel_size=args.voxel_size, components=inputs.components,
                     labels=inputs.labels, chunk=args.chunk)
    series = open_map_series(args.output)
    n, nz, ny, nx = series.shape
    stored = (urls.size(args.output) if urls.is_url(args.output)
              else _size_on_disk(Path(args.output)))
    raw = series.shape[0] * nz * ny * nx * 4
    voxel = ", ".join(f"{v:.4g}" for v in series.voxel_size)
    resolution = "unknown" if series.resolution is None else f"{series.resolution:g} Å"
    print(f"wrote {n} maps of {nx}x{ny}x{nz} voxels (x, y, z), voxel size ({voxel}) Å, "
          f"resolution {resolution}, to {args.output}")
    order = "as given" if args.keep_order else "natural order"
    sources = series.sources
    span = sources[0] if n == 1 else f"{sources[0]} ... {sources[-1]}"
    print(f"frames ({order}): {span}")
    if series.components is not None:
        groups = list(dict.fromkeys(series.components))
        print(f"components: {len(groups)} ({', '.join(groups[:6])}{', ...' if len(groups) > 6 else ''})")
    _, cz, cy, cx = series.chunks
    layout = "one chunk per map" if (cz, cy, cx) == (nz, ny, nx) else f"chunks {cx}x{cy}x{cz}"
    print(f"size on disk {_megabytes(stored)} (uncompressed {_megabytes(raw)}, "
          f"{raw / max(stored, 1):.1f}x), {layout}")
    return 0


def _size_on_disk(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"
