"""Malformed-input corpus: every case must end with exit 2 and exactly one line
``varref: error: ...`` naming the culprit (file or option), leave nothing in the output
directory, and leave every input byte-for-byte unchanged.

All inputs are generated here (an 8-residue ideal helix, its simulated map, and broken
variants of both). Commands run in-process through :func:`varref.cli.main`; every case fails
before any refinement or Dask cluster starts, so the whole corpus takes seconds. A few
subprocess tests at the end cover a closed stdout pipe and Ctrl-C.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from varref.cli import build_parser, main

# ---------------------------------------------------------------- generated inputs


def _pdb_lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _atoms(lines: list[str]) -> list[int]:
    return [k for k, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))]


def _set_field(line: str, start: int, end: int, text: str) -> str:
    """Replace PDB columns [start, end) (0-based) by ``text`` right-aligned."""
    return line[:start] + text.rjust(end - start)[: end - start] + line[end:]


def _write_mrc(path: Path, data, voxel=1.0, origin=(0.0, 0.0, 0.0)) -> Path:
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.asarray(data))
        mrc.voxel_size = voxel
        mrc.header.origin = origin
    return path


def _patch_header(source: Path, target: Path, offset: int, values, dtype="<f4") -> Path:
    raw = bytearray(source.read_bytes())
    block = np.asarray(values, dtype=dtype).tobytes()
    raw[offset:offset + len(block)] = block
    target.write_bytes(bytes(raw))
    return target


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A directory of good and broken inputs (read-only for the tests)."""
    from varref.ensemble.results import ResultStore
    from varref.example_data import example_helix
    from varref.maps import write_map
    from varref.model import write_model
    from varref.simulate import simulate_map

    folder = tmp_path_factory.mktemp("inputs")
    model = example_helix(8)
    write_model(model, folder / "good.pdb")
    density = simulate_map(model, 3.0)
    write_map(density, folder / "good.mrc")
    write_map(density, folder / "frame_1.mrc")
    lines = _pdb_lines(folder / "good.pdb")
    atoms = _atoms(lines)
    first = atoms[0]

    def variant(name: str, edit) -> None:
        copy = list(lines)
        edit(copy)
        (folder / name).write_text("".join(copy))

    variant("nan_xyz.pdb", lambda c: c.__setitem__(first, _set_field(c[first], 30, 38, "nan")))
    variant("huge_xyz.pdb", lambda c: c.__setitem__(first, _set_field(c[first], 30, 38, "9.99e29")))
    variant("nan_b.pdb", lambda c: c.__setitem__(first, _set_field(c[first], 60, 66, "nan")))
    def unknown_residue_before_ter(c: list[str]) -> None:
        # an unknown residue inside the chain and a TER before its last residues: gemmi's
        # entity setup used to fail with "assign_subchains(): missing entity_type"
        for k in atoms:
            if c[k][22:26].strip() == "4":
                c[k] = c[k][:17] + "XYZ" + c[k][20:]
        last = next(k for k in atoms if c[k][22:26].strip() == "7")
        c.insert(last, "TER\n")

    variant("unknown_ter.pdb", unknown_residue_before_ter)
    raw = "".join(lines).encode()
    # a Latin-1 byte inside the first atom's name field
    cut = raw.index(b"ATOM") + 13
    (folder / "latin1.pdb").write_bytes(raw[:cut] + b"\xe9" + raw[cut + 1:])
    water = "".join(
        f"HETATM{k + 1:5d}  O   HOH W{k + 1:4d}    {1.0 + 3 * k:8.3f}{2.0:8.3f}{3.0:8.3f}"
        f"  1.00 20.00           O\n" for k in range(3)) + "END\n"
    (folder / "water.pdb").write_text(water)
    (folder / "two_atoms.pdb").write_text("".join(lines[k] for k in atoms[:2]) + "END\n")
    hydrogens = "".join(
        f"ATOM  {k + 1:5d}  H{k + 1:<2d} ALA A   1    {1.0 + k:8.3f}{2.0:8.3f}{3.0:8.3f}"
        f"  1.00 20.00           H\n" for k in range(3)) + "END\n"
    (folder / "hydrogens.pdb").write_text(hydrogens)
    (folder / "empty.pdb").write_text("")
    text = "".join(lines)
    (folder / "cut.pdb").write_text(text[: text.index("ATOM", 500) + 40])
    (folder / "garbage.cif").write_text("data_x\nloop_\n_atom_site.id\n_atom_site.x\n1\n")
    (folder / "no_atoms.pdb").write_text("REMARK nothing here\nEND\n")

    good_map = folder / "good.mrc"
    _write_mrc(folder / "complex.mrc", (np.ones((6, 6, 6)) + 1j).astype(np.complex64))
    _patch_header(good_map, folder / "nan_cell.mrc", 40, [np.nan, np.nan, np.nan])
    _patch_header(good_map, folder / "nan_origin.mrc", 196, [np.nan, 0.0, 0.0])
    _patch_header(good_map, folder / "zero_sampling.mrc", 28, [0, 0, 0], dtype="<i4")
    nan_data = np.zeros((10, 10, 10), np.float32)
    nan_data[1, 2, 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about the NaN we want
        _write_mrc(folder / "nan_values.mrc", nan_data)
    (folder / "empty.mrc").write_bytes(b"")
    (folder / "short.mrc").write_bytes(good_map.read_bytes()[:-400])
    (folder / "text.mrc").write_text("this is not a map\n" * 80)
    _write_mrc(folder / "far.mrc", np.ones((10, 10, 10), np.float32), origin=(900.0, 900.0, 900.0))
    _write_mrc(folder / "other_grid.mrc", np.ones((7, 8, 9), np.float32))
    (folder / "a_directory").mkdir()
    (folder / "a_directory" / "old.cif").write_text("data_old\n")
    # a results store with no finished member (export has nothing to write)
    ResultStore.create(folder / "unfinished.zarr", model, 1, 2, ["good.mrc"], {"kind": "ensemble"})
    return folder


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the corpus

I = "{in}"    # replaced by the inputs directory
O = "{out}"   # replaced by the (initially empty) output directory

REFINE = ["refine", f"{I}/good.pdb", f"{I}/good.mrc", "--resolution", "3", "-o", f"{O}/r.cif"]
ENSEMBLE = ["ensemble", f"{I}/good.pdb", f"{I}/good.mrc", "--resolution", "3", "--members", "2",
            "--perturb-rmsd", "0.5", "-o", f"{O}/e.zarr"]
SERIES = ["series", f"{I}/good.pdb", f"{I}/good.mrc", f"{I}/frame_1.mrc", "--resolution", "3",
          "-o", f"{O}/s.zarr"]
SCAN = ["pixel-scan", f"{I}/good.pdb", f"{I}/good.mrc", "--resolution", "3", "-o", f"{O}/scan.nc"]
VALIDATE = ["validate", f"{I}/good.pdb", "--json", f"{O}/v.json"]
TO_ZARR = ["maps-to-zarr", f"{I}/good.mrc", f"{I}/frame_1.mrc", "-o", f"{O}/m.zarr"]
EXPORT = ["export", f"{I}/unfinished.zarr", "-o", f"{O}/x.cif"]


def with_(base: list[str], *extra: str, replace: dict[str, str] | None = None) -> list[str]:
    """``base`` with items replaced (whole-item match) and ``extra`` appended."""
    replace = replace or {}
    return [replace.get(item, item) for item in base] + list(extra)


def model(name: str) -> dict[str, str]:
    return {f"{I}/good.pdb": f"{I}/{name}"}


def map_(name: str) -> dict[str, str]:
    return {f"{I}/good.mrc": f"{I}/{name}"}


CASES = {
    # ---- refine: options
    "refine-resolution-nan": (with_(REFINE, replace={"3": "nan"}), "--resolution"),
    "refine-resolution-inf": (with_(REFINE, replace={"3": "inf"}), "--resolution"),
    "refine-resolution-huge": (with_(REFINE, replace={"3": "1e6"}), "--resolution"),
    "refine-resolution-zero": (with_(REFINE, replace={"3": "0"}), "--resolution"),
    "refine-resolution-text": (with_(REFINE, replace={"3": "three"}), "--resolution"),
    "refine-weight-negative": (with_(REFINE, "--weight", "-5"), "--weight"),
    "refine-weight-nan": (with_(REFINE, "--weight", "nan"), "--weight"),
    "refine-macro-cycles-zero": (with_(REFINE, "--macro-cycles", "0"), "--macro-cycles"),
    "refine-iterations-negative": (with_(REFINE, "--iterations", "-1"), "--iterations"),
    "refine-map-b-inf": (with_(REFINE, "--map-b", "inf"), "--map-b"),
    "refine-seed-negative": (with_(REFINE, "--seed", "-3"), "--seed"),
    "refine-bond-target-zero": (with_(REFINE, "--bond-rmsd-target", "0"), "--bond-rmsd-target"),
    "refine-unknown-option": (with_(REFINE, "--no-such-option"), "--no-such-option"),
    "refine-hydrogens-unknown": (with_(REFINE, "--hydrogens", "implicit"), "--hydrogens"),
    # ---- refine: outputs
    "refine-output-is-model": (with_(REFINE, replace={f"{O}/r.cif": f"{I}/good.pdb"}), "--output"),
    "refine-output-is-map": (with_(REFINE, replace={f"{O}/r.cif": f"{I}/good.mrc"}), "--output"),
    "refine-output-dir-missing": (with_(REFINE, replace={f"{O}/r.cif": f"{O}/no/r.cif"}), "--output"),
    "refine-output-is-directory": (with_(REFINE, replace={f"{O}/r.cif": f"{I}/a_directory"}), "--output"),
    "refine-output-bad-suffix": (with_(REFINE, replace={f"{O}/r.cif": f"{O}/r.txt"}), "--output"),
    "refine-json-dir-missing": (with_(REFINE, "--json", f"{O}/no/m.json"), "--json"),
    "refine-json-same-as-output": (with_(REFINE, "--json", f"{O}/r.cif"), "--json"),
    "refine-plots-dir-missing": (with_(REFINE, "--plots", f"{O}/no/p"), "--plots"),
    "refine-fsc-out-suffix": (with_(REFINE, "--fsc-out", f"{O}/f.txt"), "--fsc-out"),
    "refine-output-exists": (with_(REFINE, replace={f"{O}/r.cif": f"{I}/a_directory/old.cif"}),
                             "--overwrite"),
    "refine-no-map": (["refine", f"{I}/good.pdb", "--resolution", "3", "-o", f"{O}/r.cif"], "map"),
    # ---- refine: models
    "refine-model-missing": (with_(REFINE, replace=model("absent.pdb")), "absent.pdb"),
    "refine-model-empty": (with_(REFINE, replace=model("empty.pdb")), "empty.pdb"),
    "refine-model-nan-xyz": (with_(REFINE, replace=model("nan_xyz.pdb")), "nan_xyz.pdb"),
    "refine-model-huge-xyz": (with_(REFINE, replace=model("huge_xyz.pdb")), "huge_xyz.pdb"),
    "refine-model-nan-b": (with_(REFINE, replace=model("nan_b.pdb")), "nan_b.pdb"),
    "refine-model-latin1": (with_(REFINE, replace=model("latin1.pdb")), "latin1.pdb"),
    "refine-model-water-only": (with_(REFINE, replace=model("water.pdb")), "water.pdb"),
    "refine-model-two-atoms": (with_(REFINE, replace=model("two_atoms.pdb")), "two_atoms.pdb"),
    "refine-model-truncated": (with_(REFINE, replace=model("cut.pdb")), "cut.pdb"),
    "refine-model-garbage-cif": (with_(REFINE, replace=model("garbage.cif")), "garbage.cif"),
    "refine-model-no-atoms": (with_(REFINE, replace=model("no_atoms.pdb")), "no_atoms.pdb"),
    "refine-model-unknown-residue": (with_(REFINE, replace=model("unknown_ter.pdb")),
                                     "no restraint dictionary for residue XYZ"),
    "refine-model-is-directory": (with_(REFINE, replace=model("a_directory")), "a_directory"),
    # ---- refine: maps
    "refine-map-complex": (with_(REFINE, replace=map_("complex.mrc")), "complex.mrc"),
    "refine-map-nan-cell": (with_(REFINE, replace=map_("nan_cell.mrc")), "nan_cell.mrc"),
    "refine-map-nan-origin": (with_(REFINE, replace=map_("nan_origin.mrc")), "nan_origin.mrc"),
    "refine-map-zero-sampling": (with_(REFINE, replace=map_("zero_sampling.mrc")), "zero_sampling.mrc"),
    "refine-map-nan-values": (with_(REFINE, replace=map_("nan_values.mrc")), "nan_values.mrc"),
    "refine-map-empty": (with_(REFINE, replace=map_("empty.mrc")), "empty.mrc"),
    "refine-map-short": (with_(REFINE, replace=map_("short.mrc")), "short.mrc"),
    "refine-map-text": (with_(REFINE, replace=map_("text.mrc")), "text.mrc"),
    "refine-map-far": (with_(REFINE, replace=map_("far.mrc")), "far.mrc"),
    # ---- validate
    "validate-hydrogens-only": (with_(VALIDATE, replace=model("hydrogens.pdb")), "hydrogens.pdb"),
    "validate-nan-xyz": (with_(VALIDATE, replace=model("nan_xyz.pdb")), "nan_xyz.pdb"),
    "validate-latin1": (with_(VALIDATE, replace=model("latin1.pdb")), "latin1.pdb"),
    "validate-map-without-resolution": (["validate", f"{I}/good.pdb", f"{I}/good.mrc"], "--resolution"),
    "validate-resolution-without-map": (with_(VALIDATE, "--resolution", "3"), "--resolution"),
    "validate-resolution-nan": (["validate", f"{I}/good.pdb", f"{I}/good.mrc", "--resolution", "nan"],
                                "--resolution"),
    "validate-json-dir-missing": (with_(VALIDATE, replace={f"{O}/v.json": f"{O}/no/v.json"}), "--json"),
    "validate-json-is-input": (with_(VALIDATE, replace={f"{O}/v.json": f"{I}/good.pdb"}), "--json"),
    "validate-csv-same-as-json": (with_(VALIDATE, "--per-residue", f"{O}/v.json"), "--per-residue"),
    "validate-plots-dir-missing": (with_(VALIDATE, "--plots", f"{O}/no/p"), "--plots"),
    "validate-map-complex": (["validate", f"{I}/good.pdb", f"{I}/complex.mrc", "--resolution", "3"],
                             "complex.mrc"),
    "validate-map-far": (["validate", f"{I}/good.pdb", f"{I}/far.mrc", "--resolution", "3"], "far.mrc"),
    # ---- ensemble
    "ensemble-members-zero": (with_(ENSEMBLE, replace={"2": "0"}), "--members"),
    "ensemble-members-missing": ([a for a in ENSEMBLE if a not in ("--members", "2")], "--members"),
    "ensemble-old-n-models-zero": (["ensemble", f"{I}/good.pdb", f"{I}/good.mrc", "--resolution", "3",
                                    "--n-models", "0", "--perturb-rmsd", "0.5", "-o", f"{O}/e.zarr"],
                                   "--n-models"),
    "ensemble-perturb-nan": (with_(ENSEMBLE, replace={"0.5": "nan"}), "--perturb-rmsd"),
    "ensemble-perturb-negative": (with_(ENSEMBLE, replace={"0.5": "-1"}), "--perturb-rmsd"),
    "ensemble-workers-negative": (with_(ENSEMBLE, "--workers", "-1"), "--workers"),
    "ensemble-batch-size-zero": (with_(ENSEMBLE, "--batch-size", "0"), "--batch-size"),
    "ensemble-macro-cycles-zero": (with_(ENSEMBLE, "--macro-cycles", "0"), "--macro-cycles"),
    "ensemble-output-is-input": (with_(ENSEMBLE, replace={f"{O}/e.zarr": f"{I}/good.mrc"}), "--output"),
    "ensemble-output-exists": (with_(ENSEMBLE, replace={f"{O}/e.zarr": f"{I}/a_directory"}), "--resume"),
    "ensemble-output-dir-missing": (with_(ENSEMBLE, replace={f"{O}/e.zarr": f"{O}/no/e.zarr"}), "--output"),
    "ensemble-plots-dir-missing": (with_(ENSEMBLE, "--plots", f"{O}/no/p"), "--plots"),
    "ensemble-model-water-only": (with_(ENSEMBLE, replace=model("water.pdb")), "water.pdb"),
    "ensemble-map-complex": (with_(ENSEMBLE, replace=map_("complex.mrc")), "complex.mrc"),
    "ensemble-map-far": (with_(ENSEMBLE, replace=map_("far.mrc")), "far.mrc"),
    # ---- series
    "series-resolution-zero": (with_(SERIES, replace={"3": "0"}), "--resolution"),
    "series-members-zero": (with_(SERIES, "--members", "0"), "--members"),
    "series-old-models-per-map-zero": (with_(SERIES, "--models-per-map", "0"), "--models-per-map"),
    "series-reference-frame-out-of-range": (with_(SERIES, "--reference-frame", "5"), "--reference-frame"),
    "series-reference-frame-negative": (with_(SERIES, "--reference-frame", "-1"), "--reference-frame"),
    "series-perturb-negative": (with_(SERIES, "--perturb-rmsd", "-0.1"), "--perturb-rmsd"),
    "series-workers-zero": (with_(SERIES, "--workers", "0"), "--workers"),
    "series-output-is-input": (with_(SERIES, replace={f"{O}/s.zarr": f"{I}/frame_1.mrc"}), "--output"),
    "series-model-nan-b": (with_(SERIES, replace=model("nan_b.pdb")), "nan_b.pdb"),
    "series-map-nan-values": (with_(SERIES, replace=map_("nan_values.mrc")), "nan_values.mrc"),
    "series-maps-other-grid": (with_(SERIES, replace={f"{I}/frame_1.mrc": f"{I}/other_grid.mrc"}),
                               "other_grid.mrc"),
    # ---- pixel-scan
    "scan-step-too-large": (with_(SCAN, "--step", "5"), "--step"),
    "scan-step-too-small": (with_(SCAN, "--step", "1e-9"), "--step"),
    "scan-step-zero": (with_(SCAN, "--step", "0"), "--step"),
    "scan-range-reversed": (with_(SCAN, "--range", "1.05:0.95"), "--range"),
    "scan-range-nan": (with_(SCAN, "--range", "nan:1"), "--range"),
    "scan-range-text": (with_(SCAN, "--range", "0.9-1.1"), "--range"),
    "scan-resolution-inf": (with_(SCAN, replace={"3": "inf"}), "--resolution"),
    "scan-workers-zero": (with_(SCAN, "--workers", "0"), "--workers"),
    "scan-output-is-map": (with_(SCAN, replace={f"{O}/scan.nc": f"{I}/good.mrc"}), "--output"),
    "scan-write-map-same-as-output": (with_(SCAN, "--write-map", f"{O}/scan.nc"), "--write-map"),
    "scan-map-nan-cell": (with_(SCAN, replace=map_("nan_cell.mrc")), "nan_cell.mrc"),
    "scan-refine-water-only": (with_(SCAN, "--refine", replace=model("water.pdb")), "water.pdb"),
    # ---- maps-to-zarr
    "to-zarr-map-complex": (with_(TO_ZARR, replace=map_("complex.mrc")), "complex.mrc"),
    "to-zarr-map-nan-values": (with_(TO_ZARR, replace=map_("nan_values.mrc")), "nan_values.mrc"),
    "to-zarr-other-grid": (with_(TO_ZARR, f"{I}/other_grid.mrc"), "other_grid.mrc"),
    "to-zarr-map-missing": (with_(TO_ZARR, replace=map_("absent.mrc")), "absent.mrc"),
    "to-zarr-resolution-nan": (with_(TO_ZARR, "--resolution", "nan"), "--resolution"),
    "to-zarr-output-exists": (with_(TO_ZARR, replace={f"{O}/m.zarr": f"{I}/a_directory"}), "--overwrite"),
    "to-zarr-output-is-input": (with_(TO_ZARR, replace={f"{O}/m.zarr": f"{I}/good.mrc"}), "--output"),
    "to-zarr-output-dir-missing": (with_(TO_ZARR, replace={f"{O}/m.zarr": f"{O}/no/m.zarr"}), "--output"),
    # ---- export
    "export-store-missing": (with_(EXPORT, replace={f"{I}/unfinished.zarr": f"{I}/absent.zarr"}), "absent.zarr"),
    "export-store-is-a-file": (with_(EXPORT, replace={f"{I}/unfinished.zarr": f"{I}/good.pdb"}), "good.pdb"),
    "export-store-not-a-store": (with_(EXPORT, replace={f"{I}/unfinished.zarr": f"{I}/a_directory"}),
                                 "a_directory"),
    "export-nothing-finished": (EXPORT, "unfinished.zarr"),
    "export-output-inside-store": (with_(EXPORT, replace={f"{O}/x.cif": f"{I}/unfinished.zarr/x.cif"}),
                                   "--output"),
    "export-output-bad-suffix": (with_(EXPORT, replace={f"{O}/x.cif": f"{O}/x.mrc"}), "--output"),
    "export-output-dir-missing": (with_(EXPORT, replace={f"{O}/x.cif": f"{O}/no/x.cif"}), "--output"),
    "export-model-mismatch": (with_(EXPORT, "--model", f"{I}/two_atoms.pdb"), "two_atoms.pdb"),
    # ---- info
    "info-model-nan-xyz": (["info", f"{I}/nan_xyz.pdb"], "nan_xyz.pdb"),
    "info-model-latin1": (["info", f"{I}/latin1.pdb"], "latin1.pdb"),
    "info-model-huge-xyz": (["info", f"{I}/huge_xyz.pdb"], "huge_xyz.pdb"),
    "info-map-complex": (["info", f"{I}/complex.mrc"], "complex.mrc"),
    "info-map-nan-origin": (["info", f"{I}/nan_origin.mrc"], "nan_origin.mrc"),
    "info-map-empty": (["info", f"{I}/empty.mrc"], "empty.mrc"),
    "info-missing": (["info", f"{I}/absent.pdb"], "absent.pdb"),
    "info-json-dir-missing": (["info", f"{I}/good.pdb", "--json", f"{O}/no/i.json"], "--json"),
    "info-json-is-input": (["info", f"{I}/good.pdb", "--json", f"{I}/good.mrc"], "--json"),
    # ---- other writers
    "convert-output-is-input": (["convert", f"{I}/good.pdb", "-o", f"{I}/good.pdb"], "--output"),
    "convert-old-positional-is-input": (["convert", f"{I}/good.pdb", f"{I}/good.pdb"], "--output"),
    "convert-no-output": (["convert", f"{I}/good.pdb"], "--output"),
    "box-output-is-map": (["box", f"{I}/good.pdb", f"{I}/good.mrc", "-o", f"{I}/good.mrc"], "--output"),
    "box-margin-nan": (["box", f"{I}/good.pdb", f"{I}/good.mrc", "-o", f"{O}/b.mrc", "--margin", "nan"],
                       "--margin"),
    "perturb-rmsd-nan": (["perturb", f"{I}/good.pdb", "--rmsd", "nan", "-o", f"{O}/p.pdb"], "--rmsd"),
    "simulate-resolution-huge": (["simulate-map", f"{I}/good.pdb", "--resolution", "1e6", "-o",
                                  f"{O}/s.mrc"], "--resolution"),
    "demo-frames-zero": (["demo", "-o", f"{O}/demo", "--frames", "0"], "--frames"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input(name, inputs, tmp_path, capsys):
    argv, culprit = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    before = _checksums(inputs)
    status = main([a.replace(I, str(inputs)).replace(O, str(out)) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2, f"exit {status}, stderr {captured.err!r}"
    assert len(lines) == 1, f"expected one line, got {captured.err!r}"
    assert lines[0].startswith("varref: error: "), lines[0]
    assert culprit in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert list(out.iterdir()) == [], "output left behind"
    assert _checksums(inputs) == before, "an input was modified"


def test_corpus_is_large_enough():
    commands = {argv[0] for argv, _ in CASES.values()}
    assert len(CASES) >= 60
    assert {"refine", "validate", "ensemble", "series", "maps-to-zarr", "export", "pixel-scan",
            "info"} <= commands


# ---------------------------------------------------------------- what must still work


def test_overwrite_replaces_an_existing_output(inputs, tmp_path, capsys):
    target = tmp_path / "model.cif"
    target.write_text("old")
    assert main(["convert", str(inputs / "good.pdb"), "-o", str(target)]) == 2
    assert target.read_text() == "old"
    assert main(["convert", str(inputs / "good.pdb"), "-o", str(target), "--overwrite"]) == 0
    assert target.read_text() != "old"
    capsys.readouterr()


def test_deprecated_spellings_still_parse(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["ensemble", "m.pdb", "x.mrc", "--resolution", "3", "--n-models", "4",
                              "--perturb-rmsd", "1", "-o", "e.zarr"])
    assert args.members == 4
    args = parser.parse_args(["series", "m.pdb", "s.zarr", "--resolution", "3", "--models-per-map",
                              "3", "-o", "o.zarr"])
    assert args.members == 3
    args = parser.parse_args(["demo", "--output-dir", "d"])
    assert args.output == "d"
    args = parser.parse_args(["convert", "m.pdb", "m.cif"])
    assert args.old_output == "m.cif"


def test_verbose_accepted_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["-v", "info", "a.pdb"]).verbose
    assert parser.parse_args(["info", "a.pdb", "-v"]).verbose
    assert not parser.parse_args(["info", "a.pdb"]).verbose


def test_every_default_is_shown_in_help():
    import argparse

    from varref.cli import HelpFormatter

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        assert sub.formatter_class is HelpFormatter, name
        formatter = sub._get_formatter()
        for action in sub._actions:
            if (action.option_strings and action.help != argparse.SUPPRESS
                    and action.default not in (None, False, [], argparse.SUPPRESS)):
                assert "default" in formatter._get_help_string(action), (name, action.dest)
    text = subparsers.choices["ensemble"].format_help()
    assert "(default 10)" in text and "(default: 10)" not in text  # batch size, stated once
    assert "(default: chained)" in subparsers.choices["series"].format_help()


def test_progress_prints_at_most_ten_lines_to_a_log(capsys, monkeypatch):
    from varref.ensemble.progress import Progress

    monkeypatch.setattr(Progress, "DELAY", 0.0)
    with Progress(1000, "members") as bar:  # capsys: stderr is not a terminal
        for _ in range(1000):
            bar.advance()
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 10
    assert lines[-1].startswith("members [") and "1000/1000" in lines[-1]


# ---------------------------------------------------------------- subprocess: pipes and Ctrl-C


def _varref(*argv: str) -> list[str]:
    return [sys.executable, "-c", "from varref.cli import entry_point; entry_point()", *argv]


def test_closed_stdout_pipe_ends_quietly(inputs):
    # enough output that the writes outlast the reader
    files = [str(inputs / "good.pdb")] * 400
    process = subprocess.Popen(_varref("info", *files), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    err = process.stderr.read().decode()
    status = process.wait(timeout=120)
    assert first.strip().endswith(b"good.pdb")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert status in (0, 141)


def test_console_script_exits_with_its_status_after_the_exit_steps(inputs, tmp_path):
    """entry_point ends with os._exit (no interpreter teardown): the status is kept, buffered
    output is flushed, exit handlers run and a non-daemon thread is finished first."""
    code = ("import atexit, sys, threading, time\n"
            "atexit.register(lambda: print('handler ran'))\n"
            "threading.Thread(target=lambda: (time.sleep(2.0), print('thread done'))).start()\n"
            "from varref.cli import entry_point\n"
            "sys.argv = ['varref'] + sys.argv[1:]\n"
            "entry_point()\n")
    good = subprocess.run([sys.executable, "-c", code, "info", str(inputs / "good.pdb")],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    assert any(line.endswith("good.pdb") for line in lines)
    assert "thread done" in lines and lines[-1] == "handler ran"
    bad = subprocess.run([sys.executable, "-c", code, "info", str(tmp_path / "missing.pdb")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("varref: error:")
    assert bad.stdout.splitlines()[-1] == "handler ran"


def test_ctrl_c_prints_one_line_and_exits_130(inputs, tmp_path):
    store = tmp_path / "e.zarr"
    process = subprocess.Popen(
        _varref("ensemble", str(inputs / "good.pdb"), str(inputs / "good.mrc"), "--resolution", "3",
                "--members", "400", "--perturb-rmsd", "0.5", "-o", str(store), "--workers", "1",
                "--batch-size", "1", "--weight", "20"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any(line.startswith("dask:") for line in lines) and time.monotonic() < deadline:
        assert process.poll() is None, "".join(lines)
        time.sleep(0.2)
    # members are being refined once the first progress line is out (a tenth of 400 done):
    # interrupted then, the run is far from its end however fast the machine
    while not any(line.startswith("ensemble [") for line in lines) and time.monotonic() < deadline:
        assert process.poll() is None, "".join(lines)
        time.sleep(0.1)
    seen = len(lines)
    # a terminal's Ctrl-C reaches the whole process group, Dask's worker processes included
    os.killpg(process.pid, signal.SIGINT)
    status = process.wait(timeout=120)
    reader.join(timeout=10)
    # a progress line that was on its way before the interrupt is not a reply to it
    after = [line.rstrip("\n") for line in lines[seen:]
             if line.strip() and not line.startswith("ensemble [")]
    assert status == 130, "".join(lines)
    assert after == ["varref: interrupted"], after
    assert not any("Traceback" in line for line in lines)
    if store.exists():  # whatever finished is kept, and the store can be resumed
        from varref.ensemble.results import ResultStore

        ResultStore.open(store)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"


def test_json_to_stdout_keeps_stdout_pure_json(inputs, capsys):
    import json

    assert main(["restraints", str(inputs / "good.pdb"), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["atoms"] == 40  # the text report went to stderr
    assert "bonds" in captured.err
    assert main(["info", str(inputs / "good.pdb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["kind"] == "model"


def test_plot_prefix_convention(tmp_path):
    from varref.atomic import prefixed_path

    assert prefixed_path(tmp_path / "run", "cc.png") == tmp_path / "run_cc.png"
    assert prefixed_path(tmp_path, "cc.png") == tmp_path / "cc.png"  # an existing directory
    assert prefixed_path(f"{tmp_path}/new/", "cc.png") == tmp_path / "new" / "cc.png"
    assert prefixed_path(tmp_path / "run.png", "cc.png") == tmp_path / "run_cc.png"


def test_store_output_may_not_contain_an_input(tmp_path):
    from varref.atomic import check_output_path
    from varref.errors import InputError

    (tmp_path / "maps").mkdir()
    frame = tmp_path / "maps" / "f.mrc"
    frame.write_bytes(b"x")
    with pytest.raises(InputError, match="overlaps the input"):
        check_output_path(tmp_path / "maps", [frame], "--output", store=True)
    assert check_output_path(tmp_path / "new.zarr", [frame], "--output", store=True) == tmp_path / "new.zarr"
