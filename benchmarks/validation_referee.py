"""MolProbity's own numbers (cctbx) for every shared model: the reference table of the
validation-agreement test.

Command (from the repository root; the referee venv is built by
``../shared/tools/referee-setup.sh /work/referee``)::

    /work/referee/bin/python benchmarks/validation_referee.py \
        --out tests/validation/molprobity_reference.json

Run with any other Python (e.g. varref's venv) it re-runs itself under the referee's
interpreter (``--referee-python``, default ``$VARREF_REFEREE_PYTHON`` or
``/work/referee/bin/python``).

For each model in ``../shared/data/models/*.pdb|cif`` and ``../shared/data/maps/*/*.pdb|cif``
it records

* ``ramachandran``: cctbx ``mmtbx.validation.ramalyze`` (molprobity.ramalyze) counts and
  percentages of favoured/allowed/outliers, residues per class, and the non-favoured
  residues (chain, number, altloc, class, status, score, phi, psi);
* ``rotamers``: cctbx ``mmtbx.validation.rotalyze`` (molprobity.rotalyze) counts and
  percentages, with the rotamer grids of ``../shared/data/validation/top8000`` (pickled
  into ``--cache`` by cctbx's own ``rebuild_pickle_files``); residue types whose grid is
  absent there (Arg, Lys) are left out, as varref does;
* ``geometry``: bond/angle r.m.s.d. over heavy atoms printed by
  ``../shared/tools/referee.py`` (gemmi against the CCP4 monomer library);
* ``clashscore``: ``None`` with the reason -- cctbx-base ships neither Probe/Reduce
  (``molprobity.clashscore``) nor the chem_data monomer library that reduce2/probe2
  (``mmtbx.clashscore2``) need (it stops at the missing ``NH1NOTPRO`` modification with the
  CCP4 library), so the referee cannot compute it.

cctbx's ramalyze uses the Top8000 tables compiled into ``mmtbx_validation_ramachandran_ext``;
rotalyze reads the pickles built here. The monomer library for cctbx
(``MMTBX_CCP4_MONOMER_LIB``, ``CLIBD_MON``) is the CCP4 library shipped with
coot-headless-api in the referee venv.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPOSITORY.parent / "shared"
DEFAULT_OUT = REPOSITORY / "tests" / "validation" / "molprobity_reference.json"
DEFAULT_REFEREE_PYTHON = os.environ.get("VARREF_REFEREE_PYTHON", "/work/referee/bin/python")

RAMA_CLASS_NAMES = ("general", "glycine", "cis-proline", "trans-proline", "pre-proline",
                    "isoleucine-valine")  # ramalyze.res_types order, varref's spelling
RAMA_STATUS = ("outlier", "allowed", "favoured")  # RAMALYZE_OUTLIER/ALLOWED/FAVORED
CLASHSCORE_UNAVAILABLE = (
    "not computed: cctbx-base has no Probe/Reduce executables (molprobity.clashscore) and "
    "reduce2/probe2 (mmtbx.clashscore2) need cctbx's chem_data monomer library (mon_lib "
    "modifications such as NH1NOTPRO, chemical_components), which cctbx-base does not ship")


def shared_models(shared: Path) -> list[Path]:
    """Every model file of the shared data set, in a stable order.

    Parameters
    ----------
    shared
        The shared folder (holding ``data/``).

    Returns
    -------
    Paths of ``data/models/*.pdb|cif`` and ``data/maps/*/*.pdb|cif``.
    """
    data = shared / "data"
    found = []
    for pattern in ("models/*.pdb", "models/*.cif", "maps/*/*.pdb", "maps/*/*.cif"):
        found.extend(sorted(data.glob(pattern)))
    return found


def _monomer_library() -> str:
    spec = importlib.util.find_spec("coot_headless_api")
    if spec is None or spec.origin is None:
        raise SystemExit("coot-headless-api (the CCP4 monomer library) is not installed in "
                         "the referee venv")
    return os.path.join(os.path.dirname(spec.origin), "share/coot/lib/data/monomers")


def _rotamer_cache(top8000: Path, cache: Path) -> tuple[Path, list[str]]:
    """Pickle the shared rotamer grids with cctbx's own converter; point cctbx at them.

    Parameters
    ----------
    top8000
        ``shared/data/validation/top8000``.
    cache
        Directory for the ``rota8000-*.data`` copies and their pickles.

    Returns
    -------
    The cache directory and the residue types (lower case) that have no grid; those are
    removed from cctbx's table list, so rotalyze leaves them out.
    """
    from mmtbx.command_line.rebuild_rotarama_cache import rebuild_pickle_files
    from mmtbx.rotamer import rotamer_eval

    grids = top8000 / "Top8000_rotamer_pct_contour_grids"
    cache.mkdir(parents=True, exist_ok=True)
    missing = []
    for aa, stem in list(rotamer_eval.aminoAcids.items()):
        source = grids / f"rota8000-{stem}.data"
        if not source.is_file():
            missing.append(aa)
            # RotamerEval loads every table it knows: forget the absent ones, so that
            # evaluate() returns None and rotalyze leaves those residues out
            del rotamer_eval.aminoAcids[aa]
            continue
        target = cache / source.name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    db = rotamer_eval.open_rotarama_dlite(rotarama_data_dir=str(cache))
    cwd = os.getcwd()
    try:  # rebuild_pickle_files changes directory
        rebuild_pickle_files(data_dir=str(cache), file_prefix="rota8000-", target_db=db,
                             amino_acids=rotamer_eval.aminoAcids)
    finally:
        os.chdir(cwd)
    rotamer_eval.find_rotarama_data_dir = lambda optional=False: str(cache)
    return cache, sorted(missing)


def _hierarchy(path: Path):
    import iotbx.pdb

    return iotbx.pdb.input(file_name=str(path)).construct_hierarchy()


def _percent(k: int, n: int) -> float | None:
    return 100.0 * k / n if n else None


def ramachandran_reference(hierarchy) -> dict:
    """molprobity.ramalyze on a hierarchy.

    Parameters
    ----------
    hierarchy
        An iotbx.pdb hierarchy.

    Returns
    -------
    dict with counts and percentages of favoured/allowed/outliers (ramalyze counts altloc
    A or blank), residues per class, and every non-favoured residue.
    """
    from mmtbx.validation import ramalyze

    result = ramalyze.ramalyze(pdb_hierarchy=hierarchy, out=None, quiet=True)
    n = result.n_total
    residues = [
        {"chain": r.chain_id.strip(), "resseq": int(r.resseq), "icode": r.icode.strip(),
         "altloc": r.altloc.strip(), "resname": r.resname.strip(),
         "rama_class": RAMA_CLASS_NAMES[r.res_type], "status": RAMA_STATUS[r.rama_type],
         "percentile": round(float(r.score), 4), "phi": round(float(r.phi), 2),
         "psi": round(float(r.psi), 2)}
        for r in result.results if r.rama_type != ramalyze.RAMALYZE_FAVORED
    ]
    return {
        "n_evaluated": n, "n_favoured": result.n_favored, "n_allowed": result.n_allowed,
        "n_outliers": result.n_outliers,
        "percent_favoured": _percent(result.n_favored, n),
        "percent_allowed": _percent(result.n_allowed, n),
        "percent_outliers": _percent(result.n_outliers, n),
        "n_by_class": {name: int(k) for name, k in zip(RAMA_CLASS_NAMES, result.n_type) if k},
        "not_favoured": residues,
    }


def rotamer_reference(hierarchy) -> dict:
    """molprobity.rotalyze on a hierarchy.

    Parameters
    ----------
    hierarchy
        An iotbx.pdb hierarchy.

    Returns
    -------
    dict with counts and percentages (every altloc conformer counts, as in rotalyze) and
    the outlier residues.
    """
    from mmtbx.validation import rotalyze

    result = rotalyze.rotalyze(pdb_hierarchy=hierarchy, out=None, quiet=True)
    n = result.n_total
    outliers = [
        {"chain": r.chain_id.strip(), "resseq": int(r.resseq), "icode": r.icode.strip(),
         "altloc": r.altloc.strip(), "resname": r.resname.strip(),
         "percentile": round(float(r.score), 4)}
        for r in result.results if r.is_outlier()
    ]
    return {
        "n_evaluated": n, "n_favoured": result.n_favored, "n_allowed": result.n_allowed,
        "n_outliers": result.n_outliers,
        "percent_favoured": _percent(result.n_favored, n),
        "percent_allowed": _percent(result.n_allowed, n),
        "percent_outliers": _percent(result.n_outliers, n),
        "outliers": outliers,
    }


def _referee_module(shared: Path):
    path = shared / "tools" / "referee.py"
    spec = importlib.util.spec_from_file_location("varref_referee_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_json(value, indent: int = 0) -> str:
    """JSON with nested objects indented and flat objects (residue rows) on one line each."""
    pad = " " * (indent + 1)
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()):
        items = [f"{pad}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{pad}{to_json(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value)


def run_referee(shared: Path, out: Path, cache: Path) -> dict:
    """Compute the table (inside the referee venv) and write it to ``out``.

    Parameters
    ----------
    shared
        The shared folder.
    out
        JSON file to write (atomically replaced).
    cache
        Directory for cctbx's rotamer pickles.

    Returns
    -------
    The table written.
    """
    library = _monomer_library()
    # cctbx reads these when its monomer-library server is first built
    os.environ["MMTBX_CCP4_MONOMER_LIB"] = library
    os.environ["CLIBD_MON"] = library + "/"
    from libtbx.version import get_version

    referee = _referee_module(shared)
    _, no_grid = _rotamer_cache(shared / "data" / "validation" / "top8000", cache)
    table = {
        "generated_by": "benchmarks/validation_referee.py",
        "command": "/work/referee/bin/python benchmarks/validation_referee.py "
                   "--out tests/validation/molprobity_reference.json",
        "cctbx_version": get_version(),
        "ramachandran_source": "mmtbx.validation.ramalyze (Top8000 tables compiled into "
                               "cctbx's mmtbx_validation_ramachandran_ext)",
        "rotamer_source": "mmtbx.validation.rotalyze with shared/data/validation/top8000 "
                          "rotamer grids",
        "rotamer_types_not_evaluated": [aa.upper() for aa in no_grid],
        "geometry_source": "shared/tools/referee.py geometry(): gemmi topology from the CCP4 "
                           "monomer library, heavy atoms, waters removed",
        "clashscore_source": CLASHSCORE_UNAVAILABLE,
        "models": {},
    }
    for path in shared_models(shared):
        key = path.relative_to(shared / "data").as_posix()
        entry: dict = {}
        try:
            hierarchy = _hierarchy(path)
            entry["ramachandran"] = ramachandran_reference(hierarchy)
            entry["rotamers"] = rotamer_reference(hierarchy)
        except Exception as exc:  # recorded, so the test can say why a model has no numbers
            entry["error"] = f"{type(exc).__name__}: {exc}"
        try:
            entry["geometry"] = referee.geometry(str(path))
        except Exception as exc:
            entry["geometry"] = {"error": f"{type(exc).__name__}: {exc}"}
        entry["clashscore"] = None
        table["models"][key] = entry
        rama = entry.get("ramachandran", {})
        print(f"{key:60s} rama n={rama.get('n_evaluated')} fav={rama.get('percent_favoured')} "
              f"out={rama.get('percent_outliers')}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(to_json(table) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="the shared folder (default ../shared)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON table to write")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "varref-referee-rotarama",
                        help="directory for cctbx's rotamer pickles")
    parser.add_argument("--referee-python", default=DEFAULT_REFEREE_PYTHON,
                        help="interpreter of the referee venv (used when this one lacks cctbx)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("mmtbx") is None:
        if not Path(args.referee_python).is_file():
            print(f"cctbx is not importable here and {args.referee_python} does not exist; "
                  "build it with shared/tools/referee-setup.sh", file=sys.stderr)
            return 2
        command = [args.referee_python, str(Path(__file__).resolve()), "--shared",
                   str(args.shared.resolve()), "--out", str(args.out.resolve()), "--cache",
                   str(args.cache.resolve())]
        return subprocess.call(command)
    run_referee(args.shared.resolve(), args.out.resolve(), args.cache.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
