"""Map-model correlations (CC_mask, CC_box, CC_volume, CC_peaks, per residue / chain)."""

from pathlib import Path

import numpy as np
import pytest

from varref.engine.correlation import (
    MASK_RADII,
    SHRINK_RADIUS,
    SOLVENT_RADIUS,
    atom_mask,
    cc_box,
    cc_mask,
    cc_peaks,
    cc_volume,
    map_model_cc,
    mask_radii,
    molecular_mask,
    pearson_cc,
    per_chain_cc,
    per_group_cc,
    per_residue_cc,
)
from varref.engine.model_map import model_map, resolution_blur, scattering_coefficients

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
RESOLUTION = 3.0


@pytest.fixture(scope="module")
def crambin():
    """1crn atoms, a grid around them and the model map at 3 Å (skip without ../shared)."""
    path = SHARED / "data" / "models" / "1crn.pdb"
    if not path.exists():
        pytest.skip("shared data not available: data/models/1crn.pdb")
    gemmi = pytest.importorskip("gemmi")
    structure = gemmi.read_structure(str(path))
    structure.remove_hydrogens()
    xyz, elements, b_iso, residue, chain = [], [], [], [], []
    for chain_obj in structure[0]:
        for residue_number, residue_obj in enumerate(chain_obj):
            for atom in residue_obj:
                xyz.append(atom.pos.tolist())
                elements.append(atom.element.name)
                b_iso.append(atom.b_iso)
                residue.append(residue_number)
                chain.append(chain_obj.name)
    xyz = np.array(xyz)
    voxel = np.array([1.0, 0.9, 1.1])
    origin = xyz.min(axis=0) - 6.0
    shape = tuple(np.ceil((xyz.max(axis=0) + 6.0 - origin) / voxel).astype(int)[::-1])
    coeff_a, coeff_b = scattering_coefficients(elements)
    b_iso = np.array(b_iso) + 20.0

    def density(positions):
        return model_map(positions, shape, origin, voxel, coeff_a, coeff_b, b_iso,
                         blur=resolution_blur(RESOLUTION))

    return dict(xyz=xyz, elements=elements, residue=np.array(residue),
                chain=np.array(chain), origin=origin, voxel=voxel, shape=shape,
                density=density, target=density(xyz),
                mask=molecular_mask(xyz, mask_radii(elements), shape, origin, voxel))


def test_model_map_with_itself_has_cc_one(crambin):
    target = crambin["target"]
    result = map_model_cc(target, target, crambin["mask"])
    for name in ("cc_mask", "cc_box", "cc_volume", "cc_peaks"):
        assert result[name] == pytest.approx(1.0, abs=1e-9), name


def test_shifting_the_model_lowers_the_correlations(crambin):
    target, mask = crambin["target"], crambin["mask"]
    previous = 1.0
    for shift in (0.5, 1.0, 2.0):
        moved = crambin["density"](crambin["xyz"] + np.array([shift, 0.0, 0.0]))
        result = map_model_cc(moved, target, mask)
        assert result["cc_mask"] < previous
        previous = result["cc_mask"]
        for value in result.values():
            assert -1.0 <= value < 1.0
    # a 2 Å shift at 3 Å resolution leaves little agreement inside the mask
    assert previous < 0.6


def test_cc_box_volume_peaks_are_sane(crambin):
    target, mask = crambin["target"], crambin["mask"]
    rng = np.random.default_rng(30)
    noisy = target + rng.normal(0, 0.3 * target.std(), target.shape).astype(np.float32)
    n_points = int(mask.sum())
    assert cc_mask(target, noisy, mask) == pytest.approx(
        pearson_cc(target[mask], noisy[mask]))
    assert cc_box(target, noisy) == pytest.approx(pearson_cc(target, noisy))
    # CC_volume uses the N highest model-map points (and any equal to the N+1-th)
    top = np.argsort(target.ravel())[-n_points - 1:]
    assert cc_volume(target, noisy, n_points) == pytest.approx(
        pearson_cc(target.ravel()[top], noisy.ravel()[top]))
    # CC_peaks uses the union of both maps' top-N points
    top_noisy = np.argsort(noisy.ravel())[-n_points - 1:]
    union = np.union1d(top, top_noisy)
    assert cc_peaks(target, noisy, n_points) == pytest.approx(
        pearson_cc(target.ravel()[union], noisy.ravel()[union]))
    # noise on the empty solvent region lowers CC_box more than CC_mask
    assert 0.5 < cc_box(target, noisy) < cc_mask(target, noisy, mask) < 1.0
    # an unrelated map has CC ~ 0
    assert abs(cc_box(target, rng.normal(size=target.shape))) < 0.05


