"""Cell-list neighbour search and the buffered non-bonded pair list.

The kernels are pure (numba, nogil); the only state - coordinates at the last build and
the current pair list - lives in :class:`NeighbourList` / :class:`BatchNeighbourList`.

Rebuild rule (Verlet skin): a build lists every non-excluded pair with
``d < r0 + buffer``. Between builds a pair's distance changes by at most the sum of its
two atoms' displacements, so as long as no atom has moved more than ``buffer / 2`` since
the build, every pair with ``d < r0`` is still in the list. The list is rebuilt on the
first evaluation at which some atom has moved further than that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from varref.engine.nonbonded import (
    KIND_14,
    KIND_EXCLUDED,
    NonbondedSettings,
    NonbondedTopology,
    contact_distance,
)


@njit(nogil=True, cache=True)
def _grow(arr: np.ndarray, new_rows: int) -> np.ndarray:
    out = np.empty((new_rows, arr.shape[1]), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@njit(nogil=True, cache=True)
def _bin_atoms(xyz: np.ndarray, cell_size: float):
    """Counting sort of atoms into a grid of cubic-ish cells at least ``cell_size`` wide.

    Returns (nx, ny, nz, cell_start (n_cells + 1,), cell_atoms (N,)). The grid spans the
    bounding box; its cell count is capped near 4N so sparse or huge boxes stay cheap.
    """
    n = xyz.shape[0]
    lo = np.empty(3)
    hi = np.empty(3)
    for d in range(3):
        lo[d] = np.inf
        hi[d] = -np.inf
    for i in range(n):
        for d in range(3):
            if not math.isfinite(xyz[i, d]):
                raise ValueError("non-finite coordinates in the neighbour search")
            if xyz[i, d] < lo[d]:
                lo[d] = xyz[i, d]
            if xyz[i, d] > hi[d]:
                hi[d] = xyz[i, d]
    width = cell_size
    max_cells = max(64, 4 * n)
    dims = np.ones(3, dtype=np.int64)
    while True:
        total = 1
        for d in range(3):
            dims[d] = max(1, int(math.floor((hi[d] - lo[d]) / width)))
            total *= dims[d]
        if total <= max_cells:
            break
        width *= 1.25
    nx, ny, nz = dims[0], dims[1], dims[2]
    inv = np.empty(3)
    for d in range(3):
        extent = hi[d] - lo[d]
        inv[d] = dims[d] / extent if extent > 0.0 else 0.0
    n_cells = nx * ny * nz
    cell_of = np.empty(n, dtype=np.int64)
    counts = np.zeros(n_cells + 1, dtype=np.int64)
    for i in range(n):
        ix = min(int((xyz[i, 0] - lo[0]) * inv[0]), nx - 1)
        iy = min(int((xyz[i, 1] - lo[1]) * inv[1]), ny - 1)
        iz = min(int((xyz[i, 2] - lo[2]) * inv[2]), nz - 1)
        c = (ix * ny + iy) * nz + iz
        cell_of[i] = c
        counts[c + 1] += 1
    for c in range(n_cells):
        counts[c + 1] += counts[c]
    cell_start = counts.copy()
    fill = counts[:-1].copy()
    cell_atoms = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = cell_of[i]
        cell_atoms[fill[c]] = i
        fill[c] += 1
    return nx, ny, nz, cell_start, cell_atoms


@njit(nogil=True, cache=True)
def _nonbonded_pairs_cell_list(
    xyz: np.ndarray,
    cutoff: float,
    radius: np.ndarray,
    hbond_type: np.ndarray,
    partner_offsets: np.ndarray,
    partners: np.ndarray,
    partner_kind: np.ndarray,
    k_rep: float,
    factor_1_4: float,
    shrink_donor_acceptor: float,
    minimum_distance: float,
    default_distance: float,
    buffer: float,
):
    """Cell-list search fused with the non-bonded selection.

    Keeps pairs that are not excluded and have ``d < r0 + buffer``, with their r0. A cheap
    per-pair upper bound of r0 (radii sum, floored) rejects most candidates before the
    exclusion lookup and the full contact-distance rule.
    """
    n = xyz.shape[0]
    pairs = np.empty((max(16, 4 * n), 2), dtype=np.int64)
    contact = np.empty(pairs.shape[0])
    count = 0
    if n < 2:
        return pairs[:0].copy(), contact[:0].copy()
    nx, ny, nz, cell_start, cell_atoms = _bin_atoms(xyz, cutoff)
    # per-atom data in cell order, for sequential reads in the inner loop
    sorted_xyz = np.empty((n, 3))
    bound_radius = np.empty(n)
    floor = max(minimum_distance, default_distance)
    for a in range(n):
        i = cell_atoms[a]
        sorted_xyz[a, 0] = xyz[i, 0]
        sorted_xyz[a, 1] = xyz[i, 1]
        sorted_xyz[a, 2] = xyz[i, 2]
        r = radius[i]
        bound_radius[a] = 0.0 if math.isnan(r) else r  # NaN radius -> default (<= floor)
    cut2 = cutoff * cutoff
    for ix in range(nx):
        for iy in range(ny):
            for iz in range(nz):
                c = (ix * ny + iy) * nz + iz
                if cell_start[c] == cell_start[c + 1]:
                    continue
                for ox in range(0, 2):
                    jx = ix + ox
                    if jx >= nx:
                        continue
                    for oy in range(-1, 2):
                        jy = iy + oy
                        if jy < 0 or jy >= ny:
                            continue
                        for oz in range(-1, 2):
                            jz = iz + oz
                            if jz < 0 or jz >= nz:
                                continue
                            c2 = (jx * ny + jy) * nz + jz
                            if c2 < c:
                                continue  # each unordered cell pair once (half shell)
                            for a in range(cell_start[c], cell_start[c + 1]):
                                xa = sorted_xyz[a, 0]
                                ya = sorted_xyz[a, 1]
                                za = sorted_xyz[a, 2]
                                ra = bound_radius[a]
                                b0 = a + 1 if c2 == c else cell_start[c2]
                                for b in range(b0, cell_start[c2 + 1]):
                                    dx = sorted_xyz[b, 0] - xa
                                    dy = sorted_xyz[b, 1] - ya
                                    dz = sorted_xyz[b, 2] - za
                                    d2 = dx * dx + dy * dy + dz * dz
                                    if d2 >= cut2:
                                        continue
                                    reach = k_rep * max(ra + bound_radius[b], floor) + buffer
                                    if d2 >= reach * reach:
                                        continue
                                    i = cell_atoms[a]
                                    j = cell_atoms[b]
                                    if j < i:
                                        i, j = j, i
                                    kind = 0
                                    for t in range(partner_offsets[i], partner_offsets[i + 1]):
                                        if partners[t] == j:
                                            kind = partner_kind[t]
                                            break
                                    if kind == KIND_EXCLUDED:
                                        continue
                                    r0 = contact_distance(
                                        radius[i], radius[j], hbond_type[i], hbond_type[j],
                                        kind == KIND_14, k_rep, factor_1_4,
                                        shrink_donor_acceptor, minimum_distance,
                                        default_distance)
                                    reach = r0 + buffer
                                    if d2 >= reach * reach:
                                        continue
                                    if count == pairs.shape[0]:
                                        pairs = _grow(pairs, 2 * count)
                                        grown = np.empty(2 * count)
                                        grown[:count] = contact[:count]
                                        contact = grown
                                    pairs[count, 0] = i
                                    pairs[count, 1] = j
                                    contact[count] = r0
                                    count += 1
    return pairs[:count].copy(), contact[:count].copy()


@njit(nogil=True, cache=True)
def max_displacement_sq(xyz: np.ndarray, reference: np.ndarray) -> float:
    """Largest squared displacement (Å^2) of any atom between two (N, 3) arrays."""
    best = 0.0
    for i in range(xyz.shape[0]):
        dx = xyz[i, 0] - reference[i, 0]
        dy = xyz[i, 1] - reference[i, 1]
        dz = xyz[i, 2] - reference[i, 2]
        d2 = dx * dx + dy * dy + dz * dz
        if d2 > best:
            best = d2
    return best


@njit(nogil=True, cache=True)
def max_displacement_sq_members(xyz: np.ndarray, reference: np.ndarray,
                                members: np.ndarray) -> np.ndarray:
    """Largest squared displacement of row i of ``xyz`` (k, N, 3) from row ``members[i]`` of
    ``reference`` (K, N, 3), shape (k,) — a batch whose problems drop out as they converge."""
    out = np.empty(xyz.shape[0])
    for m in range(xyz.shape[0]):
        out[m] = max_displacement_sq(xyz[m], reference[members[m]])
    return out


@njit(nogil=True, cache=True)
def max_displacement_sq_batch(xyz: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-model largest squared displacement for (K, N, 3) arrays, shape (K,)."""
    out = np.empty(xyz.shape[0])
    for k in range(xyz.shape[0]):
        out[k] = max_displacement_sq(xyz[k], reference[k])
    return out


