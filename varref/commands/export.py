"""Export models from an ensemble or series results store as one multi-model mmCIF/PDB.

Model number k+1 is frame k (its finished member with the highest CC_mask); with
--all-members every finished member of every frame, frame by frame. Atom names, residues,
chains, B and occupancy come from the input model embedded in the store, so the export works
from any directory; --model uses another file instead (its atoms must be the store's). Only
the exported members' coordinates are read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from varref.atomic import check_outputs
from varref.commands.options import add_overwrite_option
from varref.errors import InputError
from varref.model import read_model, write_ensemble

if TYPE_CHECKING:  # the CLI imports every command: xarray/zarr only when this one runs
    from varref.ensemble.results import ResultStore

NAME = "export"
HELP = "write the models of an ensemble/series store as a multi-model file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="results store written by varref ensemble or varref series")
    parser.add_argument("-o", "--output", required=True, help="multi-model .cif or .pdb")
    add_overwrite_option(parser)
    parser.add_argument("--all-members", action="store_true", help="every member, not the best per frame")
    parser.add_argument("--model", help="take identifiers, B and occupancy from this model file "
                                        "instead of the input model embedded in the store")


def selected_members(store: ResultStore, all_members: bool) -> list[tuple[int, int]]:
    """(frame, member) cells to export: best CC_mask member per frame, or every finished member.

    Examples
    --------
    >>> selected_members(ResultStore.open("series.zarr"), all_members=False)  # doctest: +SKIP
    [(0, 1), (1, 0), (2, 0)]
    """
    finished = store.finished()
    cells = []
    for frame in range(finished.shape[0]):
        if not finished[frame].any():
            continue
        if all_members:
            cells.extend((frame, int(m)) for m in np.flatnonzero(finished[frame]))
        else:
            cells.append((frame, store.best_member(frame)))
    return cells


def run(args: argparse.Namespace) -> int:
    check_outputs(((args.output, "--output"),), (args.store, args.model), overwrite=args.overwrite)
    if Path(args.output).suffix.lower() not in (".cif", ".mmcif", ".pdb", ".ent"):
        raise InputError("--output", f"{args.output}: use a .cif or .pdb suffix")
    from varref.ensemble.results import ResultStore, check_model_matches, model_from_results

    store = ResultStore.open(args.store)
    dataset = store.dataset()
    if args.model:
        model = read_model(args.model)
        check_model_matches(model, dataset, args.model)
    else:
        model = model_from_results(dataset)
    cells = selected_members(store, args.all_members)
    if not cells:
        raise InputError(args.store, "no finished member to export")
    write_ensemble(model, [store.member_xyz(frame, member) for frame, member in cells], args.output)
    print(f"wrote {len(cells)} model(s) to {args.output}")
    return 0
