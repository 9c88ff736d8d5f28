"""Top8000 grid reading and MolProbity-style interpolation."""

from __future__ import annotations

import os

import numpy as np
import pytest

from varref.errors import InputError
from varref.validation.rotamers import fold_symmetric
from varref.validation.tables import find_grid, read_table, resolve_reference_data

#: (residue, chi angles, MolProbity percentile %) from cctbx
#: mmtbx/rotamer/rotamer_eval.py exercise(): values MolProbity gave for these chis (they are
#: 1ubq's side chains); the cctbx test accepts 0.9 % differences from data rounding.
MOLPROBITY_ROTAMER_VALUES = [
    ("MET", [80.4, -172.2, 177.5], 9.7),
    ("GLN", [166.0, 178.0, -107.4], 9.7),
    ("ILE", [60.3, 162.4], 24.2),
    ("PHE", [-60.7, 97.9], 94.4),
    ("VAL", [-179.8], 58.2),
    ("THR", [76.7], 10.3),
    ("ILE", [125.7, -175.4], 0.0),
    ("LEU", [-117.8, 30.2], 0.0),
    ("GLU", [-75.1, -167.9, 139.8], 34.9),
    ("PRO", [-29.0], 90.6),
    ("SER", [35.7], 0.5),
    ("ASP", [-80.6, -19.8], 55.0),
    ("ASN", [177.5, 53.8], 30.3),
    ("ASP", [134.6, -61.7], 0.0),
    ("TYR", [-63.3, 103.6], 90.4),
    ("HIS", [-69.1, -88.8], 80.8),
    ("LEU", [172.8, 65.9], 43.9),
    ("GLU", [-72.2, 126.6, 36.7], 0.6),
]


def test_grid_values_are_recovered_at_bin_centres(reference_data):
    path = find_grid(reference_data, "Top8000_ramachandran_pct_contour_grids",
                     "rama8000-general-noGPIVpreP.data")
    table = read_table(path)
    rows = np.loadtxt(path, comments="#")
    sample = rows[:: len(rows) // 50]
    assert np.allclose(table.value_at(sample[:, :2]), sample[:, 2], atol=1e-12)
    assert table.n_dim == 2 and table.values.shape == (180, 180)


def test_interpolation_is_linear_between_centres_and_wraps(reference_data):
    table = read_table(find_grid(reference_data, "Top8000_ramachandran_pct_contour_grids",
                                 "rama8000-general-noGPIVpreP.data"))
    a, b = table.value_at([-63.0, -43.0]), table.value_at([-61.0, -43.0])
    assert table.value_at([-62.0, -43.0]) == pytest.approx(0.5 * (a + b))
    # -180 and 180 are the same angle; the grid wraps across the seam
    assert table.value_at([-180.0, 100.0]) == pytest.approx(table.value_at([180.0, 100.0]))
    assert table.value_at([-179.0 - 360.0, 20.0]) == pytest.approx(table.value_at([-179.0, 20.0]))
    assert np.isnan(table.value_at([np.nan, 0.0]))


@pytest.mark.parametrize("resname, chis, expected", MOLPROBITY_ROTAMER_VALUES)
def test_rotamer_percentiles_match_molprobity(rotamer_tables, resname, chis, expected):
    table = rotamer_tables[resname]
    value = 100.0 * table.value_at(fold_symmetric(resname, np.array(chis)[:table.n_dim]))
    assert value == pytest.approx(expected, abs=0.9)


def test_symmetric_chi_folding_gives_the_same_percentile(rotamer_tables):
    table = rotamer_tables["PHE"]
    chis = np.array([-66.8, -80.6])
    flipped = chis + np.array([0.0, 180.0])  # CD1 and CD2 swapped
    assert table.value_at(fold_symmetric("PHE", chis)) == pytest.approx(
        table.value_at(fold_symmetric("PHE", flipped)))


def test_missing_reference_directory_is_an_input_error(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="not found"):
        resolve_reference_data(tmp_path / "nowhere")
    monkeypatch.delenv("VARREF_REFERENCE_DATA", raising=False)
    assert resolve_reference_data(None) is None
    monkeypatch.setenv("VARREF_REFERENCE_DATA", str(tmp_path))
    assert resolve_reference_data(None) == tmp_path


def _fresh_read(path):
    from varref.validation import tables

    tables._read_table_cached.cache_clear()  # the in-process cache would hide the disk one
    return read_table(path)


def test_parsed_grids_are_kept_on_disk_and_follow_the_file(tmp_path, monkeypatch, reference_data):
    """The second process (here: a cleared in-process cache) reads the arrays without parsing
    the text; an edited grid file is parsed again; the values are the parsed ones."""
    source = find_grid(reference_data, "Top8000_ramachandran_pct_contour_grids",
                       "rama8000-general-noGPIVpreP.data")
    grid = tmp_path / "grids" / source.name
    grid.parent.mkdir()
    grid.write_bytes(source.read_bytes())
    monkeypatch.setenv("VARREF_CACHE_DIR", str(tmp_path / "cache"))
    parsed = _fresh_read(grid)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("the grid was parsed although its arrays were cached")

    with monkeypatch.context() as patched:
        patched.setattr(np, "loadtxt", no_parsing)
        cached = _fresh_read(grid)
    assert cached.name == parsed.name and cached.source == str(grid.resolve())
    for field in ("lower", "upper", "n_bins", "wrap", "values"):
        np.testing.assert_array_equal(getattr(cached, field), getattr(parsed, field))
    # an edited file (other size and time) is a new key: parsed, not served stale
    text = grid.read_text().replace("-179.0 -179.0 ", "-179.0 -179.0 0.5 #", 1)
    grid.write_text(text)
    os.utime(grid, ns=(grid.stat().st_atime_ns, grid.stat().st_mtime_ns + 10**9))
    edited = _fresh_read(grid)
    assert edited.values[0, 0] == 0.5 != parsed.values[0, 0]
    _fresh_read(grid)  # leave the process cache clean for other tests


def test_an_unusable_cache_only_costs_the_parse(tmp_path, monkeypatch, reference_data):
    """A cache path that is a file, a corrupted entry, or caching turned off: same table."""
    grid = find_grid(reference_data, "Top8000_ramachandran_pct_contour_grids",
                     "rama8000-gly-sym.data")
    monkeypatch.setenv("VARREF_CACHE_DIR", "none")
    reference = _fresh_read(grid)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("VARREF_CACHE_DIR", str(blocked))
    np.testing.assert_array_equal(_fresh_read(grid).values, reference.values)
    monkeypatch.setenv("VARREF_CACHE_DIR", str(tmp_path / "cache"))
    _fresh_read(grid)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(b"truncated")
    np.testing.assert_array_equal(_fresh_read(grid).values, reference.values)
    np.testing.assert_array_equal(_fresh_read(grid).values, reference.values)  # rewritten
    _fresh_read(grid)
