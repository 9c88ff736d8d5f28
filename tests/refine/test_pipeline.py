"""One pipeline for one or many models: every option behaves the same for K = 1 and K > 1,
and an ensemble member equals `varref refine` from the same start with the same weight."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import varref
from varref.refinement.objective import Objective
from varref.refinement.options import RefineOptions
from varref.refinement.pipeline import refine_coordinates
from varref.refinement.terms import REGISTRY, RESTRAINT, TermSetup, build_restraint_terms
from varref.refinement.terms.base import Term
from varref.restraints import build_restraints


@pytest.fixture(scope="module")
def helix():
    model = varref.example_helix(14)
    restraints = build_restraints(model)
    density = varref.simulate_map(model, 3.0, snr=30.0, seed=2)
    return model, restraints, density


def test_batched_problems_get_the_same_result_as_single_runs(helix):
    """Rigid body, macro-cycles and the final CC stage with its per-member guard: K = 3 in one
    batch equals three K = 1 runs."""
    model, restraints, density = helix
    starts = np.stack([varref.perturb(model, 0.6, seed=s, restraints=restraints) for s in (1, 2, 3)])
    prepared = density.prepared(model.xyz, 8.0)
    options = RefineOptions(resolution=3.0, macro_cycles=2, weight=15.0, rigid_body=True, final_cc=True)
    together = refine_coordinates(model, prepared, restraints, starts, options)
    for k in range(3):
        alone = refine_coordinates(model, prepared, restraints, starts[k], options)
        np.testing.assert_allclose(together.xyz[k], alone.xyz[0], atol=1e-8)
        assert together.after[k]["cc_mask"] == pytest.approx(alone.after[0]["cc_mask"], abs=1e-9)
    # and the pipeline did something: every member fits the map better than its start
    assert all(a["cc_mask"] > b["cc_mask"] for a, b in zip(together.after, together.before))


def test_ensemble_member_equals_varref_refine(helix, tmp_path):
    """The same start (no perturbation), the same weight and options: the ensemble's member
    and `varref.refine` agree to float32 storage precision."""
    model, restraints, density = helix
    start = varref.perturb(model, 0.5, seed=9, restraints=restraints)
    moved = model.with_xyz(start)
    common = dict(weight=12.0, macro_cycles=2, rigid_body=True, final_cc=True, adp=True,
                  rotamer_fit=True)
    single = varref.refine(moved, density, 3.0, restraints=restraints, **common)
    from varref.ensemble.cluster import dask_client

    with dask_client(workers=1, quiet=True) as client:
        ensemble = varref.refine_ensemble(moved, density, 3.0, n_models=2, perturb_rmsd=0.0,
                                          client=client, store=tmp_path / "e.zarr",
                                          restraints=restraints, batch_size=2, **common)
    for member in range(2):
        member_xyz = ensemble["xyz"].isel(frame=0, member=member).values
        np.testing.assert_allclose(member_xyz, single.xyz, atol=2e-4)
    assert float(ensemble["cc_mask"].isel(frame=0, member=0)) == pytest.approx(single.after["cc_mask"], abs=1e-6)


def test_final_stage_guard_keeps_the_cycle_result_when_cc_cannot_improve(helix):
    """On the exact model in a noise-free map the final stage cannot raise CC_mask much; if it
    does not, the coordinates are the last macro-cycle's (the stage is not kept blindly)."""
    model, restraints, _ = helix
    density = varref.simulate_map(model, 3.0)
    prepared = density.prepared(model.xyz, 5.0)
    kept = refine_coordinates(model, prepared, restraints, model.xyz,
                              RefineOptions(resolution=3.0, macro_cycles=1, weight=10.0, final_cc=True),
                              record_cycles=True)
    plain = refine_coordinates(model, prepared, restraints, model.xyz,
                               RefineOptions(resolution=3.0, macro_cycles=1, weight=10.0, final_cc=False))
    if kept.cycles[0][-1]["cycle"] == "final-cc":
        assert kept.after[0]["cc_mask"] > plain.after[0]["cc_mask"]
    else:
        np.testing.assert_array_equal(kept.xyz, plain.xyz)


def test_final_stage_relaxes_a_strained_trial_instead_of_restarting(helix, monkeypatch):
    """When the full CC weight strains the angles past their limit, the halved-weight run
    starts from the strained trial (it keeps the map fit it gained and relaxes the geometry),
    and the kept result is inside the limit with a higher CC_mask than the macro-cycles'."""
    import varref.refinement.pipeline as pipeline

    model, restraints, density = helix
    prepared = density.prepared(model.xyz, 8.0)
    start = varref.perturb(model, 0.6, seed=1, restraints=restraints)
    final_runs = []  # (start, result) of every final-stage minimisation (max_step 0.2)
    original = pipeline.minimise_lbfgs

    def recording(objective, x0, **kwargs):
        result = original(objective, x0, **kwargs)
        if kwargs.get("max_step") == 0.2:
            final_runs.append((x0.copy(), result.x.copy()))
        return result

    monkeypatch.setattr(pipeline, "minimise_lbfgs", recording)
    # an angle limit of 0.4° (the macro-cycles end at 0.40°) that the full weight exceeds
    options = RefineOptions(resolution=3.0, macro_cycles=2, weight=15.0, final_cc=True, adp=False,
                            rotamer_fit=False, angle_rmsd_target=0.4)
    result = refine_coordinates(model, prepared, restraints, start, options, record_cycles=True)
    cycle, final = result.cycles[0][-2], result.cycles[0][-1]
    assert final["cycle"] == "final-cc" and final["weight"] == pytest.approx(7.5)
    assert len(final_runs) == 2
    np.testing.assert_array_equal(final_runs[1][0], final_runs[0][1])
    assert final["angle_rmsd"] <= max(0.4, cycle["angle_rmsd"])
    assert final["cc_mask"] > cycle["cc_mask"]


