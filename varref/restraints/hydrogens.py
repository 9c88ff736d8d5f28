"""Hydrogens at the monomer library's ideal geometry (gemmi), for riding models and clashes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from os import PathLike

import gemmi

from varref.errors import InputError
from varref.model import Model
from varref.monlib import load_monomer_library
from varref.restraints.arrays import Restraints

__all__ = ["add_riding_hydrogens", "dictionaries"]


def dictionaries(restraints: Restraints | None) -> tuple[str | None, tuple[str, ...]]:
    """``(monlib_dir, extra_cifs)`` that ``restraints`` were built from, for building the
    same model's hydrogens with them (None: the default library, no extra dictionary)."""
    return (None, ()) if restraints is None else (restraints.monlib_dir, restraints.extra_cifs)


def add_riding_hydrogens(model: Model, monlib_dir: str | PathLike | None = None,
                         extra_cifs: Sequence[str | PathLike] = ()) -> Model:
    """A copy of ``model`` with hydrogens rebuilt from the monomer library (waters excluded).

    Residue order and residue indices are those of ``model``; atoms within a residue are
    reordered (heavy atoms first, each hydrogen after its parent's group, as gemmi does).
    ``monlib_dir`` and ``extra_cifs`` (e.g. a ligand's dictionary) as for
    :func:`varref.restraints.build_restraints`.

    Raises
    ------
    InputError
        A residue has no dictionary, or gemmi cannot build the topology.
    """
    st = model.to_structure()  # current coordinates (the template keeps the file's)
    monlib = load_monomer_library(st[0].get_all_residue_names(), monlib_dir, extra_cifs)
    missing = sorted(set(st[0].get_all_residue_names()) - set(monlib.monomers.keys()))
    if missing:
        raise InputError(model.source or "model", "cannot add hydrogens: no dictionary for "
                         f"{', '.join(missing)}")
    try:
        gemmi.prepare_topology(st, monlib, model_index=0,
                               h_change=gemmi.HydrogenChange.ReAddButWater, reorder=True,
                               warnings=io.StringIO(), ignore_unknown_links=True)
    except RuntimeError as exc:
        raise InputError(model.source or "model",
                         f"cannot add hydrogens: {str(exc).splitlines()[0]}") from None
    return Model.from_structure(st, source=model.source)
