"""ChimeraX-ready output of a series (varref.ensemble.chimerax, `varref chimerax`)."""

from __future__ import annotations

import shlex
from dataclasses import replace

import gemmi
import numpy as np
import pytest

from tests.ensemble.hinge_store import REFERENCE, hinge_store
from varref.cli import main
from varref.ensemble.chimerax import equal_volume_level, model_volume
from varref.maps import read_map, write_map


@pytest.fixture(scope="module")
def hinge_files(tmp_path_factory):
    from varref.simulate import grid_around, model_density

    folder = tmp_path_factory.mktemp("chimerax")
    store, model, frames = hinge_store(folder / "series.zarr")
    grid = grid_around(np.concatenate(frames), 1.5, 4.0)
    maps = []
    for k, xyz in enumerate(frames):  # scaled differently per frame: equal volume, not equal level
        path = folder / f"frame_{k}.mrc"
        write_map(replace(grid, data=(1.0 + 0.5 * k) * model_density(model, xyz, grid, 4.0)), path)
        maps.append(path)
    return folder, model, frames, maps


def script_commands(path):
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_chimerax_models_b_column_and_script(hinge_files, capsys):
    folder, model, frames, maps = hinge_files
    out = folder / "cx"
    assert main(["chimerax", str(folder / "series.zarr"), *map(str, maps), "-o", str(out)]) == 0
    assert "open with: chimerax" in capsys.readouterr().out
    st = gemmi.read_structure(str(out / "series.cif"))
    assert len(st) == len(frames)
    for k in (0, 3, len(frames) - 1):
        atoms = [a for ch in st[k] for r in ch for a in r]
        b = np.array([a.b_iso for a in atoms])
        xyz = np.array([a.pos.tolist() for a in atoms])
        np.testing.assert_allclose(xyz, frames[k], atol=2e-3)  # in the maps' frame
        expected = np.linalg.norm(frames[k].astype(np.float32) - frames[REFERENCE].astype(np.float32), axis=1)
        np.testing.assert_allclose(b, expected, atol=0.01)
    commands = script_commands(out / "series.cxc")
    opened = [shlex.split(c)[1:] for c in commands if c.startswith("open ")]
    assert opened[0][-2:] == ["vseries", "true"] and len(opened[0]) == len(frames) + 2
    referenced = [*opened[0][:-2], *opened[1]]
    assert all((folder / p).exists() for p in referenced)  # absolute paths that exist
    assert [str(p) for p in maps] == opened[0][:-2]
    assert any(c.startswith("color bfactor #2") for c in commands)
    assert "vseries slider #1" in commands and "mseries slider #2" in commands
    # every map's level encloses the model's volume (equal-volume rule)
    levels = [float(c.split()[3]) for c in commands if c.startswith("volume #1.")]
    assert len(levels) == len(frames) and levels[-1] > 3 * levels[0]
    volume = model_volume(model)
    for path, level in zip(maps, levels):
        density = read_map(path)
        enclosed = np.count_nonzero(density.data >= np.float32(level)) * np.prod(density.voxel_size)
        assert abs(enclosed - volume) <= 1.5 * np.prod(density.voxel_size)


def test_chimerax_from_a_map_store_writes_mrc_and_refuses_to_overwrite(hinge_files, capsys):
    folder, _, frames, maps = hinge_files
    mapstore = folder / "maps.zarr"
    assert main(["maps-to-zarr", *map(str, maps), "-o", str(mapstore)]) == 0
    out = folder / "cx-store"
    args = ["chimerax", str(folder / "series.zarr"), str(mapstore), "-o", str(out),
            "--b-column", "spread", "--volume", "2000"]
    assert main(args) == 0
    written = sorted((out / "maps").glob("frame_*.mrc"))
    assert len(written) == len(frames)
    opened = shlex.split(script_commands(out / "series.cxc")[0])[1:-2]
    assert opened == [str((out / "maps" / p.name).resolve()) for p in written]
    st = gemmi.read_structure(str(out / "series.cif"))
    assert max(a.b_iso for a in st[0][0][0]) == 0.0  # one member per frame: no spread
    capsys.readouterr()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert not list(folder.glob(".cx-store*"))  # no temporary directory left


def test_chimerax_refuses_a_different_number_of_maps(hinge_files, capsys):
    folder, _, _, maps = hinge_files
    out = folder / "cx-bad"
    assert main(["chimerax", str(folder / "series.zarr"), *map(str, maps[:3]), "-o", str(out)]) == 2
    assert "3 maps given for a store of 11 frames" in capsys.readouterr().err
    assert not out.exists()


def test_equal_volume_level_counts_voxels():
    data = np.random.default_rng(0).normal(size=(20, 20, 20))
    level = equal_volume_level(data, 0.5, 100.0)  # 200 voxels of 0.5 Å³
    assert np.count_nonzero(data >= level) == 200
    assert equal_volume_level(data * 3 + 1, 0.5, 100.0) == pytest.approx(3 * level + 1)
