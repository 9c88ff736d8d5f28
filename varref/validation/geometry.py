"""Covalent geometry: bond-length and bond-angle deviations from the monomer library.

The deviations are those of :func:`varref.restraints.deviations.deviation_summary` (the
same restraints refinement uses, built by :func:`varref.restraints.build_restraints`):
r.m.s. and maximum |model - ideal| and the number of restraints deviating by more than
4 sigma. Figures over restraints without hydrogen are reported as well when the model
has hydrogens (validation programs quote those).
"""

from __future__ import annotations

import numpy as np

from varref.model import Model
from varref.restraints import Restraints, build_restraints
from varref.restraints.deviations import deviation_summary

OUTLIER_SIGMA = 4.0


def _with_outlier_count(stats: dict[str, float]) -> dict[str, float]:
    n = int(stats["n"])
    within = float(stats["fraction_within_4_sigma"])
    return {
        "n": n,
        "rmsd": float(stats["rmsd"]),
        "max_deviation": float(stats["max"]),
        "n_outliers_4sigma": int(round(n * (1.0 - within))),
    }


def geometry_deviations(model: Model, restraints: Restraints | None = None
                        ) -> dict[str, dict[str, float]]:
    """Bond (Å) and angle (degrees) deviations from ideal.

    Parameters
    ----------
    model
        The model.
    restraints
        Prebuilt restraints for ``model`` (built from the monomer library when omitted).

    Returns
    -------
    dict with ``bonds`` and ``angles`` (and ``bonds_heavy``, ``angles_heavy`` when the
    model has hydrogens), each ``{"n", "rmsd", "max_deviation", "n_outliers_4sigma"}``.

    Raises
    ------
    InputError
        A residue has no restraint dictionary.
    """
    if restraints is None:
        restraints = build_restraints(model)
    has_hydrogens = bool(np.any(model.is_hydrogen))
    summary = deviation_summary(model.xyz, restraints,
                                model.is_hydrogen if has_hydrogens else None)
    return {key: _with_outlier_count(stats) for key, stats in summary.items()}