def max_contact_distance(topology: NonbondedTopology, settings: NonbondedSettings) -> float:
    """Upper bound of the contact distance r0 over all pairs of the topology (Å)."""
    finite = topology.radius[np.isfinite(topology.radius)]
    largest = 2.0 * float(finite.max()) if finite.size else 0.0
    largest = max(largest, settings.default_distance, settings.minimum_distance)
    return settings.k_rep * largest


def _check_pair_arrays(pairs: np.ndarray, contact: np.ndarray, n_atoms: int | None) -> int:
    """Validate a pair list; return the smallest atom count it can index (max index + 1)."""
    if pairs.dtype != np.int64 or pairs.ndim != 2 or pairs.shape[1] != 2 \
            or not pairs.flags.c_contiguous:
        raise ValueError("pairs must be a C-contiguous (P, 2) int64 array")
    if contact.dtype != np.float64 or contact.shape != (len(pairs),):
        raise ValueError("contact must be a (P,) float64 array")
    if pairs.size == 0:
        return 0
    if pairs.min() < 0:
        raise ValueError("negative atom index in pair list")
    needed = int(pairs.max()) + 1
    if n_atoms is not None and needed > n_atoms:
        raise ValueError(f"pair index out of range [0, {n_atoms})")
    return needed


@dataclass(frozen=True)
class NonbondedPairs:
    """A non-bonded pair list: ``pairs`` (P, 2) int64 and ``contact`` r0 (P,) float64.

    ``n_atoms`` (optional) is the atom count of the model the list was built for. The
    kernels do no bounds checks, so the list is validated once on construction and the
    evaluation checks it against the topology (``n_atoms`` if given, else the largest
    index) - a list can never index outside the coordinates.
    """

    pairs: np.ndarray
    contact: np.ndarray
    n_atoms: int | None = None
    atoms_needed: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "atoms_needed",
                           _check_pair_arrays(self.pairs, self.contact, self.n_atoms))

    def __len__(self) -> int:
        return len(self.contact)


