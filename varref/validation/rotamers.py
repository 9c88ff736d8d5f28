"""Side-chain rotamer validation with the MolProbity Top8000 rotamer grids.

Williams et al. (2018) Protein Sci. 27, 293; procedure of cctbx
``mmtbx/validation/rotalyze.py`` / ``mmtbx/rotamer/rotamer_eval.py``:

* chi angles from the atom quadruples of :data:`CHI_ATOMS` (MolProbity's
  ``sidechain_angles.props``); MSE is evaluated as MET with SE in place of SD;
* the residue's grid (:data:`ROTAMER_GRID_FILES`; Phe and Tyr share one) is interpolated at
  the chi angles; only as many chis as the grid has dimensions are used (Pro: chi1);
* symmetric side chains: the last chi of Asp (chi2), Glu (chi3), Phe and Tyr (chi2) is
  taken modulo 180 degrees, because OD1/OD2, OE1/OE2 and CD1/CD2 are chemically
  equivalent; the grids for these residues span only 0-180 on that axis;
* favoured >= 2 %, allowed >= 0.3 %, outlier < 0.3 %.

Residues whose grid file is absent from the reference data (in the shared snapshot:
``rota8000-arg.data`` and ``rota8000-lys.data``) are reported as
``"not evaluated (grid missing)"`` and left out of the percentages; nothing is guessed.
Residues lacking a chi atom are ``"not evaluated (missing atoms)"``, as MolProbity skips
incomplete side chains.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from varref.validation.residues import ResidueTable, dihedrals_of
from varref.validation.tables import (
    ALLOWED,
    FAVOURED,
    OUTLIER,
    ROTAMER_SUBDIR,
    PercentileTable,
    find_grid,
    read_table,
    status_counts,
)

#: chi1..chin atom quadruples per residue (MolProbity sidechain_angles.props).
CHI_ATOMS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ARG": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "NE"),
            ("CG", "CD", "NE", "CZ")),
    "ASN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "ASP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "CYS": (("N", "CA", "CB", "SG"),),
    "GLN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "GLU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "HIS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "ND1")),
    "ILE": (("N", "CA", "CB", "CG1"), ("CA", "CB", "CG1", "CD1")),
    "LEU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "LYS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "CE"),
            ("CG", "CD", "CE", "NZ")),
    "MET": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
    "MSE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SE"), ("CB", "CG", "SE", "CE")),
    "PHE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "PRO": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "N")),
    "SER": (("N", "CA", "CB", "OG"),),
    "THR": (("N", "CA", "CB", "OG1"),),
    "TRP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "TYR": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "VAL": (("N", "CA", "CB", "CG1"),),
}

#: Grid file per residue (MolProbity rotamer_eval.aminoAcids).
ROTAMER_GRID_FILES = {
    "ARG": "rota8000-arg.data", "ASN": "rota8000-asn.data", "ASP": "rota8000-asp.data",
    "CYS": "rota8000-cys.data", "GLN": "rota8000-gln.data", "GLU": "rota8000-glu.data",
    "HIS": "rota8000-his.data", "ILE": "rota8000-ile.data", "LEU": "rota8000-leu.data",
    "LYS": "rota8000-lys.data", "MET": "rota8000-met.data", "MSE": "rota8000-met.data",
    "PHE": "rota8000-phetyr.data", "PRO": "rota8000-pro.data", "SER": "rota8000-ser.data",
    "THR": "rota8000-thr.data", "TRP": "rota8000-trp.data", "TYR": "rota8000-phetyr.data",
    "VAL": "rota8000-val.data",
}

#: Residues whose last chi is 180-degree symmetric (folded to 0..180).
SYMMETRIC_LAST_CHI = ("ASP", "GLU", "PHE", "TYR")

OUTLIER_THRESHOLD = 0.003
FAVOURED_THRESHOLD = 0.02

GRID_MISSING = "not evaluated (grid missing)"
ATOMS_MISSING = "not evaluated (missing atoms)"


def load_rotamer_tables(reference_data: str | PathLike) -> dict[str, PercentileTable | None]:
    """Rotamer grid per residue name; None where the file is absent from the directory."""
    tables: dict[str, PercentileTable | None] = {}
    for resname, file_name in ROTAMER_GRID_FILES.items():
        path = find_grid(reference_data, ROTAMER_SUBDIR, file_name)
        tables[resname] = read_table(path) if path is not None else None
    return tables


def classify(value: float) -> str:
    """'favoured' / 'allowed' / 'outlier' for a grid value (fraction 0..1)."""
    if value >= FAVOURED_THRESHOLD:
        return FAVOURED
    if value >= OUTLIER_THRESHOLD:
        return ALLOWED
    return OUTLIER


def chi_angles(residues: ResidueTable, residue: int) -> np.ndarray | None:
    """chi1..chin (degrees, (-180, 180]) of one residue; None if any chi atom is missing
    or the residue type has no chi (Gly, Ala, unknown)."""
    quadruples = CHI_ATOMS.get(str(residues.name[residue]))
    if quadruples is None:
        return None
    indices = np.array([[residues.atom(residue, name) for name in quad] for quad in quadruples])
    if np.any(indices < 0):
        return None
    return dihedrals_of(residues.model.xyz, indices)


def fold_symmetric(resname: str, chis: np.ndarray) -> np.ndarray:
    """Chis as the grids use them: the symmetric last chi taken modulo 180, others in 0..360."""
    folded = np.mod(np.asarray(chis, dtype=np.float64), 360.0)
    if resname in SYMMETRIC_LAST_CHI:
        folded[-1] = np.mod(folded[-1], 180.0)
    return folded


def rotamer_analysis(residues: ResidueTable,
                     tables: dict[str, PercentileTable | None]) -> dict[str, object]:
    """Evaluate every amino-acid side chain that has chi angles.

    Parameters
    ----------
    residues
        The model's residue table.
    tables
        From :func:`load_rotamer_tables` (None entries: grid missing).

    Returns
    -------
    dict with ``n_evaluated``, ``n_favoured``, ``n_allowed``, ``n_outliers``,
    ``percent_favoured``, ``percent_allowed``, ``percent_outliers`` (of evaluated
    residues), ``n_not_evaluated_grid_missing`` with ``grid_missing_residue_types``,
    ``n_not_evaluated_missing_atoms``, ``outliers`` (labels), ``source`` and
    ``residues`` (one dict per amino acid with chis: ``residue``, ``chis``,
    ``percentile`` in % or None, ``status``).
    """
    rows = []
    for r in np.flatnonzero(residues.is_amino_acid):
        resname = str(residues.name[r])
        if resname not in CHI_ATOMS:
            continue
        chis = chi_angles(residues, r)
        row: dict[str, object] = {"residue": int(r), "chis": None, "percentile": None}
        if chis is None:
            row["status"] = ATOMS_MISSING
        elif tables.get(resname) is None:
            row["chis"] = [float(c) for c in chis]
            row["status"] = GRID_MISSING
        else:
            table = tables[resname]
            used = fold_symmetric(resname, chis[:table.n_dim])
            value = float(table.value_at(used))
            row["chis"] = [float(c) for c in chis]
            row["percentile"] = value * 100.0
            row["status"] = classify(value)
        rows.append(row)
    first_table = next((t for t in tables.values() if t is not None), None)
    source = (f"MolProbity Top8000 grids ({Path(first_table.source).parent})"
              if first_table is not None else "none")
    return summarise(rows, residues, source)


def summarise(rows: list[dict], residues: ResidueTable, source: str) -> dict[str, object]:
    """Counts and percentages from per-residue rows (shared with the Coot fallback)."""
    missing_grid = [row for row in rows if row["status"] == GRID_MISSING]
    return {
        "source": source,
        **status_counts(rows),
        "n_not_evaluated_grid_missing": len(missing_grid),
        "grid_missing_residue_types": sorted({str(residues.name[row["residue"]])
                                              for row in missing_grid}),
        "n_not_evaluated_missing_atoms": sum(row["status"] == ATOMS_MISSING for row in rows),
        "outliers": [str(residues.label[row["residue"]]) for row in rows
                     if row["status"] == OUTLIER],
        "residues": rows,
    }
