"""`varref simulate-map`, `varref perturb`, `varref refine` from the command line."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

from varref.cli import main
from varref.model import read_model


def test_simulate_perturb_refine_round_trip(tmp_path, shared, capsys):
    truth = shared("models/1crn.pdb")
    density = tmp_path / "sim.mrc"
    start = tmp_path / "start.pdb"
    refined = tmp_path / "refined.cif"
    metrics = tmp_path / "metrics.json"
    assert main(["simulate-map", str(truth), "--resolution", "3", "-o", str(density), "--noise", "20"]) == 0
    assert main(["perturb", str(truth), "--rmsd", "0.8", "--seed", "4", "-o", str(start)]) == 0
    top8000 = shared("validation/top8000")
    assert main(["refine", str(start), str(density), "--resolution", "3", "-o", str(refined),
                 "--json", str(metrics), "--macro-cycles", "3", "--reference-data", str(top8000)]) == 0
    out = capsys.readouterr().out
    assert "cc_mask" in out and f"wrote {refined}" in out
    report = json.loads(metrics.read_text())
    for key in ("weight", "macro_cycles", "runtime_s", "n_atoms"):
        assert key in report
    for key in ("cc_mask", "cc_box", "bond_rmsd", "angle_rmsd"):
        assert key in report["before"] and key in report["after"]
    assert report["after"]["cc_mask"] > report["before"]["cc_mask"]
    assert [c["cycle"] for c in report["cycles"]] == [1, 2, 3, "adp", "final-cc"]
    reference, before, after = (read_model(p).xyz for p in (truth, start, refined))
    assert np.sqrt(np.mean(np.sum((after - reference) ** 2, 1))) < 0.6 * np.sqrt(
        np.mean(np.sum((before - reference) ** 2, 1)))
    # complete outputs: the map's box as P1 cell, software and refinement records, a log and
    # the parameter set beside the model, a before/after table
    import gemmi

    with mrcfile.open(density) as mrc:
        box = [float(mrc.header.cella[axis]) for axis in "xyz"]
    block = gemmi.cif.read(str(refined))[0]
    assert [float(block.find_value(f"_cell.length_{a}")) for a in "abc"] == pytest.approx(box, abs=1e-3)
    assert "varref" in list(block.find_values("_software.name"))
    assert float(block.find_value("_refine.ls_d_res_high")) == 3.0
    assert block.find_value("_em_3d_fitting.method").strip("'") == "real-space refinement"
    log = (tmp_path / "refined.log").read_text()
    assert "cycle 3/3" in log and "CC_mask" in log
    params = json.loads((tmp_path / "refined.params.json").read_text())
    assert params["options"]["macro_cycles"] == 3 and params["options"]["ramachandran"] is True
    assert params["resolution"] == 3.0 and params["model"] == str(start)
    metrics_rows = {row["metric"]: row for row in report["summary"]}
    # the table quotes the refinement's own correlations of start and result (as the log)
    for metric, key in (("CC_mask", "cc_mask"), ("CC_box", "cc_box")):
        assert metrics_rows[metric]["before"] == report["before"][key]
        assert metrics_rows[metric]["after"] == report["after"][key]
    assert "Ramachandran outliers" in metrics_rows and "Clashscore" in metrics_rows
    assert "Ramachandran favoured" in out


def test_refine_checks_outputs_before_working(tmp_path, shared, capsys):
    """A missing output directory or an output equal to an input: one line, exit 2, nothing
    computed or written, the input untouched."""
    model = shared("models/1crn.pdb")
    before = model.read_bytes()
    status = main(["refine", str(model), str(tmp_path / "missing.mrc"), "--resolution", "3",
                   "-o", str(tmp_path / "no" / "such" / "out.cif")])
    err = capsys.readouterr().err
    assert status == 2 and "--output" in err and "does not exist" in err
    copy = tmp_path / "model.pdb"
    copy.write_bytes(before)
    status = main(["refine", str(copy), str(tmp_path / "missing.mrc"), "--resolution", "3", "-o", str(copy)])
    err = capsys.readouterr().err
    assert status == 2 and "also an input" in err
    assert copy.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pdb"]


def test_refine_rejects_bad_map_without_writing(tmp_path, shared, capsys):
    with mrcfile.new(str(tmp_path / "nan.mrc")) as mrc:
        data = np.zeros((20, 20, 20), np.float32)
        data[0, 0, 0] = np.nan
        mrc.set_data(data)
    output = tmp_path / "out.cif"
    status = main(["refine", str(shared("models/1crn.pdb")), str(tmp_path / "nan.mrc"),
                   "--resolution", "3", "-o", str(output), "--json", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert status == 2 and "nan.mrc" in err and len(err.strip().splitlines()) == 1
    assert not output.exists() and not (tmp_path / "m.json").exists()


def test_refine_rejects_nonpositive_resolution(tmp_path, shared, capsys):
    status = main(["refine", str(shared("models/1crn.pdb")), str(tmp_path / "x.mrc"), "--resolution", "0"])
    assert status == 2 and "--resolution" in capsys.readouterr().err


def test_restraint_switches_work_from_the_command_line(tmp_path, shared):
    """Each restraint switch reaches the pipeline: the refinement log names exactly the terms
    that were on."""
    import varref

    model = varref.example_helix(14)
    start, density = tmp_path / "start.pdb", tmp_path / "map.mrc"
    varref.write_model(model, start, xyz=varref.perturb(model, 0.4, seed=2))
    varref.write_map(varref.simulate_map(model, 4.5, snr=20.0, seed=1), density)

    def terms(*switches) -> set[str]:
        output = tmp_path / "out.cif"
        assert main(["refine", str(start), str(density), "--resolution", "4.5", "-o", str(output),
                     "--macro-cycles", "1", "--weight", "10", "--no-summary", "--no-fsc",
                     "--no-final-cc", "--no-adp", "--overwrite", *switches]) == 0
        line = next(l for l in (tmp_path / "out.log").read_text().splitlines() if l.startswith("terms:"))
        return set(line.removeprefix("terms:").replace(",", " ").split())

    # a poly-Ala helix: no chi angles (no rotamer term) and one chain (no NCS)
    assert terms() == {"geometry", "ramachandran", "cbeta", "secondary_structure"}
    assert terms("--no-ramachandran", "--no-cbeta", "--no-rotamer", "--no-secondary-structure") \
        == {"geometry"}
    assert terms("--reference-model", "start", "--no-secondary-structure") \
        == {"geometry", "ramachandran", "cbeta", "reference"}
    assert terms("--reference-model", str(start)) >= {"reference"}