@dataclass(frozen=True)
class BatchNonbondedPairs:
    """Pair lists of K models concatenated; model k owns rows ``offsets[k]:offsets[k+1]``.

    Validated on construction like :class:`NonbondedPairs`.
    """

    pairs: np.ndarray
    contact: np.ndarray
    offsets: np.ndarray
    n_atoms: int | None = None
    atoms_needed: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "atoms_needed",
                           _check_pair_arrays(self.pairs, self.contact, self.n_atoms))
        offsets = self.offsets
        if (offsets.dtype != np.int64 or offsets.ndim != 1 or len(offsets) < 1
                or offsets[0] != 0 or offsets[-1] != len(self.pairs)
                or np.any(np.diff(offsets) < 0)):
            raise ValueError("offsets must be a valid int64 CSR index into pairs")


def build_nonbonded_pairs(
    xyz: np.ndarray, topology: NonbondedTopology, settings: NonbondedSettings
) -> NonbondedPairs:
    """Build the buffered non-bonded pair list of one model (no state kept).

    Parameters
    ----------
    xyz : (N, 3) float64
    topology : NonbondedTopology
    settings : NonbondedSettings

    Returns
    -------
    NonbondedPairs
        Every non-excluded pair with ``d < r0 + settings.buffer``.
    """
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    cutoff = max_contact_distance(topology, settings) + settings.buffer
    pairs, contact = _nonbonded_pairs_cell_list(
        xyz, cutoff, topology.radius, topology.hbond_type, topology.partner_offsets,
        topology.partners, topology.partner_kind, settings.k_rep, settings.factor_1_4,
        settings.shrink_donor_acceptor, settings.minimum_distance, settings.default_distance,
        settings.buffer)
    return NonbondedPairs(pairs, contact, xyz.shape[0])