@pytest.mark.parametrize("shape, n_points, background", [
    ((64, 70, 80), 30000, 0.0),     # ~8 % of the box: the threshold guessed from a sample
    ((64, 70, 80), 30000, None),    # no tied background
    ((64, 70, 80), 200000, 0.0),    # more points than the non-zero region
    ((64, 70, 80), 179200, "strided"),  # a sample that misleads: every point
    ((3, 4, 5), 7, None),           # smaller than the sample
    ((40, 40, 40), 64000, None),    # the whole box
    ((40, 40, 40), 1, None),
])
def test_top_points_are_the_largest_values(shape, n_points, background):
    """The top-N selection behind CC_volume and CC_peaks, on both of its routes (a sampled
    threshold, and the whole box when fewer than N + 1 points pass it), is cctbx's: every
    point at or above the (N+1)-th highest value, ties included (a zero background here; a
    processed map can hold many equal values)."""
    from varref.engine.correlation import _top_indices

    rng = np.random.default_rng(n_points)
    data = rng.normal(size=shape).astype(np.float32)
    if background == "strided":  # large exactly where the strided sample looks
        data.ravel()[::data.size // 65536] += 10.0
    elif background is not None:  # a model map: zero beyond the atoms
        data[rng.random(shape) < 0.6] = background
    flat = data.ravel()
    # cctbx's get_selection_above_cutoff(m, n): m >= (m sorted, highest first)[n]
    cutoff = np.sort(flat)[::-1][n_points] if n_points < flat.size else -np.inf
    np.testing.assert_array_equal(_top_indices(data, n_points), np.flatnonzero(flat >= cutoff))


def test_all_correlations_in_one_call_equal_the_single_ones(crambin):
    """map_model_cc selects the model map's top points once for CC_volume and CC_peaks."""
    target, mask = crambin["target"], crambin["mask"]
    moved = crambin["density"](crambin["xyz"] + np.array([0.7, -0.3, 0.2]))
    n_points = int(mask.sum())
    together = map_model_cc(moved, target, mask)
    assert together == {"cc_mask": cc_mask(moved, target, mask), "cc_box": cc_box(moved, target),
                        "cc_volume": cc_volume(moved, target, n_points),
                        "cc_peaks": cc_peaks(moved, target, n_points)}


def test_per_residue_cc_one_value_per_residue(crambin):
    xyz, residue = crambin["xyz"], crambin["residue"]
    radii = mask_radii(crambin["elements"]) + SOLVENT_RADIUS - SHRINK_RADIUS
    n_residues = residue.max() + 1
    args = (crambin["origin"], crambin["voxel"])
    perfect = per_residue_cc(crambin["target"], crambin["target"], *args, xyz, radii, residue)
    assert perfect.shape == (n_residues,)
    np.testing.assert_allclose(perfect, 1.0, atol=1e-9)
    # move residue 10 by 1.5 Å: its CC drops, distant residues are unaffected
    moved_xyz = xyz.copy()
    moved_xyz[residue == 10] += np.array([1.5, 0.0, 0.0])
    moved_map = crambin["density"](moved_xyz)
    cc = per_residue_cc(moved_map, crambin["target"], *args, xyz, radii, residue)
    assert cc.shape == (n_residues,) and np.all(np.isfinite(cc))
    assert cc[10] < 0.9
    assert cc[10] == cc.min()
    # each residue's CC equals the plain CC over the union of its atoms' spheres
    for r in (0, 10, n_residues - 1):
        sel = residue == r
        sphere = atom_mask(xyz[sel], radii[sel], crambin["shape"], *args)
        assert cc[r] == pytest.approx(cc_mask(moved_map, crambin["target"], sphere),
                                      abs=1e-9)


def test_per_chain_and_groups(crambin):
    xyz = crambin["xyz"]
    radii = 2.0
    args = (crambin["origin"], crambin["voxel"])
    chains, cc = per_chain_cc(crambin["target"], crambin["target"], *args, xyz, radii,
                              crambin["chain"])
    assert list(chains) == ["A"] and cc.shape == (1,)
    # labels keep the order of first appearance; unassigned atoms (-1) are ignored
    fake_chain = np.where(np.arange(len(xyz)) < 100, "Z", "B")
    labels, cc = per_chain_cc(crambin["target"], crambin["target"], *args, xyz, radii,
                              fake_chain)
    assert list(labels) == ["Z", "B"]
    groups = np.full(len(xyz), -1)
    groups[:5] = 1
    cc = per_group_cc(crambin["target"], crambin["target"], *args, xyz, radii, groups,
                      n_groups=3)
    assert np.isnan(cc[0]) and cc[1] == pytest.approx(1.0) and np.isnan(cc[2])


def test_molecular_mask_radius_of_an_isolated_atom():
    # For one atom the cctbx mask is the sphere r_vdW + solvent - shrink = r_vdW + 0.2, up
    # to the grid: the shrink step only sees solvent *grid points*, so the edge is ragged
    # by less than a voxel (outwards).
    voxel = np.full(3, 0.25)
    n = 40
    origin = np.full(3, -n * 0.25 / 2)
    centre = np.array([[0.05, 0.02, -0.07]])
    mask = molecular_mask(centre, mask_radii(["O"]), (n, n, n), origin, voxel)
    iz, iy, ix = np.nonzero(mask)
    points = origin + np.stack([ix, iy, iz], axis=1) * voxel
    distance = np.linalg.norm(points - centre, axis=1)
    expected_radius = MASK_RADII["O"] + SOLVENT_RADIUS - SHRINK_RADIUS
    assert distance.max() <= expected_radius + voxel[0]
    outside = ~mask
    iz, iy, ix = np.nonzero(outside)
    distance_out = np.linalg.norm(origin + np.stack([ix, iy, iz], axis=1) * voxel - centre,
                                  axis=1)
    assert distance_out.min() > expected_radius - 0.25  # no holes inside the sphere


def test_molecular_mask_fills_narrow_crevices():
    # Two atoms 4.6 Å apart: the probe (1.1 Å) spheres overlap in the middle, so the shrink
    # step cannot reach the mid-point, which is inside the mask though it is farther than
    # r_vdW + 0.2 from both atoms.
    voxel = np.full(3, 0.2)
    n = 50
    origin = np.full(3, -n * 0.2 / 2)
    atoms = np.array([[-2.3, 0.0, 0.0], [2.3, 0.0, 0.0]])
    radii = np.array([1.5, 1.5])
    mask = molecular_mask(atoms, radii, (n, n, n), origin, voxel)
    simple = atom_mask(atoms, radii + 0.2, (n, n, n), origin, voxel)
    middle = tuple(np.round((np.zeros(3) - origin) / voxel).astype(int)[::-1])
    assert mask[middle] and not simple[middle]
    assert mask.sum() > simple.sum()


def test_pearson_degenerate_cases():
    assert np.isnan(pearson_cc(np.ones(10), np.arange(10)))
    assert np.isnan(pearson_cc([1.0], [2.0]))
    with pytest.raises(ValueError):
        pearson_cc(np.ones(3), np.ones(4))


def test_pearson_cc_equals_numpys_and_is_nan_when_undefined():
    from varref.engine.correlation import pearson_cc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 10, 11)).astype(np.float32)
    y = 0.3 * x + rng.normal(size=x.shape) + 5.0
    assert pearson_cc(x, y) == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], rel=1e-12)
    assert np.isnan(pearson_cc(np.ones(5), np.arange(5.0)))
    assert np.isnan(pearson_cc(np.ones(1), np.ones(1)))


def test_pearson_reads_single_precision_as_double():
    # float32 maps are read without a float64 copy: the CC must be that of the copy,
    # and agree with numpy's (mixed precisions and integer input too)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 9, 11)).astype(np.float32)
    y = (0.6 * x + rng.normal(size=x.shape)).astype(np.float32)
    double = pearson_cc(x.astype(np.float64), y.astype(np.float64))
    assert pearson_cc(x, y) == double
    assert pearson_cc(x, y.astype(np.float64)) == double
    assert double == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], rel=1e-12)
    assert pearson_cc(np.arange(5), np.arange(5) ** 2) == pytest.approx(
        np.corrcoef(np.arange(5), np.arange(5) ** 2)[0, 1], rel=1e-12)
