"""Ramachandran analysis through coot-headless-api, for when no Top8000 grids are given.

What Coot computes is not MolProbity's analysis, so :func:`varref.validation.validate`
reports it apart (``ramachandran["coot"]``) and leaves the MolProbity Ramachandran fields
unavailable: on 3J6B chain 9 Coot gives 15 outliers of 185 (8.1 %) where molprobity.ramalyze
gives 8 (4.3 %), and 159 favoured (85.9 %) where ramalyze gives 163 (88.1 %). The
differences:

* ``molecules_container_t.ramachandran_validation`` evaluates phi/psi against clipper's
  Ramachandran tables with three classes only (Gly, Pro, everything else: no pre-Pro,
  Ile/Val or cis/trans-Pro split) and returns a probability; Coot calls a residue allowed
  when p >= 0.002 and its plot draws the favoured contour at p = 0.02 (Lovell et al. 2003
  levels). We use those two levels.
* ``rotamer_analysis`` returns, per side chain, the frequency (%) of the matching rotamer
  of Coot's own library, 0 when none matches. It is *not* a rotamericity percentile, and it
  is sensitive to the naming of symmetric atoms (OD1/OD2, CD1/CD2): on PDB 6OUT it
  returns 0 for 64 of the 1,200 side chains the Top8000 grids evaluate, none of which is
  a Top8000 outlier (19 of the 81 Phe among them). Rotamers are therefore not evaluated
  without ``--reference-data``; we do not turn those numbers into outliers.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np

from varref.errors import InputError
from varref.validation import ramachandran as rama
from varref.validation.residues import ResidueTable

COOT_FAVOURED = 0.02
COOT_ALLOWED = 0.002
SOURCE = ("coot-headless-api ramachandran_validation (clipper tables: general/Gly/Pro; "
          f"favoured p >= {COOT_FAVOURED}, allowed p >= {COOT_ALLOWED}); "
          "not the MolProbity Top8000 analysis")
RAMACHANDRAN_UNAVAILABLE = (
    "not evaluated: no --reference-data (Top8000 grids) given; pass --reference-data DIR or "
    "set $VARREF_REFERENCE_DATA for MolProbity's analysis")
ROTAMERS_UNAVAILABLE = (
    "not evaluated: no --reference-data (Top8000 grids) given, and coot-headless-api's "
    "rotamer_analysis reports library-rotamer frequencies (0 for many favoured rotamers), "
    "not rotamer percentiles; pass --reference-data DIR or set $VARREF_REFERENCE_DATA")


_container = None
_container_lock = threading.Lock()


def _molecules_container():
    """The process's one Coot container (creating one costs ~0.2 s, and a refinement's
    summary validates twice); callers hold :data:`_container_lock` while they use it."""
    global _container
    if _container is not None:
        return _container
    try:
        import coot_headless_api
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise InputError("--reference-data", "no Top8000 reference data given and "
                         f"coot-headless-api cannot be imported ({exc}); pass "
                         "--reference-data DIR or set $VARREF_REFERENCE_DATA") from None
    _container = coot_headless_api.molecules_container_t(False)
    return _container


def coot_ramachandran_analysis(residues: ResidueTable) -> dict[str, object]:
    """Ramachandran summary and per-residue rows computed by Coot (see module docstring).

    Residues are matched to Coot's by (chain, number, insertion code); the row layout is
    that of :func:`varref.validation.ramachandran.ramachandran_analysis`, with
    ``percentile`` = 100 x Coot's probability.

    Raises
    ------
    InputError
        coot-headless-api is missing or cannot read the model.
    """
    model = residues.model
    st = model.to_structure()
    with _container_lock, tempfile.TemporaryDirectory(prefix="varref-coot-") as directory:
        container = _molecules_container()
        # PDB keeps Coot on its most tested reader; mmCIF only when PDB cannot hold it
        use_cif = model.n_atoms > 99999 or any(len(c) > 1 for c in np.unique(model.chain_id))
        path = Path(directory) / ("model.cif" if use_cif else "model.pdb")
        if use_cif:
            st.make_mmcif_document().write_file(str(path))
        else:
            st.write_pdb(str(path))
        imol = container.read_pdb(str(path))
        if imol < 0:
            raise InputError(model.source or "model", "coot-headless-api could not read the "
                             "model; pass --reference-data DIR for the Top8000 analysis")
        try:
            phi_psi_results = container.ramachandran_validation(imol)
            # phi_psi_prob_t does not expose its probability in this binding; the graph
            # data of ramachandran_analysis carries the same number per residue
            probability = {
                _key(item.residue_spec.chain_id, item.residue_spec.res_no,
                     item.residue_spec.ins_code): float(item.function_value)
                for chain in container.ramachandran_analysis(imol).cviv for item in chain.rviv
            }
            phi_psi = [(result.phi_psi.chain_id, result.phi_psi.residue_number,
                        result.phi_psi.ins_code, float(result.phi_psi.phi()),
                        float(result.phi_psi.psi())) for result in phi_psi_results]
        finally:
            container.close_molecule(imol)  # the container is reused
    index = {(str(c), int(n), str(i)): r for r, (c, n, i) in
             enumerate(zip(residues.chain, residues.number, residues.icode))}
    rows = []
    for chain_id, number, icode, phi, psi in phi_psi:
        key = _key(chain_id, number, icode)
        r = index.get(key)
        p = probability.get(key)
        if r is None or p is None:
            continue
        resname = str(residues.name[r])
        rama_class = {"GLY": "glycine", "PRO": "proline"}.get(resname, "general")
        if p >= COOT_FAVOURED:
            status = rama.FAVOURED
        elif p >= COOT_ALLOWED:
            status = rama.ALLOWED
        else:
            status = rama.OUTLIER
        rows.append({"residue": r, "phi": phi, "psi": psi,
                     "rama_class": rama_class, "percentile": 100.0 * p, "status": status})
    rows.sort(key=lambda row: row["residue"])
    return rama.summarise(rows, residues, SOURCE)


def _key(chain_id: str, number: int, icode: str) -> tuple[str, int, str]:
    return str(chain_id), int(number), str(icode).strip()
