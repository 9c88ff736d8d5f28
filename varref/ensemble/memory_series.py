"""A map series held in memory (a list of :class:`Map` objects on one grid), for notebooks.

Unlike the file and zarr series it carries map data, so every task that reads a frame
receives the whole list: fine for the small series of a notebook, not for 3DVA-sized ones
(write those with ``varref maps-to-zarr``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from varref.ensemble.mapseries import MapSeriesBase
from varref.errors import InputError
from varref.maps import Map


class MemoryMapSeries(MapSeriesBase):
    """Maps already in memory, checked to share grid shape, origin, voxel size and cell."""

    def __init__(self, maps: Sequence[Map], resolution: float | None = None,
                 components: Sequence[str] | None = None) -> None:
        maps = list(maps)
        if not maps:
            raise InputError("maps", "no maps given")
        first = maps[0]
        for k, density in enumerate(maps[1:], start=1):
            if (density.data.shape != first.data.shape
                    or not np.allclose(density.origin, first.origin, atol=1e-4)
                    or not np.allclose(density.voxel_size, first.voxel_size, rtol=1e-5)
                    or not np.allclose(density.cell_angles, first.cell_angles, atol=1e-3)):
                raise InputError(f"maps[{k}]", "grid, origin, voxel size or cell differs from maps[0]")
        if components is not None and len(components) != len(maps):
            raise InputError("components", f"{len(components)} components for {len(maps)} maps")
        self._maps = maps
        self._resolution = resolution
        self._components = None if components is None else [str(c) for c in components]

    @property
    def components(self) -> list[str] | None:
        return None if self._components is None else list(self._components)

    def __len__(self) -> int:
        return len(self._maps)

    def frame(self, k: int) -> Map:
        return self._maps[self._index(k)]

    @property
    def voxel_size(self) -> np.ndarray:
        return self._maps[0].voxel_size.copy()

    @property
    def origin(self) -> np.ndarray:
        return self._maps[0].origin.copy()

    @property
    def cell_angles(self) -> np.ndarray:
        return self._maps[0].cell_angles.copy()

    @property
    def resolution(self) -> float | None:
        return self._resolution

    @property
    def sources(self) -> list[str]:
        return [m.source or f"map {k}" for k, m in enumerate(self._maps)]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self._maps), *self._maps[0].data.shape)
