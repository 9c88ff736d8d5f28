"""Export models from an ensemble or series results store as one multi-model mmCIF/PDB.

Model number k+1 is frame k (its member with the highest CC_mask); with --all-members every
finished member of every frame, frame by frame. The atom names, residues and chains come from
the model the run started from (its path is recorded in the store) or from --model.
"""

from __future__ import annotations

import argparse

import numpy as np

from varref.ensemble.results import open_store, run_parameters
from varref.errors import InputError
from varref.model import read_model, write_ensemble

NAME = "export"
HELP = "write the models of an ensemble/series store as a multi-model file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="results store written by varref ensemble or varref series")
    parser.add_argument("--output", "-o", required=True, help="multi-model .cif or .pdb")
    parser.add_argument("--all-members", action="store_true", help="every member, not the best per frame")
    parser.add_argument("--model", help="the starting model (default: the path recorded in the store)")


def selected_coordinates(dataset, all_members: bool) -> list[np.ndarray]:
    """Coordinates to export: best CC_mask member per frame, or every finished member."""
    finished = dataset["finished"].values
    xyz = dataset["xyz"]
    chosen = []
    for frame in range(finished.shape[0]):
        members = np.flatnonzero(finished[frame])
        if len(members) == 0:
            continue
        if not all_members:
            cc = dataset["cc_mask"].values[frame][members]
            members = members[[int(np.nanargmax(cc))]]
        chosen.extend(xyz.values[frame, m].astype(np.float64) for m in members)
    return chosen


def run(args: argparse.Namespace) -> int:
    dataset = open_store(args.store)
    model = read_model(args.model or run_parameters(dataset)["model"])
    if model.n_atoms != dataset.sizes["atom"]:
        raise InputError(args.model or "model", f"has {model.n_atoms} atoms, the store {dataset.sizes['atom']}")
    coordinates = selected_coordinates(dataset, args.all_members)
    if not coordinates:
        raise InputError(args.store, "no finished member to export")
    write_ensemble(model, coordinates, args.output)
    print(f"wrote {len(coordinates)} model(s) to {args.output}")
    return 0
