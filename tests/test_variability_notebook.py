"""examples/variability.ipynb runs with the public API only and shows what it claims: 3DVA
file names ordered, every frame recovered, the hinge motion found by the analysis, and a
ChimeraX script whose files exist."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "variability.ipynb"


def test_variability_notebook_runs_and_finds_the_hinge(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    imports = {line.split()[1].split(".")[0] for c in cells for line in "".join(c["source"]).splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"matplotlib", "numpy", "varref", "tempfile", "pathlib"}, imports
    for cell in cells:
        text = "".join(cell["source"])
        assert "varref.refinement" not in text and "varref.ensemble" not in text
    monkeypatch.chdir(EXAMPLES)
    before = set(EXAMPLES.iterdir())
    namespace: dict = {}
    from varref.ensemble.cluster import dask_client

    try:
        with dask_client(workers=2, quiet=True):
            for cell in cells:
                exec("".join(cell["source"]), namespace)  # noqa: S102 - our own example
        assert set(EXAMPLES.iterdir()) == before
        frames, truths, refined, rmsd = (namespace[k] for k in ("frames", "truths", "refined", "rmsd"))
        assert frames.labels == [f"J7_component_000_frame_{k:03d}.mrc" for k in range(7)]
        model = namespace["model"]
        assert min(rmsd(model.xyz, truths[0]), rmsd(model.xyz, truths[-1])) > 1.0  # real motion
        for k in range(len(truths)):
            assert rmsd(refined[k], truths[k]) < 0.4
        motion = namespace["motion"]
        assert float(motion["explained_variance_ratio"][0]) > 0.8
        assert abs(float(motion["frame_order_correlation"].sel(component="component_000", pc=1))) > 0.95
        hinge = np.flatnonzero(motion["hinge"].values)
        assert motion.attrs["n_domains"] >= 2 and len(hinge) > 0
        assert np.all(np.abs(hinge - (namespace["HINGE"] + 0.5)) <= 2.5)
        script = namespace["export"].script
        opened = [shlex.split(line)[1:] for line in script.read_text().splitlines()
                  if line.startswith("open ")]
        assert all(Path(p).exists() for p in [*opened[0][:-2], *opened[1]])
    finally:
        if "workdir" in namespace:
            shutil.rmtree(namespace["workdir"], ignore_errors=True)