class NeighbourList:
    """Buffered non-bonded pair list of one model, rebuilt only when needed.

    Parameters
    ----------
    topology : NonbondedTopology
    settings : NonbondedSettings
        ``settings.buffer`` is the skin; the list is rebuilt when any atom has moved more
        than ``buffer / 2`` since the last build.

    Examples
    --------
    >>> nbl = NeighbourList(packed.nonbonded, packed.nonbonded_settings)  # doctest: +SKIP
    >>> pairs = nbl.update(xyz)            # builds on first call, then only when needed
    """

    def __init__(self, topology: NonbondedTopology, settings: NonbondedSettings) -> None:
        self.topology = topology
        self.settings = settings
        self.n_builds = 0
        self._reference: np.ndarray | None = None
        self._pairs: NonbondedPairs | None = None

    def needs_rebuild(self, xyz: np.ndarray) -> bool:
        """True if never built or some atom moved more than buffer/2 since the build."""
        if self._reference is None or self._reference.shape != np.shape(xyz):
            return True
        half = 0.5 * self.settings.buffer
        return max_displacement_sq(np.ascontiguousarray(xyz, dtype=np.float64),
                                   self._reference) > half * half

    def update(self, xyz: np.ndarray) -> NonbondedPairs:
        """Return a pair list valid for ``xyz``, rebuilding it if needed."""
        if self.needs_rebuild(xyz):
            self.rebuild(xyz)
        return self._pairs

    @property
    def pairs(self) -> NonbondedPairs | None:
        """The current pair list (None before the first build)."""
        return self._pairs

    def rebuild(self, xyz: np.ndarray) -> NonbondedPairs:
        """Rebuild unconditionally around ``xyz``."""
        xyz = np.array(xyz, dtype=np.float64, order="C", copy=True)
        self._pairs = build_nonbonded_pairs(xyz, self.topology, self.settings)
        self._reference = xyz
        self.n_builds += 1
        return self._pairs


class BatchNeighbourList:
    """Buffered pair lists of K models sharing one topology (each model its own list).

    ``update(xyz)`` with xyz (K, N, 3) rebuilds only the models that moved more than
    ``buffer / 2`` and returns the concatenated :class:`BatchNonbondedPairs`.
    """

    def __init__(self, topology: NonbondedTopology, settings: NonbondedSettings) -> None:
        self.topology = topology
        self.settings = settings
        self.n_builds = 0  # per-model builds, summed
        self._reference: np.ndarray | None = None
        self._lists: list[NonbondedPairs] = []
        self._batch: BatchNonbondedPairs | None = None

    def stale_models(self, xyz: np.ndarray) -> np.ndarray:
        """Indices of the models whose list must be rebuilt for ``xyz`` (K, N, 3)."""
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        if self._reference is None or self._reference.shape != xyz.shape:
            return np.arange(xyz.shape[0])
        half = 0.5 * self.settings.buffer
        return np.flatnonzero(max_displacement_sq_batch(xyz, self._reference) > half * half)

    def update(self, xyz: np.ndarray) -> BatchNonbondedPairs:
        """Return pair lists valid for every model of ``xyz``, rebuilding stale ones."""
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        stale = self.stale_models(xyz)
        if len(stale) == 0 and self._batch is not None:
            return self._batch
        if self._reference is None or self._reference.shape != xyz.shape:
            self._reference = xyz.copy()
            self._lists = [None] * xyz.shape[0]
        for k in stale:
            self._reference[k] = xyz[k]
            self._lists[k] = build_nonbonded_pairs(xyz[k], self.topology, self.settings)
            self.n_builds += 1
        sizes = np.array([len(p) for p in self._lists], dtype=np.int64)
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        self._batch = BatchNonbondedPairs(
            pairs=np.ascontiguousarray(np.concatenate([p.pairs for p in self._lists])),
            contact=np.ascontiguousarray(np.concatenate([p.contact for p in self._lists])),
            offsets=offsets,
            n_atoms=xyz.shape[1],
        )
        return self._batch
