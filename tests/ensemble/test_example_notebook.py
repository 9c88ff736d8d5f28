"""The example notebook's code runs against a results store (so it cannot silently rot)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from varref.ensemble.results import create_store, write_member
from varref.example_data import example_helix

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "analyse_results.ipynb"


def test_notebook_cells_run_on_a_series_store(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    model = example_helix(12)
    store = tmp_path / "series.zarr"
    create_store(store, model, 3, 2, ["a.mrc", "b.mrc", "c.mrc"],
                 {"kind": "series", "reference_frame": 1, "model": model.source})
    rng = np.random.default_rng(0)
    for frame in range(3):
        for member in range(2):
            xyz = model.xyz + rng.normal(scale=0.1, size=model.xyz.shape) + frame
            write_member(store, frame, member, xyz, model.xyz, {"cc_mask": 0.9 + 0.01 * member,
                                                                "bond_rmsd": 0.01, "angle_rmsd": 1.0})
    monkeypatch.setenv("VARREF_RESULTS", str(store))
    namespace: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)  # noqa: S102 - our own example
    assert namespace["finished"].sum() == 6
    assert list(namespace["best_member"].values) == [1, 1, 1]
    assert namespace["per_residue"].shape == (3, 12)
    # frame k moved by k Å along each axis: displacement from frame 1 is sqrt(3)·|k−1|
    np.testing.assert_allclose(namespace["per_residue"].values.mean(axis=1),
                               np.sqrt(3) * np.array([1.0, 0.0, 1.0]), atol=0.2)
