"""Every code block of docs/api.md runs as written (so the API page cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_page_examples_run(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    from varref.ensemble.cluster import dask_client

    # one cluster for the page (each call would otherwise start its own, as documented)
    with dask_client(workers=2, quiet=True):
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    assert (tmp_path / "refined.cif").exists() and (tmp_path / "ens.zarr").exists()


def test_public_functions_have_examples():
    import varref

    for name in ("refine", "refine_ensemble", "refine_series", "pixel_scan", "validate",
                 "simulate_map", "perturb", "open_results", "precision"):
        doc = getattr(varref, name).__doc__
        assert doc and "Examples" in doc and ">>>" in doc, name
        assert f"varref.{name}" in DOC.read_text(), name