@pytest.mark.parametrize("final_cc", [True, False])
def test_the_row_that_ends_a_refinement_has_every_correlation(helix, final_cc):
    """Per-cycle rows carry the cheap correlations (CC_mask, CC_box); the result's metrics,
    and the last row, carry all four, equal to a fresh computation at the result."""
    from varref.refinement.metrics import ALL_CORRELATIONS, model_metrics

    model, restraints, density = helix
    prepared = density.prepared(model.xyz, 6.0)
    start = varref.perturb(model, 0.4, seed=3, restraints=restraints)
    options = RefineOptions(resolution=3.0, macro_cycles=2, weight=10.0, final_cc=final_cc,
                            adp=True, rotamer_fit=False)
    result = refine_coordinates(model, prepared, restraints, start, options, record_cycles=True)
    rows = result.cycles[0]
    assert [row["cycle"] for row in rows][:3] == [1, 2, "adp"]
    for row in rows[:-1]:
        assert "cc_volume" not in row and {"cc_mask", "cc_box", "bond_rmsd"} <= set(row)
    assert set(ALL_CORRELATIONS) <= set(rows[-1]) and set(ALL_CORRELATIONS) <= set(result.after[0])
    fresh = model_metrics(replace(model, b_iso=result.b_iso[0]), result.xyz[0], restraints,
                          prepared, 3.0)
    for name in (*ALL_CORRELATIONS, "bond_rmsd", "angle_rmsd"):
        assert result.after[0][name] == pytest.approx(fresh[name], abs=1e-9), name


def test_every_registered_term_follows_the_interface(helix):
    """Every restraint term built for a real setup is a Term, evaluates K sets, and restricts
    itself to a subset whose gradient equals the full term's on interior atoms."""
    model, restraints, density = helix
    from varref.engine.restraint_target import pack_restraints

    options = RefineOptions(resolution=4.5, reference_model="start")
    starts = np.stack([model.xyz, varref.perturb(model, 0.4, seed=4, restraints=restraints)])
    setup = TermSetup(model, restraints, pack_restraints(restraints), density.prepared(model.xyz), options, starts)
    terms = build_restraint_terms(setup)
    assert {t.name for t in terms} >= {"geometry", "ramachandran", "cbeta", "secondary_structure",
                                       "reference"}
    members = np.array([0, 1])
    everything = np.arange(model.n_atoms)
    first_half = np.flatnonzero(model.residue_index < 7)
    for term in terms:
        assert isinstance(term, Term) and term.kind == RESTRAINT
        values, gradient = term.evaluate(starts, members)
        assert values.shape == (2,) and gradient.shape == starts.shape
        assert np.all(np.isfinite(values)) and np.all(np.isfinite(gradient))
        assert np.all(values >= 0), term.name
        if term.name != "ramachandran":  # flat inside favoured regions, where this helix stays
            assert values[1] > 0, term.name  # the perturbed set is restrained
        # the subset of every atom is the term itself, for any number of problems
        whole = term.subset(everything)
        again = whole.evaluate(starts, members)
        np.testing.assert_allclose(again[0], values, rtol=1e-12, err_msg=term.name)
        np.testing.assert_allclose(again[1], gradient, rtol=1e-10, atol=1e-12, err_msg=term.name)
        part = term.subset(first_half)
        if part is not None:
            three = np.repeat(starts[1:, first_half], 3, axis=0)
            part_values, _ = part.evaluate(three, np.arange(3))
            assert np.all(part_values <= values[1] + 1e-9) and np.ptp(part_values) == 0


def test_objective_gradient_matches_finite_differences(helix):
    """The summed objective (data + restraint terms, per-problem weights) has the gradient
    of its value."""
    model, restraints, density = helix
    from varref.engine.restraint_target import pack_restraints
    from varref.refinement.terms import MACRO, build_data_terms

    start = varref.perturb(model, 0.4, seed=5, restraints=restraints)[np.newaxis]
    options = RefineOptions(resolution=3.0)
    setup = TermSetup(model, restraints, pack_restraints(restraints), density.prepared(model.xyz), options, start)
    objective = Objective(build_data_terms(setup, MACRO) + build_restraint_terms(setup), [7.0], start)
    x = objective.pack(start)
    value, gradient = objective(x, np.array([0]))
    rng = np.random.default_rng(0)
    for index in rng.choice(x.shape[1], 12, replace=False):
        step = np.zeros_like(x)
        step[0, index] = 1e-5
        numeric = (objective(x + step, np.array([0]))[0] - objective(x - step, np.array([0]))[0]) / 2e-5
        assert numeric[0] == pytest.approx(gradient[0, index], rel=1e-4, abs=1e-5)


def test_registry_names_are_unique():
    names = [spec.name for spec in REGISTRY]
    assert len(names) == len(set(names))


def test_bad_options_are_named():
    with pytest.raises(varref.InputError, match="--resolution"):
        RefineOptions(resolution=float("nan"))
    with pytest.raises(varref.InputError, match="--weight"):
        RefineOptions(resolution=3.0, weight=-5.0)
    with pytest.raises(varref.InputError, match="--macro-cycles"):
        RefineOptions(resolution=3.0, macro_cycles=0)
    with pytest.raises(TypeError, match="unknown refinement option"):
        varref.refine(varref.example_helix(5), varref.simulate_map(varref.example_helix(5), 3.0), 3.0,
                      macro_cycle=2)
