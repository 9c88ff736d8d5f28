"""examples/refine_in_a_notebook.ipynb runs from examples/ with the public API only, and shows
what it claims: refinement moves the model to the truth, the ensemble spread is larger where
the density is weak, and the series recovers every frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "refine_in_a_notebook.ipynb"


def test_refine_notebook_runs_and_shows_the_science(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    imports = {line.split()[1].split(".")[0] for c in cells for line in "".join(c["source"]).splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"matplotlib", "numpy", "varref", "dataclasses"}, imports  # public API only
    for cell in cells:  # only `varref.<name>` at top level or varref.example_data is used
        text = "".join(cell["source"])
        assert "varref.refinement" not in text and "varref.ensemble" not in text
    monkeypatch.chdir(EXAMPLES)
    before = set(EXAMPLES.iterdir())
    namespace: dict = {}
    from varref.ensemble.cluster import dask_client

    with dask_client(workers=2, quiet=True):
        for cell in cells:
            exec("".join(cell["source"]), namespace)  # noqa: S102 - our own example
    assert set(EXAMPLES.iterdir()) == before  # in-memory results: no files written
    model, result, rmsd = namespace["model"], namespace["result"], namespace["rmsd"]
    assert rmsd(result.xyz, model.xyz) < 0.5 * rmsd(namespace["start"].xyz, model.xyz)
    spread = namespace["spread"]
    tail = np.arange(spread.sizes["residue"]) >= spread.sizes["residue"] - 8
    rmsf = spread["residue_rmsf"].values
    assert rmsf[tail].mean() > 1.5 * rmsf[~tail].mean()  # weak density, larger spread
    truths, refined = namespace["truths"], namespace["refined"]
    motion = [rmsd(model.xyz, truths[frame]) for frame in range(3)]
    assert min(motion[0], motion[2]) > 0.6  # the end frames really moved
    for frame in range(3):
        assert rmsd(refined[frame], truths[frame]) < 0.4  # every frame recovered
