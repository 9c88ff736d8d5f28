"""Summarise model and map files: what varref reads from them.

Models: atoms, residues, chains, hydrogens, waters, models in the file.
Maps: grid, voxel size, origin, the box it covers, and value statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from varref.maps import read_map
from varref.atomic import check_outputs
from varref.commands.options import add_overwrite_option, json_output, write_json
from varref.model import model_from_file_structure, read_structure

NAME = "info"
HELP = "summarise model and map files"

MAP_SUFFIXES = {".mrc", ".map", ".ccp4", ".mtz", ".gz"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="PDB/mmCIF models, MRC/CCP4/MTZ maps")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE.json",
                        help="the descriptions as JSON: to stdout with no FILE or '-', else to "
                        "FILE (default: text on stdout)")
    add_overwrite_option(parser)


def describe(path: str) -> dict:
    """A dict describing one model or map file."""
    suffixes = {s.lower() for s in Path(path).suffixes}
    if suffixes & MAP_SUFFIXES and not suffixes & {".pdb", ".cif", ".ent", ".mmcif"}:
        density = read_map(path)
        nx, ny, nz = density.shape_xyz
        far_corner = density.origin + (np.array([nx, ny, nz]) - 1) * density.voxel_size
        return {
            "file": path, "kind": "map", "grid_xyz": [nx, ny, nz],
            "voxel_size": np.round(density.voxel_size, 4).tolist(),
            "origin": np.round(density.origin, 3).tolist(),
            "far_corner": np.round(far_corner, 3).tolist(),
            "cell_angles": np.round(density.cell_angles, 3).tolist(),
            "mean": float(density.data.mean()), "rms": float(density.data.std()),
            "min": float(density.data.min()), "max": float(density.data.max()),
        }
    st = read_structure(path)
    model = model_from_file_structure(st, path)
    return {
        "file": path, "kind": "model", "models_in_file": len(st),
        "atoms": model.n_atoms, "residues": model.n_residues,
        "chains": sorted(set(model.chain_id.tolist())),
        "hydrogens": int(model.is_hydrogen.sum()), "water_atoms": int(model.is_water.sum()),
        "residue_names": sorted(set(model.residue_name.tolist())),
        "resolution": st.resolution or None,
    }


def run(args: argparse.Namespace) -> int:
    check_outputs(((json_output(args.json), "--json"),), args.files, overwrite=args.overwrite)
    reports = [describe(path) for path in args.files]
    if args.json:
        write_json(args.json, reports)
        return 0
    for report in reports:
        print(report["file"])
        for key, value in report.items():
            if key not in ("file",):
                print(f"  {key:15s} {value}")
    return 0
