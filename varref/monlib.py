"""Locate and read the CCP4 monomer library.

Search order: an explicit directory (``--monlib DIR``) > ``$CLIBD_MON`` > the copy shipped
inside the ``coot-headless-api`` package (``coot_headless_api/share/coot/lib/data/monomers``).
A directory is accepted when it holds ``list/mon_lib_list.cif`` (the library's index).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from importlib.util import find_spec
from os import PathLike
from pathlib import Path

import gemmi

from varref.errors import InputError

_PACKAGE_SUBDIR = ("share", "coot", "lib", "data", "monomers")


def packaged_monomer_library() -> Path | None:
    """The monomer library inside the installed coot-headless-api package, if present."""
    spec = find_spec("coot_headless_api")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))).joinpath(*_PACKAGE_SUBDIR)
    return candidate if _is_monomer_library(candidate) else None


def _is_monomer_library(directory: Path) -> bool:
    return (directory / "list" / "mon_lib_list.cif").is_file()


def find_monomer_library(explicit: str | PathLike | None = None) -> Path:
    """Return the monomer-library directory to use (see module docstring for the order).

    Raises
    ------
    InputError
        The explicit or ``$CLIBD_MON`` directory is not a monomer library, or none is found.
    """
    if explicit is not None:
        directory = Path(explicit)
        if not _is_monomer_library(directory):
            raise InputError(directory, "not a CCP4 monomer library (no list/mon_lib_list.cif)")
        return directory
    from_env = os.environ.get("CLIBD_MON")
    if from_env:
        directory = Path(from_env)
        if not _is_monomer_library(directory):
            raise InputError(f"$CLIBD_MON={from_env}",
                             "not a CCP4 monomer library (no list/mon_lib_list.cif)")
        return directory
    packaged = packaged_monomer_library()
    if packaged is None:
        raise InputError("monomer library", "none found: install coot-headless-api==1.3.3rc1, "
                         "set $CLIBD_MON, or pass --monlib DIR")
    return packaged


def load_monomer_library(
    residue_names: Iterable[str],
    monlib_dir: str | PathLike | None = None,
    extra_cifs: Sequence[str | PathLike] = (),
) -> gemmi.MonLib:
    """Read the dictionaries of ``residue_names`` (plus links and modifications).

    Extra restraint CIFs (``--restraints FILE.cif``, e.g. from AceDRG or grade) are read
    first and take precedence over the library's own entries for the same residue.
    """
    directory = find_monomer_library(monlib_dir)
    extra = []
    for cif in extra_cifs:
        cif = Path(cif)
        if not cif.is_file():
            raise InputError(cif, "restraint dictionary file not found")
        stat = cif.stat()
        extra.append((str(cif.resolve()), stat.st_mtime_ns, stat.st_size))
    return _cached_library(tuple(sorted(set(residue_names))), str(directory), tuple(extra))


@functools.lru_cache(maxsize=8)
def _cached_library(residue_names: tuple[str, ...], directory: str,
                    extra_cifs: tuple[tuple[str, int, int], ...]) -> gemmi.MonLib:
    """Reading the dictionaries costs ~0.4 s for a protein; a refinement and its two
    validations ask for the same ones up to five times. The MonLib is only read from
    afterwards (topology preparation does not change it); the extra CIFs are keyed by
    modification time and size, so an edited file is read again."""
    monlib = gemmi.MonLib()
    extra_cifs = tuple(Path(cif) for cif, _, _ in extra_cifs)
    for cif in extra_cifs:
        try:
            monlib.read_monomer_cif(str(cif))
        except (RuntimeError, ValueError) as exc:
            raise InputError(cif, f"cannot read restraint dictionary: {str(exc).splitlines()[0]}") from None
    wanted = sorted(set(residue_names) - set(monlib.monomers.keys()))
    # read_monomer_lib reports missing monomers through its return value; the caller
    # names the first residue without a dictionary, so the logging here is not needed.
    monlib.read_monomer_lib(str(directory), wanted, logging=None)
    return monlib
