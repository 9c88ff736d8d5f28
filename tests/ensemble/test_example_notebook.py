"""The example notebook's code runs from examples/ against results stores (so it cannot rot),
groups residues by residue_index, and shows the spread of an ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest

from varref.ensemble.results import ResultStore
from varref.example_data import example_helix
from varref.model import Model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOK = EXAMPLES / "analyse_results.ipynb"
LABELS = ["A/10", "A/11", "A/52", "A/52A", "A/53", "A/54", "A1/1", "A1/2", "A1/3", "A1/4", "A1/5", "A1/6"]


def two_chain_model() -> Model:
    """Chain A residues 10, 11, 52, 52A, 53, 54 and chain A1 residues 1..6: labels made of
    chain + number merge A/11 with A1/1 and 52 with 52A, and sort A1/… between A/10 and A/11."""
    st = example_helix(12).structure.clone()
    chain_a, chain_a1 = st[0][0], gemmi.Chain("A1")
    for k in range(6, 12):
        chain_a1.add_residue(chain_a[k])
    for k in range(11, 5, -1):
        del chain_a[k]
    st[0].add_chain(chain_a1)
    numbers = [(10, " "), (11, " "), (52, " "), (52, "A"), (53, " "), (54, " "),
               (1, " "), (2, " "), (3, " "), (4, " "), (5, " "), (6, " ")]
    for residue, (number, icode) in zip([r for chain in st[0] for r in chain], numbers):
        residue.seqid = gemmi.SeqId(number, icode)
    st.setup_entities()
    return Model.from_structure(st, source="two_chains.pdb")


def outputs_in_examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.iterdir()
                  if p.suffix in (".zarr", ".png", ".cif", ".pdb", ".mrc", ".json"))


def run_notebook(monkeypatch, store: Path | None) -> dict:
    """Execute the code cells in order, as Jupyter would, with examples/ as working directory."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(EXAMPLES)
    if store is None:
        monkeypatch.delenv("VARREF_RESULTS", raising=False)
    else:
        monkeypatch.setenv("VARREF_RESULTS", str(store))
    before = outputs_in_examples()
    namespace: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)  # noqa: S102 - our own example
    assert outputs_in_examples() == before  # wrote no store, plot or model into examples/
    return namespace


def test_series_store_residues_by_index_labels_and_displacement(tmp_path, monkeypatch):
    model = two_chain_model()
    store = ResultStore.create(tmp_path / "series.zarr", model, 3, 2, ["a.mrc", "b.mrc", "c.mrc"],
                               {"kind": "series", "reference_frame": 1, "model": model.source})
    # best member (1): residue r of frame k moved by (k − 1)·0.1·(r + 1) Å along x; member 0
    # differs from it only in residue A1/1 (index 6), by 0.8 Å along y
    shift = 0.1 * (model.residue_index + 1.0)
    for frame in range(3):
        for member in range(2):
            xyz = model.xyz.copy()
            xyz[:, 0] += (frame - 1) * shift
            if member == 0:
                xyz[model.residue_index == 6, 1] += 0.8
            store.write_member(frame, member, xyz, model.xyz,
                               {"cc_mask": 0.9 + 0.01 * member, "bond_rmsd": 0.01, "angle_rmsd": 1.0})
    namespace = run_notebook(monkeypatch, tmp_path / "series.zarr")
    assert namespace["finished"].sum() == 6
    assert list(namespace["best_member"].values) == [1, 1, 1]
    per_residue = namespace["per_residue"]
    assert per_residue.shape == (3, 12)  # 10 with chain+number labels
    assert list(per_residue["residue_index"].values) == list(range(12))  # file order
    assert list(per_residue["residue_label"].values) == LABELS
    expected = 0.1 * np.arange(1, 13)
    np.testing.assert_allclose(per_residue.values, [expected, 0 * expected, expected], atol=1e-4)
    spread = namespace["spread"]
    assert spread.shape == (3, 12)
    for frame in range(3):
        rmsf = spread.isel(frame=frame).values
        assert spread["residue_label"].values[np.argmax(rmsf)] == "A1/1" and rmsf[6] > 0.3
        assert rmsf[1] < 0.1 * rmsf[6]  # A/11 is another residue
    assert namespace["model"].n_atoms == model.n_atoms


def test_ensemble_store_shows_the_spread_of_its_members(tmp_path, monkeypatch):
    model = example_helix(10)
    store = ResultStore.create(tmp_path / "ens.zarr", model, 1, 4, ["map.mrc"], {"kind": "ensemble"})
    rng = np.random.default_rng(1)
    scale = 0.05 + 0.05 * model.residue_index  # Å: spread grows along the helix
    for member in range(4):
        xyz = model.xyz + rng.normal(size=model.xyz.shape) * scale[:, None]
        store.write_member(0, member, xyz, model.xyz, {"cc_mask": 0.8, "bond_rmsd": 0.01, "angle_rmsd": 1.0})
    namespace = run_notebook(monkeypatch, tmp_path / "ens.zarr")
    assert namespace["per_residue"] is None  # one frame: no displacement between frames
    rmsf = namespace["spread"].isel(frame=0).values
    assert rmsf.shape == (10,) and rmsf.min() > 0.01
    assert rmsf[-3:].mean() > 3 * rmsf[:3].mean()


def test_runs_from_examples_without_a_store(monkeypatch):
    for demo in (EXAMPLES / "varref-demo" / "series.zarr", EXAMPLES.parent / "varref-demo" / "series.zarr"):
        if demo.exists():
            pytest.skip(f"{demo} exists: the notebook analyses it instead of building a demo")
    namespace = run_notebook(monkeypatch, None)
    dataset = namespace["ds"]
    assert dataset.attrs["synthetic"] is True and dataset.sizes["frame"] == 5
    per_residue, spread = namespace["per_residue"], namespace["spread"]
    assert per_residue.shape == (5, 30) and spread.shape == (5, 30)
    np.testing.assert_allclose(per_residue.isel(frame=2).values, 0.0)  # the reference frame
    # frame 0 is turned 10° about residue 16: the C-terminal half moves, the N-terminal half
    # only by the members' scatter
    assert per_residue.isel(frame=0).values[-5:].mean() > 3 * per_residue.isel(frame=0).values[:5].mean()
    assert (spread.values[:, -5:].mean(axis=1) > 2 * spread.values[:, :5].mean(axis=1)).all()
