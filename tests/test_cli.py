"""The command line: sub-commands, and every kind of bad input → one line, exit 2, no output."""

from __future__ import annotations

import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from varref.cli import build_parser, main
from varref.commands import COMMANDS


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_clean_failure(status, err, names, output):
    assert status == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith("varref: error: ")
    assert names in lines[0]
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}*")), "temporary file left behind"


def test_help_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-m", "varref.cli", "--help"], capture_output=True,
                            text=True, check=True)
    for command in COMMANDS:
        assert command.NAME in result.stdout
    for command in COMMANDS:
        sub = subprocess.run([sys.executable, "-m", "varref.cli", command.NAME, "--help"],
                             capture_output=True, text=True)
        assert sub.returncode == 0 and "usage: varref " + command.NAME in sub.stdout


def test_parser_requires_a_command(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([])
    assert stop.value.code == 2


# ---------------------------------------------------------------- bad-input fixtures


def write_map(path, data, voxel=1.0, origin=(0.0, 0.0, 0.0)):
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = voxel
        mrc.header.origin = origin
    return path


@pytest.fixture
def crambin(shared):
    return shared("models/1crn.pdb")


@pytest.fixture
def map_over_crambin(tmp_path, crambin):
    from varref.model import read_model

    xyz = read_model(crambin).xyz
    low = np.floor(xyz.min(0)) - 4
    shape = np.ceil(xyz.max(0) - low + 5).astype(int)
    data = np.random.default_rng(0).normal(size=tuple(shape[::-1]))
    return write_map(tmp_path / "good.mrc", data, origin=tuple(low))


def test_box_writes_a_map(capsys, tmp_path, crambin, map_over_crambin):
    output = tmp_path / "boxed.mrc"
    status, out, _ = run_cli(capsys, "box", crambin, map_over_crambin, "--output", output, "--normalise")
    assert status == 0 and output.exists() and "100.0% of 327 atoms" in out


def test_missing_model_file(capsys, tmp_path, map_over_crambin):
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", tmp_path / "nope.pdb", map_over_crambin, "-o", output)
    assert_clean_failure(status, err, "nope.pdb: model file not found", output)


def test_empty_model_file(capsys, tmp_path, map_over_crambin):
    empty = tmp_path / "empty.pdb"
    empty.write_text("")
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", empty, map_over_crambin, "-o", output)
    assert_clean_failure(status, err, "empty.pdb: model file is empty", output)


def test_truncated_pdb(capsys, tmp_path, crambin, map_over_crambin):
    text = crambin.read_text()
    cut = tmp_path / "cut.pdb"
    cut.write_text(text[: text.index("ATOM     50") + 40])  # ends inside an ATOM record
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", cut, map_over_crambin, "-o", output)
    assert_clean_failure(status, err, "cut.pdb:", output)
    assert "truncated" in err or "too short" in err


def test_truncated_mmcif(capsys, tmp_path, shared, map_over_crambin):
    text = shared("models/1crn.cif").read_text()
    cut = tmp_path / "cut.cif"
    start = text.index("_atom_site.")
    cut.write_text(text[: start + 5000])  # stops in the middle of the atom_site loop
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", cut, map_over_crambin, "-o", output)
    assert_clean_failure(status, err, "cut.cif:", output)


def test_map_with_nan(capsys, tmp_path, crambin):
    data = np.zeros((30, 30, 30))
    data[3, 4, 5] = np.nan
    data[6, 7, 8] = np.inf
    bad = write_map(tmp_path / "nan.mrc", data)
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", crambin, bad, "-o", output)
    assert_clean_failure(status, err, "nan.mrc: map contains 2 NaN or infinite value(s)", output)


def test_map_of_zero_size(capsys, tmp_path, crambin):
    good = write_map(tmp_path / "small.mrc", np.ones((2, 2, 2)))
    raw = bytearray(good.read_bytes())
    raw[0:12] = np.array([0, 0, 0], dtype="<i4").tobytes()  # NX = NY = NZ = 0
    bad = tmp_path / "zero.mrc"
    bad.write_bytes(bytes(raw[:1024]))
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", crambin, bad, "-o", output)
    assert_clean_failure(status, err, "zero.mrc:", output)


def test_map_header_disagrees_with_data(capsys, tmp_path, crambin):
    good = write_map(tmp_path / "whole.mrc", np.ones((10, 10, 10)))
    bad = tmp_path / "short.mrc"
    bad.write_bytes(good.read_bytes()[:-400])  # 100 voxels missing from the data block
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", crambin, bad, "-o", output)
    assert_clean_failure(status, err, "short.mrc: cannot read MRC/CCP4 map", output)


def test_empty_map_file(capsys, tmp_path, crambin):
    bad = tmp_path / "empty.mrc"
    bad.write_bytes(b"")
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", crambin, bad, "-o", output)
    assert_clean_failure(status, err, "empty.mrc: map file is empty", output)


def test_model_entirely_outside_map(capsys, tmp_path, crambin):
    far = write_map(tmp_path / "far.mrc", np.ones((20, 20, 20)), origin=(500.0, 500.0, 500.0))
    output = tmp_path / "out.mrc"
    status, _, err = run_cli(capsys, "box", crambin, far, "-o", output)
    assert_clean_failure(status, err, "far.mrc: the model lies entirely outside the map", output)


def test_unknown_residue(capsys, tmp_path, crambin):
    text = "".join(
        line[:17] + "XYZ" + line[20:] if line.startswith("ATOM") and line[22:26].strip() == "10" else line
        for line in crambin.read_text().splitlines(keepends=True)
    )
    bad = tmp_path / "unknown.pdb"
    bad.write_text(text)
    output = tmp_path / "report.json"
    status, _, err = run_cli(capsys, "restraints", bad, "--json", output)
    assert_clean_failure(status, err, "no restraint dictionary for residue XYZ (chain A, residue 10)", output)


def test_bad_monlib_option(capsys, tmp_path, crambin):
    output = tmp_path / "report.json"
    status, _, err = run_cli(capsys, "restraints", crambin, "--monlib", tmp_path, "--json", output)
    assert_clean_failure(status, err, "not a CCP4 monomer library", output)


def test_restraints_report_json(capsys, tmp_path, crambin):
    import json

    output = tmp_path / "report.json"
    status, out, _ = run_cli(capsys, "restraints", crambin, "--json", output)
    assert status == 0
    report = json.loads(output.read_text())
    assert report["counts"]["bonds"] == 337
    assert 0.0 < report["deviations"]["bonds"]["rmsd"] < 0.05
    assert "bonds" in out


def test_convert_and_info(capsys, tmp_path, crambin):
    output = tmp_path / "crambin.cif"
    status, _, _ = run_cli(capsys, "convert", crambin, "-o", output)
    assert status == 0
    status, out, _ = run_cli(capsys, "info", output, "--json")
    assert status == 0 and '"atoms": 327' in out


def test_demo_runs_and_writes_its_outputs(capsys, tmp_path):
    import json

    status = main(["demo", "--output", str(tmp_path / "demo"), "--frames", "5", "--workers", "2"])
    out = capsys.readouterr().out
    assert status == 0
    for name in ("maps.zarr", "series.zarr", "series.cif", "series_cc.png", "series_displacement.png",
                 "truth.cif", "summary.json"):
        assert (tmp_path / "demo" / name).exists(), name
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    # the demo's claim: every frame's refined model is far closer to its truth than the motion
    assert max(summary["refined_rmsd_to_truth"]) < 0.25 * max(summary["motion_rmsd"])
    assert "refined r.m.s.d. to truth" in out


def test_cli_reference_documents_every_command_and_option():
    """docs/cli.md must name every sub-command and each of its options."""
    from pathlib import Path

    reference = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        assert f"`varref {name}" in reference, name
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in reference, f"{name} {option} missing from docs/cli.md"
