"""The public Python API: what a notebook calls, and what every CLI command wraps.

Models and maps may be given as paths or as :class:`~varref.model.Model` /
:class:`~varref.maps.Map` objects; restraints are built from the monomer library when not
given. Functions that run many refinements take a Dask ``client`` (default: the current
client if there is one, else a LocalCluster started for the call) and a results ``store``
(default None: an in-memory xarray Dataset, no files written).

>>> import varref
>>> model = varref.example_helix(12)                          # doctest: +SKIP
>>> density = varref.simulate_map(model, resolution=3.0)      # doctest: +SKIP
>>> result = varref.refine(model, density, 3.0)               # doctest: +SKIP
>>> result.after["cc_mask"]                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np

from varref.engine.parallel import beside
from varref.errors import InputError
from varref.maps import Map, read_map
from varref.model import Model, read_model, require_polymer, write_model
from varref.refinement.options import RefineOptions
from varref.refinement.weight import WeightSearchResult
from varref.restraints import Restraints, build_restraints

if TYPE_CHECKING:  # only the ensemble/analysis functions build Datasets; they import it there
    import xarray as xr

log = logging.getLogger(__name__)

ModelLike = "str | PathLike | Model"
MapLike = "str | PathLike | Map"

_OPTION_NAMES = {f.name for f in fields(RefineOptions)}


# --------------------------------------------------------------------------- inputs


def as_model(model) -> Model:
    """A :class:`Model` from a Model or a PDB/mmCIF path."""
    return model if isinstance(model, Model) else read_model(model)


def as_map(density) -> Map:
    """A :class:`Map` from a Map or an MRC/CCP4/MTZ path."""
    return density if isinstance(density, Map) else read_map(density)


def refine_options(resolution: float, **options) -> RefineOptions:
    """:class:`RefineOptions` from keyword arguments; an unknown name is an error."""
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown refinement option(s): {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(sorted(_OPTION_NAMES - {'resolution'}))}")
    reference = options.get("reference_model")
    if reference is not None and not isinstance(reference, Model) and str(reference) != "start":
        # read once here (errors name the file before any work; workers get the Model)
        options["reference_model"] = read_model(reference)
    return RefineOptions(resolution=resolution, **options)


#: At this resolution (Å) and worse, residues without hydrogens get united-atom radii in the
#: repulsion: the map no longer holds atoms apart, and with bare heavy-atom radii CH groups
#: collapse into contacts MolProbity calls clashes (F-actin at 6.6 Å: clashscore 142 → 35).
#: At better resolution the map holds them and the larger radii only cost accuracy (TRPV1,
#: simulated 3 Å map, 1 Å start: 0.20 → 0.32 Å from the truth).
UNITED_ATOM_RESOLUTION = 4.0


def _restraints_for(model: Model, restraints: Restraints | None, monlib, extra_restraints,
                    resolution: float | None = None) -> Restraints:
    if restraints is not None:
        return restraints
    united = resolution is not None and resolution >= UNITED_ATOM_RESOLUTION
    return build_restraints(model, monlib_dir=monlib, extra_cifs=list(extra_restraints or ()),
                            united_atom_radii=united)


def _with_hydrogens(model: Model, options: RefineOptions | None, restraints: Restraints | None,
                    monlib=None, extra_restraints: Sequence[str] = ()) -> Model:
    """``model`` with riding hydrogens (re)built from the monomer library (and the extra
    dictionaries) when the options say ``hydrogens="add"``; otherwise ``model`` itself."""
    if options is None or options.hydrogens != "add":
        return model
    if restraints is not None:
        raise InputError("--hydrogens", "add builds the restraints of the hydrogenated model; "
                         "do not pass prebuilt restraints with it")
    from varref.restraints.hydrogens import add_riding_hydrogens

    return add_riding_hydrogens(model, monlib, list(extra_restraints or ()))


@contextlib.contextmanager
def _dask(client) -> Iterator[object]:
    """The given client, else the current one, else a LocalCluster for this call."""
    if client is not None:
        yield client
        return
    from distributed import get_client

    try:
        current = get_client()
    except ValueError:  # no client in this process
        current = None
    if current is not None:
        yield current
        return
    from varref.ensemble.cluster import dask_client

    with dask_client(quiet=True) as started:
        yield started


def _check_counts(**counts: int | None) -> None:
    """Counts of things to do must be integers >= 1 (None: the default is used)."""
    flags = {"n_models": "--members", "models_per_map": "--members"}
    for name, value in counts.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(flags.get(name, "--" + name.replace("_", "-")),
                             f"must be an integer >= 1, got {value!r}")


# --------------------------------------------------------------------------- refine


@dataclass
class RefinementResult:
    """A refined model and what the refinement did.

    Attributes
    ----------
    model : Model
        The refined model (input topology, refined coordinates).
    xyz : (N, 3) ndarray
        Refined coordinates, Å.
    weight : float
        Data weight used.
    weight_search : WeightSearchResult or None
        The segment trials behind the weight (None when the weight was given).
    before, after : dict
        CC_mask, CC_box, CC_volume, CC_peaks, bond and angle r.m.s.d. before and after.
    cycles : list of dict
        The same metrics after every macro-cycle (and the final stage, when kept).
    options : RefineOptions
    runtime_s : float
    fsc : dict
        Map–model FSC summaries ``{"before": ..., "after": ...}`` (FSC-average, resolution at
        FSC = 0.5; with half maps also the model–half-map and half-map FSCs), see
        :func:`varref.fsc.fsc_summary`.
    restraints : Restraints or None
        The restraints the model was refined with (its topology: valid for the start and
        the result).
    start : Model or None
        The model the refinement started from (the input at the starting coordinates, with
        the hydrogens ``hydrogens="add"`` built).
    validation : dict
        With ``validation=True``: the :func:`varref.validation.validate` reports of the start
        and of the result, ``{"before": ..., "after": ...}`` (no EMRinger; their ``map_fit``
        holds the refinement's own CC_mask and CC_box unless ``map_b`` re-blurred the map);
        otherwise empty.
    """

    model: Model
    xyz: np.ndarray
    weight: float
    weight_search: WeightSearchResult | None
    before: dict[str, float]
    after: dict[str, float]
    cycles: list[dict] = field(default_factory=list)
    options: RefineOptions | None = None
    runtime_s: float = 0.0
    fsc: dict = field(default_factory=dict)
    restraints: Restraints | None = None
    start: Model | None = None
    validation: dict = field(default_factory=dict)

    def write(self, path: str | PathLike) -> None:
        """Write the refined model (format from the suffix: .cif/.mmcif or .pdb)."""
        write_model(self.model, path)

    def to_dict(self) -> dict[str, object]:
        """Weight, options, metrics and timing as plain JSON-ready values."""
        return {"weight": self.weight, "weight_searched": self.weight_search is not None,
                "macro_cycles": len([c for c in self.cycles if c.get("cycle") != "final-cc"]),
                "options": self.options.as_dict() if self.options else None,
                "runtime_s": round(self.runtime_s, 3), "n_atoms": self.model.n_atoms,
                "before": self.before, "after": self.after, "cycles": self.cycles,
                "fsc": self.fsc}


def refine(model, density, resolution: float, *, restraints: Restraints | None = None,
           xyz: np.ndarray | None = None, monlib: str | None = None,
           extra_restraints: Sequence[str] = (), half_maps=None, fsc: bool = True,
           validation: bool = False, reference_data: str | PathLike | None = None,
           **options) -> RefinementResult:
    """Refine one model into one map (real-space refinement, Afonine et al. 2018).

    Parameters
    ----------
    model
        A :class:`Model` or a PDB/mmCIF path.
    density
        A :class:`Map` or an MRC/CCP4/MTZ path (any box; it is cut around the model), or
        None with ``half_maps`` (their average is refined against).
    resolution
        Map resolution, Å.
    restraints
        Prebuilt restraints (default: built from the monomer library).
    xyz
        Starting coordinates (default: the model's).
    monlib, extra_restraints
        Monomer library directory and extra dictionaries (ligands), when building restraints.
    half_maps
        Optional pair of half maps (Maps or paths on the map's grid): the FSC summaries then
        include FSC(model, half 1), FSC(model, half 2) and the half-map FSC.
    fsc
        Compute the map–model FSC before and after (``result.fsc``; default True).
    validation, reference_data
        Validate the start and the result (``result.validation``; default False), with the
        MolProbity Top8000 grids in ``reference_data`` (default ``$VARREF_REFERENCE_DATA``).
        The reports on the start (FSC, validation) are computed beside the refinement, on
        the core its Python leaves idle.
    **options
        Any field of :class:`~varref.refinement.options.RefineOptions`: ``macro_cycles``,
        ``weight``, ``rigid_body``, ``final_cc``, ``map_b``, ``seed``, ``ramachandran``, ...

    Returns
    -------
    RefinementResult

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(10)
    >>> density = varref.simulate_map(model, 3.0)
    >>> start = varref.perturb(model, 0.5, seed=1)
    >>> result = varref.refine(model, density, 3.0, xyz=start, macro_cycles=2, final_cc=False)
    >>> result.after["cc_mask"] > result.before["cc_mask"]
    True
    """
    from varref.refinement.pipeline import refine_coordinates

    opts = refine_options(resolution, **options)
    model = as_model(model)
    require_polymer(model)
    halves = None
    if half_maps is not None:
        from varref.fsc import average_map, read_half_maps

        halves = read_half_maps(*half_maps)
        if density is None:
            density = average_map(*halves)
    if density is None:
        raise InputError("map", "give a map or half maps")
    density = as_map(density)
    if halves is not None:
        from varref.fsc import require_same_grid

        require_same_grid(density, halves[0])
    start = np.array(model.xyz if xyz is None else xyz, dtype=np.float64)
    if start.shape != model.xyz.shape:
        raise InputError("xyz", f"shape {start.shape}, the model has {model.xyz.shape}")
    model = model.with_xyz(start)  # the input model of the pipeline is the start
    model = _with_hydrogens(model, opts, restraints, monlib, extra_restraints)
    start = model.xyz
    restraints = _restraints_for(model, restraints, monlib, extra_restraints, resolution)
    prepared = density.prepared(start, opts.box_margin, opts.map_b)
    reports = _Reports(model, restraints, density, resolution, halves, opts, reference_data)
    with beside() as side:
        # what only depends on the start runs beside the refinement
        start_fsc = side.submit(reports.fsc, model) if fsc else None
        start_report = side.submit(reports.validate, model) if validation else None
        started = time.perf_counter()
        result = refine_coordinates(model, prepared, restraints, start, opts, record_cycles=True)
        runtime = time.perf_counter() - started
        refined = result.xyz[0]
        refined_model = replace(model.with_xyz(refined), b_iso=result.b_iso[0].copy())
        # the result's validation (mostly Python) beside its FSC (FFTs and kernels on every
        # thread); queued after the start's, whose clash topology it reuses
        result_report = side.submit(reports.validate, refined_model) if validation else None
        summaries = ({"before": start_fsc.result(), "after": reports.fsc(refined_model)}
                     if fsc else {})
        validated = {}
        if validation:
            validated = {"before": reports.with_map_fit(start_report.result(), result.before[0]),
                         "after": reports.with_map_fit(result_report.result(), result.after[0])}
    return RefinementResult(refined_model, refined, result.weight, result.weight_search,
                            result.before[0], result.after[0], result.cycles[0], opts, runtime,
                            summaries, restraints, model, validated)


class _Reports:
    """The FSC and validation of :func:`refine`'s start and result, on the map as given."""

    def __init__(self, model: Model, restraints: Restraints, density: Map, resolution: float,
                 halves, options: RefineOptions, reference_data) -> None:
        from varref.validation import TopologyCache

        self.density, self.resolution, self.halves = density, resolution, halves
        self.reference_data = reference_data
        # start and result share the refinement's restraints and one clash topology
        self.cache = TopologyCache(restraints=restraints)
        # CC_mask and CC_box are the refinement's own (as in its log) unless the refinement
        # read a re-blurred map: then validation measures them on the map as given
        self.own_map_fit = options.map_b is None
        self.boxed = None if self.own_map_fit else density.box_around(model.xyz, margin=8.0)

    def fsc(self, model: Model) -> dict[str, object]:
        return fsc_summaries(model, model.xyz, self.density, self.resolution, self.halves)

    def validate(self, model: Model) -> dict[str, object]:
        from varref.validation import validate

        # the summary does not show EMRinger: its scan is skipped
        return validate(model, self.boxed, self.resolution, reference_data=self.reference_data,
                        with_emringer=False, cache=self.cache)

    def with_map_fit(self, report: dict[str, object], metrics: dict[str, float]) -> dict:
        if self.own_map_fit:
            report["map_fit"] = {"available": True, "cc_mask": metrics["cc_mask"],
                                 "cc_box": metrics["cc_box"]}
        return report


#: Margin (Å) of the box the FSCs are computed on: the FSC of a model is local, and a whole
#: cryo-EM box would only add solvent and FFT time.
_FSC_BOX_MARGIN = 8.0


def _fsc_boxes(xyz: np.ndarray, density: Map, half_maps: tuple[Map, Map] | None):
    """The map and half maps boxed around ``xyz`` for the FSCs."""
    halves = (None if half_maps is None
              else tuple(h.box_around(xyz, margin=_FSC_BOX_MARGIN) for h in half_maps))
    return density.box_around(xyz, margin=_FSC_BOX_MARGIN), halves


def fsc_curves(model: Model, xyz: np.ndarray, density: Map, resolution: float,
               half_maps: tuple[Map, Map] | None = None) -> xr.Dataset:
    """The map–model FSC curves (:func:`varref.fsc.model_map_fsc`) of ``xyz`` on the map
    boxed around the model with an 8 Å margin (the FSC of a model is local; a whole cryo-EM
    box would only add solvent and FFT time)."""
    from varref.fsc import model_map_fsc

    box, halves = _fsc_boxes(xyz, density, half_maps)
    return model_map_fsc(model, xyz, box, resolution, half_maps=halves)


def fsc_summaries(model: Model, xyz: np.ndarray, density: Map, resolution: float,
                  half_maps: tuple[Map, Map] | None = None) -> dict[str, object]:
    """FSC summary (:func:`varref.fsc.fsc_summary`) of :func:`fsc_curves`, computed without
    building their Dataset."""
    from varref.fsc import model_map_fsc_summary

    box, halves = _fsc_boxes(xyz, density, half_maps)
    return model_map_fsc_summary(model, xyz, box, resolution, half_maps=halves)


# --------------------------------------------------------------------------- many models


def refine_ensemble(model, density, resolution: float, n_models: int, perturb_rmsd: float, *,
                    client=None, store: str | PathLike | None = None, batch_size: int = 10,
                    resume: bool = False, restraints: Restraints | None = None,
                    monlib: str | None = None, extra_restraints: Sequence[str] = (),
                    progress: bool = False, **options) -> xr.Dataset:
    """Refine ``n_models`` smoothly perturbed copies of a model into one map (precision).

    Every member is perturbed from its own seed (a function of ``seed`` and the member
    number only) and refined with the same weight (searched once on the input model unless
    ``weight`` is given) by the same pipeline as :func:`refine`. Members run in Dask tasks of
    ``batch_size``.

    Parameters
    ----------
    model, density, resolution
        As for :func:`refine`.
    n_models
        Ensemble size.
    perturb_rmsd
        Cα r.m.s.d. of the starting models from the input, Å.
    client
        A ``distributed.Client`` (default: the current one, else a LocalCluster for the call).
    store
        Zarr path for the results (members written as they finish; ``resume`` continues an
        interrupted run). None keeps the results in memory.
    **options
        Fields of :class:`~varref.refinement.options.RefineOptions`; ``final_cc``, ``adp``
        and ``rotamer_fit`` default to False here (each adds seconds to every member, and a
        rotamer fit on a perturbed backbone picks wrong rotamers: measured on the TRPV1
        ensemble benchmark); with ``adp=True`` each member's refined B are in ``b_iso``.

    Returns
    -------
    xarray.Dataset
        Dimensions frame (1), member, atom, axis; see :mod:`varref.ensemble.results`.

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(10)
    >>> density = varref.simulate_map(model, 3.0)
    >>> ds = varref.refine_ensemble(model, density, 3.0, n_models=4, perturb_rmsd=0.5,
    ...                             macro_cycles=2, weight=20.0)   # doctest: +SKIP
    >>> varref.precision(ds)["residue_rmsf"]                        # doctest: +SKIP
    """
    from varref.ensemble.ensemble import run_ensemble

    options.setdefault("final_cc", False)
    options.setdefault("adp", False)
    options.setdefault("rotamer_fit", False)
    opts = refine_options(resolution, **options)
    _check_counts(n_models=n_models, batch_size=batch_size)
    if not (isinstance(perturb_rmsd, (int, float)) and np.isfinite(perturb_rmsd) and perturb_rmsd >= 0):
        raise InputError("--perturb-rmsd", f"must be a finite number >= 0, got {perturb_rmsd!r}")
    model = as_model(model)
    require_polymer(model)
    density = as_map(density)
    model = _with_hydrogens(model, opts, restraints, monlib, extra_restraints)
    restraints = _restraints_for(model, restraints, monlib, extra_restraints, resolution)
    with _dask(client) as dask_client:
        return run_ensemble(dask_client, model, restraints, density, store, n_models, perturb_rmsd,
                            opts, batch_size=batch_size, resume=resume, progress=progress)


def refine_series(model, maps, resolution: float, *, mode: str = "chained", client=None,
                  store: str | PathLike | None = None, reference_frame: int | None = None,
                  models_per_map: int = 1, perturb_rmsd: float = 0.5,
                  batch_size: int | None = None, resume: bool = False,
                  restraints: Restraints | None = None, monlib: str | None = None,
                  extra_restraints: Sequence[str] = (), progress: bool = False,
                  voxel_size: float | None = None,
                  smoothness: float | None = None, joint_weight: float | None = None,
                  joint_start: str = "chained", joint_scheme: str = "single",
                  **options) -> xr.Dataset:
    """Refine one model (or ``models_per_map``) into every map of a series (variability).

    Parameters
    ----------
    model
        The consensus model (Model or path).
    maps
        Map files, directories, globs or list files as :func:`series_inputs` takes them
        (3DVA components, cryoDRGN directories and RELION classes ordered and grouped), a
        zarr map-series store (``varref maps-to-zarr``), a map series, or a list of
        :class:`Map` objects on one grid. In chained mode every component is its own chain.
    resolution
        Map resolution, Å.
    mode
        ``"chained"`` (walk outward from the reference frame, each frame starting from its
        neighbour's best model), ``"independent"`` (every frame from the input model) or
        ``"joint"`` (all frames refined together with a smoothness prior along the frames;
        member m of every frame is one trajectory).
    store
        Zarr path for the results, or None for an in-memory Dataset.
    voxel_size
        Voxel size (Å) replacing every map file's header value (cryoDRGN writes 1 Å when
        it had no CTF file). A map whose voxel size looks wrong for the model is warned
        about (logging) either way.
    smoothness
        Joint mode: cut-off period of the trajectory prior, frames (≥ 2; default half the
        series, at least 3).
    joint_weight
        Joint mode: the prior weight λ itself (default: automatic, from ``smoothness``).
    joint_start
        Joint mode: ``"chained"`` (start from the chained walk's models) or ``"input"``
        (every frame from the input model).
    joint_scheme
        Joint mode: ``"single"`` (one task refines whole trajectories: exact coupling, every
        map in one task's memory) or ``"alternating"`` (frames spread over the workers,
        refined in turn with their neighbours fixed until converged: for long series).
    **options
        Fields of :class:`~varref.refinement.options.RefineOptions` (``final_cc``, ``adp``
        and ``rotamer_fit`` default to False here).

    Returns
    -------
    xarray.Dataset
        Dimensions frame, member, atom, axis; with components, the frame coordinates
        ``component`` and ``frame_in_component``.

    Examples
    --------
    >>> import varref
    >>> frames = varref.example_data.hinge_motion(n_frames=3)      # doctest: +SKIP
    >>> ds = varref.refine_series(frames.model, frames.maps, 3.5, weight=20.0,
    ...                           macro_cycles=2)                  # doctest: +SKIP
    """
    from varref.ensemble.memory_series import MemoryMapSeries
    from varref.ensemble.mapseries import MapSeries, MapSeriesBase
    from varref.ensemble.series import run_series
    from varref.ensemble.series_inputs import check_series_voxel_size, check_voxel_size, open_series

    options.setdefault("final_cc", False)
    options.setdefault("adp", False)
    options.setdefault("rotamer_fit", False)
    opts = refine_options(resolution, **options)
    _check_counts(models_per_map=models_per_map, batch_size=batch_size)
    if not (isinstance(perturb_rmsd, (int, float)) and np.isfinite(perturb_rmsd) and perturb_rmsd >= 0):
        raise InputError("--perturb-rmsd", f"must be a finite number >= 0, got {perturb_rmsd!r}")
    model = as_model(model)
    require_polymer(model)
    model = _with_hydrogens(model, opts, restraints, monlib, extra_restraints)
    if isinstance(maps, MapSeriesBase):
        series = maps
    elif isinstance(maps, (str, PathLike)):
        series = open_series([maps], resolution, voxel_size=voxel_size)
    else:
        maps = list(maps)
        if maps and all(isinstance(m, Map) for m in maps):
            series = MemoryMapSeries(maps, resolution=resolution)
        else:
            series = open_series(maps, resolution, voxel_size=voxel_size)
    # a warning, pointing to pixel-scan; then the standard error when the model is outside
    if isinstance(series, MapSeries):  # a store: read the boxes the checks need, not frame 0
        check_series_voxel_size(model.xyz, series, 0)
        series.frame_box(0, model.xyz)
    else:
        first = series.frame(0)
        check_voxel_size(model.xyz, first, series.sources[0])
        first.box_around(model.xyz)
    restraints = _restraints_for(model, restraints, monlib, extra_restraints, resolution)
    with _dask(client) as dask_client:
        return run_series(dask_client, model, restraints, series, store, opts, mode=mode,
                          reference_frame=reference_frame, models_per_map=models_per_map,
                          perturb_rmsd=perturb_rmsd, resume=resume, progress=progress,
                          batch_size=batch_size, smoothness=smoothness, joint_weight=joint_weight,
                          joint_start=joint_start, joint_scheme=joint_scheme)


def analyse(dataset: xr.Dataset | str | PathLike, *, reference_frame: int | None = None,
            members: str = "best", superpose_on: str = "ca", n_components: int = 5,
            domain_cutoff: float = 5.0, min_domain_residues: int = 5, window: int = 2,
            output: str | PathLike | None = None) -> xr.Dataset:
    """Principal motions, rigid domains and hinges of a refined series (``varref analyse``).

    Frames (best member each, or every finished member with ``members="all"``) are
    superposed on the reference frame's best member (Cα, or heavy atoms); PCA of the
    heavy-atom coordinates gives each component's variance and explained fraction, each
    frame's projection and its correlation with frame order (per series component), and the
    per-residue displacement along each component; residues whose neighbourhoods rotate
    alike over the frames form rigid domains, and the residues between two domains along a
    chain are hinges. Method: docs/methods-ensembles.md (*Analysis of a series*).

    Parameters
    ----------
    dataset
        A series results Dataset (:func:`refine_series`, :func:`open_results`) or its path.
    reference_frame
        Default: the run's reference frame.
    members, superpose_on, n_components, domain_cutoff, min_domain_residues, window
        See :func:`varref.ensemble.analysis.analyse` (``domain_cutoff`` in degrees).
    output
        Also write the result as a zarr store there (replaced if it exists).

    Returns
    -------
    xarray.Dataset
        Dimensions ``pc``, ``frame``, ``residue``, ``component``; units and descriptions on
        every variable; ``attrs["hinge_residues"]`` lists the hinges (``"A/52"``).

    Examples
    --------
    >>> motion = varref.analyse("series.zarr")                             # doctest: +SKIP
    >>> float(motion["explained_variance_ratio"][0]), motion.attrs["hinge_residues"]  # doctest: +SKIP
    (0.98, ['A/20', 'A/21'])
    """
    from varref.ensemble.analysis import analyse as run_analysis
    from varref.ensemble.analysis import write_analysis

    if isinstance(dataset, (str, PathLike)):
        dataset = open_results(dataset)
    result = run_analysis(dataset, reference_frame=reference_frame, members=members,
                          superpose_on=superpose_on, n_components=n_components,
                          domain_cutoff=domain_cutoff, min_domain_residues=min_domain_residues,
                          window=window)
    if output is not None:
        write_analysis(result, output)
    return result


def write_chimerax(dataset: xr.Dataset | str | PathLike, maps, directory: str | PathLike, *,
                   b_column: str = "displacement", volume: float | None = None,
                   reference_frame: int | None = None, voxel_size: float | None = None):
    """Write a refined series for ChimeraX (``varref chimerax``).

    ``DIRECTORY/series.cif`` holds one model per frame (best member; B column: displacement
    from the reference frame, or ``b_column="spread"``), ``DIRECTORY/series.cxc`` opens the
    maps as a volume series, each contoured to enclose the same volume (default: the model's
    volume at 1.35 g/cm³), and the models coloured by B. Maps that are not files (a zarr
    store, maps in memory) are written to ``DIRECTORY/maps/``. The directory is created if
    missing and its files replaced.

    Parameters
    ----------
    dataset
        Series results (or the store's path).
    maps
        The maps of the series, as :func:`refine_series` takes them.

    Returns
    -------
    varref.ensemble.chimerax.ChimeraXExport
        Paths written (``models``, ``script``, ``maps``), ``levels`` and ``volume``.

    Examples
    --------
    >>> export = varref.write_chimerax("series.zarr", "maps.zarr", "chimerax/")   # doctest: +SKIP
    >>> export.script                                                            # doctest: +SKIP
    PosixPath('/data/chimerax/series.cxc')
    """
    from varref.ensemble.chimerax import write_chimerax as write
    from varref.ensemble.mapseries import MapSeriesBase
    from varref.ensemble.memory_series import MemoryMapSeries
    from varref.ensemble.series_inputs import open_series

    if isinstance(dataset, (str, PathLike)):
        dataset = open_results(dataset)
    if isinstance(maps, MapSeriesBase):
        series = maps
    elif isinstance(maps, (str, PathLike)):
        series = open_series([maps], voxel_size=voxel_size)
    else:
        maps = list(maps)
        series = (MemoryMapSeries(maps) if maps and all(isinstance(m, Map) for m in maps)
                  else open_series(maps, voxel_size=voxel_size))
    return write(dataset, series, directory, b_column=b_column, volume=volume,
                 reference_frame=reference_frame)


def series_inputs(inputs: Sequence[str | PathLike], *, keep_order: bool = False,
                  voxel_size: float | None = None):
    """The ordered frames of a map series from files, directories, globs or list files.

    cryoSPARC 3DVA ``*_component_NNN_frame_MMM.mrc`` (component ``component_NNN``, frames in
    numeric order), cryoDRGN ``analyze`` directories (``pc1/vol_000.mrc``: the directory is
    the component), RELION ``*_itNNN_classMMM.mrc`` (class order) and text files listing maps
    (one per line, ``#`` comments, relative to the list file). See
    :mod:`varref.ensemble.series_inputs`.

    Returns
    -------
    varref.ensemble.series_inputs.SeriesInputs
        ``paths``, ``labels``, ``components`` (None without); ``open(resolution)`` checks
        the maps share one grid and returns the series :func:`refine_series` takes.

    Examples
    --------
    >>> frames = varref.series_inputs(["analyze.10/"], voxel_size=1.31)   # doctest: +SKIP
    >>> frames.components[:2], frames.labels[:2]                          # doctest: +SKIP
    (['kmeans20', 'kmeans20'], ['kmeans20/vol_000.mrc', 'kmeans20/vol_001.mrc'])
    """
    from varref.ensemble.series_inputs import collect_series_inputs

    return collect_series_inputs(inputs, keep_order=keep_order, voxel_size=voxel_size)


def pixel_scan(model, density, resolution: float, *, scales: Sequence[float] | None = None,
               refine: bool = False, brent: bool = False, anisotropic: bool = False,
               client=None, restraints: Restraints | None = None, progress: bool = False,
               **options) -> dict[str, object]:
    """Calibrate a map's voxel size against a trusted model (what Phenix calls magref).

    Parameters
    ----------
    scales
        Trial scale factors of the voxel size (default 0.95-1.05 in 0.25 % steps).
    refine
        Follow each trial's rigid fit by one short restrained refinement, all trials with
        one weight (searched once at the header's scale unless ``weight`` is given).
    **options
        Fields of :class:`~varref.refinement.options.RefineOptions` for refined trials
        (default one macro-cycle of 50 iterations, no final stage).

    Returns
    -------
    dict
        ``scan`` (xarray Dataset versus scale: the coarse stage's ``atom_score`` for every
        trial, the matched CC and CC_mask of the accurately scored window), ``scale``
        (optimum of the profile-matched CC_mask), ``scale_sigma`` (bootstrap over residue
        segments ⊕ a 0.05 % method floor), ``scale_sigma_bootstrap``, ``scale_sigma_scan``
        (parabola fit: scan noise only), ``scale_coarse`` (the coarse stage's optimum),
        ``start_offset`` (translation search, Å), ``scale_xyz``, ``best_voxel_size``,
        ``cc_matched_best``, ``cc_mask_best``, ``timings`` (wall seconds per phase).

    Examples
    --------
    >>> result = varref.pixel_scan("model.cif", "map.mrc", 3.4)   # doctest: +SKIP
    >>> result["best_voxel_size"]                                  # doctest: +SKIP
    """
    from varref.calibration import run_pixel_scan

    model = as_model(model)
    density = as_map(density)
    scales = np.round(np.arange(0.95, 1.05 + 1e-9, 0.0025), 10) if scales is None else np.asarray(scales, float)
    opts = None
    if refine:
        options.setdefault("macro_cycles", 1)
        options.setdefault("iterations", 50)
        options.setdefault("final_cc", False)
        options.setdefault("adp", False)
        options.setdefault("rotamer_fit", False)
        opts = refine_options(resolution, **options)
        require_polymer(model)
        model = _with_hydrogens(model, opts, restraints)
        restraints = restraints or build_restraints(model)
    elif options:
        raise TypeError("refinement options need refine=True")
    with _dask(client) as dask_client:
        return run_pixel_scan(dask_client, model, density, resolution, scales, refine=refine,
                              brent=brent, anisotropic=anisotropic, restraints=restraints,
                              weight=None if opts is None else opts.weight, progress=progress,
                              options=opts)


# --------------------------------------------------------------------------- other tools


def validate(model, density=None, resolution: float | None = None,
             reference_data: str | PathLike | None = None, half_maps=None) -> dict[str, object]:
    """Validation report: geometry, Ramachandran, rotamers, C-beta, peptides, clashes, and
    with a map (or half maps) and a resolution the map-model correlations, EMRinger and the
    map–model FSC (``report["fsc"]``, :func:`varref.fsc.fsc_summary`).

    Examples
    --------
    >>> import varref
    >>> report = varref.validate(varref.example_helix(10))
    >>> report["geometry"]["bonds"]["rmsd"] < 0.05
    True
    """
    from varref.validation import validate as validate_model

    model = as_model(model)
    halves = None
    if half_maps is not None:
        from varref.fsc import average_map, read_half_maps

        halves = read_half_maps(*half_maps)
        if density is None:
            density = average_map(*halves)
    density = None if density is None else as_map(density)
    report = validate_model(model, density, resolution, reference_data=reference_data)
    if density is not None and resolution is not None:
        # map–model FSC (with half maps: work/free-style FSCs and the half-map FSC)
        report["fsc"] = fsc_summaries(model, model.xyz, density, resolution, halves)
    return report


def simulate_map(model, resolution: float, **kwargs) -> Map:
    """A map of the model at ``resolution`` Å (Gaussian atoms, optional noise ``snr``).

    Keyword arguments are those of :func:`varref.simulate.simulate_map`: ``voxel_size``,
    ``margin``, ``b_extra``, ``snr``, ``seed``, ``b_iso``.

    Examples
    --------
    >>> import varref
    >>> density = varref.simulate_map(varref.example_helix(10), 3.0)
    >>> density.data.ndim
    3
    """
    from varref.simulate import simulate_map as simulate

    return simulate(as_model(model), resolution, **kwargs)


def perturb(model, rmsd: float, seed: int = 0, restraints: Restraints | None = None) -> np.ndarray:
    """Coordinates smoothly perturbed to a Cα r.m.s.d. of ``rmsd`` Å and regularised.

    Examples
    --------
    >>> import varref
    >>> model = varref.example_helix(10)
    >>> start = varref.perturb(model, 1.0, seed=3)
    >>> start.shape == model.xyz.shape
    True
    """
    from varref.perturbation import perturb as perturb_model

    if not np.isfinite(rmsd) or rmsd < 0:
        raise InputError("rmsd", f"must be a finite number >= 0, got {rmsd!r}")
    model = as_model(model)
    return perturb_model(model, restraints or build_restraints(model), rmsd, seed=seed)


def open_results(path: str | PathLike) -> xr.Dataset:
    """Open a results store written by :func:`refine_ensemble` / :func:`refine_series`
    (``varref ensemble`` / ``varref series``) as a lazy xarray Dataset.

    Examples
    --------
    >>> ds = varref.open_results("ENS.zarr")     # doctest: +SKIP
    >>> ds["cc_mask"].sel(frame=0).values        # doctest: +SKIP
    """
    from varref.ensemble.results import open_results as open_store

    return open_store(path)


def precision(dataset: xr.Dataset, frame: int = 0) -> xr.Dataset:
    """Per-atom and per-residue RMSF of a frame's members after superposition.

    Examples
    --------
    >>> spread = varref.precision(varref.open_results("ENS.zarr"))   # doctest: +SKIP
    """
    from varref.ensemble.precision import precision as member_precision

    return member_precision(dataset, frame)
