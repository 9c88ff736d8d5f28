"""Ramachandran validation with the MolProbity Top8000 percentile contours.

Williams et al. (2018) Protein Sci. 27, 293 (MolProbity, Top8000 contours); the procedure
is cctbx ``mmtbx/validation/ramalyze.py`` (molprobity.ramalyze), checked residue by residue
against it on every shared model (``tests/validation/test_molprobity_agreement.py``):

* Evaluated: residues of the 20 standard amino acids and MSE (iotbx's
  ``common_amino_acid`` class; other modified residues are skipped and break the chain for
  their neighbours) with N, CA and C, whose previous and next residues are such amino acids
  peptide-linked to them (C-N < 2 Å), the previous one with C and the next one with N, CA
  and C. So chain ends and breaks are skipped.
* phi = C(i-1)-N-CA-C, psi = N-CA-C-N(i+1).
* Class, in MolProbity's order of precedence: Gly; Pro -- cis-Pro when the preceding
  peptide is *cis-like*, -90 < omega < 90 (twisted peptides go to the nearer of cis and
  trans), else trans-Pro; pre-Pro (the next residue is Pro); Ile/Val; general.
* The percentile is the class's Top8000 grid interpolated at (phi, psi)
  (:mod:`varref.validation.tables`).
* Favoured >= 2 %; allowed >= 0.05 % (general), >= 0.2 % (cis-Pro), >= 0.1 % (others);
  outlier otherwise. Percentages are of evaluated residues.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from varref.errors import InputError
from varref.validation.residues import ResidueTable, dihedrals_of
from varref.validation.tables import (
    ALLOWED,
    FAVOURED,
    OUTLIER,
    RAMACHANDRAN_SUBDIR,
    PercentileTable,
    find_grid,
    read_table,
    status_counts,
)

#: Class names, the Top8000 grid of each, and the allowed threshold (fraction).
RAMA_CLASSES = ("general", "glycine", "cis-proline", "trans-proline", "pre-proline",
                "isoleucine-valine")
RAMA_GRID_FILES = {
    "general": "rama8000-general-noGPIVpreP.data",
    "glycine": "rama8000-gly-sym.data",
    "cis-proline": "rama8000-cispro.data",
    "trans-proline": "rama8000-transpro.data",
    "pre-proline": "rama8000-prepro-noGP.data",
    "isoleucine-valine": "rama8000-ileval-nopreP.data",
}
FAVOURED_THRESHOLD = 0.02
ALLOWED_THRESHOLD = {"general": 0.0005, "cis-proline": 0.002}
ALLOWED_THRESHOLD_OTHER = 0.001
#: Pro after a peptide with |omega| below this is cis-Pro. ramalyze splits at 90 degrees
#: ("cis-like"), not at omegalyze's 30: a twisted Pro peptide is put on the nearer plot.
CIS_OMEGA_LIMIT = 90.0
#: Residue names ramalyze evaluates (iotbx ``common_amino_acid``: the 20 and MSE).
MOLPROBITY_AMINO_ACIDS = frozenset((
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS",
    "MET", "MSE", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL"))


def load_ramachandran_tables(reference_data: str | PathLike) -> dict[str, PercentileTable]:
    """The six Top8000 Ramachandran grids from a reference-data directory.

    Raises
    ------
    InputError
        A grid file is missing (Ramachandran validation needs all six).
    """
    tables = {}
    for rama_class, file_name in RAMA_GRID_FILES.items():
        path = find_grid(reference_data, RAMACHANDRAN_SUBDIR, file_name)
        if path is None:
            raise InputError(reference_data, f"Top8000 Ramachandran grid {file_name} not found "
                             f"(looked in {RAMACHANDRAN_SUBDIR}/ and the directory itself)")
        tables[rama_class] = read_table(path)
    return tables


def classify(value: float, rama_class: str) -> str:
    """'favoured' / 'allowed' / 'outlier' for a grid value (fraction 0..1)."""
    if value >= FAVOURED_THRESHOLD:
        return FAVOURED
    if value >= ALLOWED_THRESHOLD.get(rama_class, ALLOWED_THRESHOLD_OTHER):
        return ALLOWED
    return OUTLIER


def backbone_dihedrals(residues: ResidueTable) -> dict[str, np.ndarray]:
    """phi, psi and the preceding omega (degrees) per residue; NaN where undefined.

    omega(i) = CA(i-1)-C(i-1)-N(i)-CA(i), the peptide *before* residue i.
    """
    prev, nxt = residues.previous, residues.following
    n, ca, c = residues.atoms("N"), residues.atoms("CA"), residues.atoms("C")
    has_prev, has_next = prev >= 0, nxt >= 0
    prev_c = np.where(has_prev, c[np.maximum(prev, 0)], -1)
    prev_ca = np.where(has_prev, ca[np.maximum(prev, 0)], -1)
    next_n = np.where(has_next, n[np.maximum(nxt, 0)], -1)
    xyz = residues.model.xyz
    return {
        "phi": dihedrals_of(xyz, np.stack([prev_c, n, ca, c], axis=1)),
        "psi": dihedrals_of(xyz, np.stack([n, ca, c, next_n], axis=1)),
        "omega": dihedrals_of(xyz, np.stack([prev_ca, prev_c, n, ca], axis=1)),
    }


def ramachandran_classes(residues: ResidueTable, omega: np.ndarray) -> np.ndarray:
    """MolProbity class per residue (precedence in the module docstring)."""
    names = residues.name
    next_is_pro = np.zeros(residues.n_residues, dtype=bool)
    has_next = residues.following >= 0
    next_is_pro[has_next] = names[residues.following[has_next]] == "PRO"
    classes = np.full(residues.n_residues, "general", dtype=object)
    classes[(names == "ILE") | (names == "VAL")] = "isoleucine-valine"
    classes[next_is_pro] = "pre-proline"
    is_pro = names == "PRO"
    cis = np.abs(omega) < CIS_OMEGA_LIMIT  # NaN compares False: no preceding peptide = trans
    classes[is_pro & cis] = "cis-proline"
    classes[is_pro & ~cis] = "trans-proline"
    classes[names == "GLY"] = "glycine"
    return classes.astype(str)


def ramachandran_residues(residues: ResidueTable) -> np.ndarray:
    """Indices of the residues MolProbity's ramalyze evaluates (rule in the module docstring).

    Parameters
    ----------
    residues
        The model's residue table (peptide links from C-N distances).

    Returns
    -------
    (m,) int64, increasing.
    """
    standard = np.isin(residues.name, list(MOLPROBITY_AMINO_ACIDS))
    n, ca, c = residues.atoms("N"), residues.atoms("CA"), residues.atoms("C")
    backbone = (n >= 0) & (ca >= 0) & (c >= 0)
    prev, nxt = residues.previous, residues.following
    has_prev, has_next = prev >= 0, nxt >= 0
    prev_ok = np.zeros(residues.n_residues, dtype=bool)
    next_ok = np.zeros(residues.n_residues, dtype=bool)
    # a link implies C(i-1) and N(i+1); ramalyze also needs CA and C of the next residue
    prev_ok[has_prev] = standard[prev[has_prev]]
    next_ok[has_next] = standard[nxt[has_next]] & backbone[nxt[has_next]]
    return np.flatnonzero(standard & backbone & prev_ok & next_ok)


def ramachandran_analysis(residues: ResidueTable,
                          tables: dict[str, PercentileTable]) -> dict[str, object]:
    """Evaluate the residues of :func:`ramachandran_residues` against the Top8000 grids.

    Parameters
    ----------
    residues
        The model's residue table.
    tables
        From :func:`load_ramachandran_tables`.

    Returns
    -------
    dict with
        ``n_evaluated``, ``n_favoured``, ``n_allowed``, ``n_outliers``,
        ``percent_favoured``, ``percent_allowed``, ``percent_outliers``,
        ``n_by_class`` (class -> count), ``outliers`` (labels), ``source`` and
        ``residues``: one dict per evaluated residue (``residue`` index, ``phi``, ``psi``,
        ``rama_class``, ``percentile`` in %, ``status``).
    """
    angles = backbone_dihedrals(residues)
    classes = ramachandran_classes(residues, angles["omega"])
    evaluated = ramachandran_residues(residues)
    values = np.full(residues.n_residues, np.nan)
    for rama_class in RAMA_CLASSES:
        members = evaluated[classes[evaluated] == rama_class]
        if len(members):
            points = np.stack([angles["phi"][members], angles["psi"][members]], axis=1)
            values[members] = tables[rama_class].value_at(points)
    rows = []
    for r in evaluated:
        rows.append({
            "residue": int(r),
            "phi": float(angles["phi"][r]),
            "psi": float(angles["psi"][r]),
            "rama_class": str(classes[r]),
            "percentile": float(values[r] * 100.0),
            "status": classify(values[r], str(classes[r])),
        })
    source = f"MolProbity Top8000 grids ({Path(tables['general'].source).parent})"
    return summarise(rows, residues, source)


def summarise(rows: list[dict], residues: ResidueTable, source: str) -> dict[str, object]:
    """Counts and percentages from per-residue rows (shared with the Coot fallback)."""
    by_class: dict[str, int] = {}
    for row in rows:
        by_class[row["rama_class"]] = by_class.get(row["rama_class"], 0) + 1
    return {
        "source": source,
        **status_counts(rows),
        "n_by_class": by_class,
        "outliers": [str(residues.label[row["residue"]]) for row in rows
                     if row["status"] == OUTLIER],
        "residues": rows,
    }
