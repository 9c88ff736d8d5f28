"""Fixtures for the validation tests: shared models read once, the Top8000 grids."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOP8000 = SHARED_DATA / "validation" / "top8000"

MODEL_FILES = {
    "1crn": "models/1crn.pdb",
    "1ubq": "models/1ubq.pdb",
    "6out": "models/6out.pdb",
    "3j6b_9": "maps/emd2566_ribosome_chain9/3J6B_9.pdb",
    "trpv1_tm": "maps/emd5778_trpv1_tm/transmem.pdb.renum.pdb",
}


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """The shared Top8000 grids (the test is skipped without them)."""
    if not (TOP8000 / "Top8000_ramachandran_pct_contour_grids").is_dir():
        pytest.skip("shared Top8000 reference data not available")
    return TOP8000


@pytest.fixture(scope="session")
def read_shared_model():
    """``read_shared_model("1ubq")`` -> Model, read once per session (skip if absent)."""
    from varref.model import read_model

    cache = {}

    def read(name: str):
        if name not in cache:
            path = SHARED_DATA / MODEL_FILES[name]
            if not path.exists():
                pytest.skip(f"shared data not available: {MODEL_FILES[name]}")
            cache[name] = read_model(path)
        return cache[name]

    return read


@pytest.fixture(scope="session")
def rama_tables(reference_data):
    from varref.validation.ramachandran import load_ramachandran_tables

    return load_ramachandran_tables(reference_data)


@pytest.fixture(scope="session")
def rotamer_tables(reference_data):
    from varref.validation.rotamers import load_rotamer_tables

    return load_rotamer_tables(reference_data)
