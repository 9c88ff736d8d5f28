"""Ramachandran plots as PNG, drawn with numpy and zlib only (matplotlib is not a
dependency of varref).

Each plot is a 360 x 360 raster, one pixel per degree (phi to the right, psi up, both
-180..180), scaled by an integer factor: the class's Top8000 favoured region (grid value
>= 2 %) in mid blue, the allowed region (>= the class's allowed threshold) in pale blue,
grid lines every 60 degrees and the phi = 0 / psi = 0 axes in grey, and the model's
residues as small squares — black when favoured or allowed, red when outliers. There is
no text (no font renderer): the file's ``tEXt`` chunks carry the title and the axis
convention.
"""

from __future__ import annotations

import struct
import zlib
from os import PathLike
from pathlib import Path

import numpy as np

from varref.atomic import atomic_path
from varref.validation.ramachandran import (ALLOWED_THRESHOLD, ALLOWED_THRESHOLD_OTHER,
                                            FAVOURED_THRESHOLD, OUTLIER, RAMA_CLASSES)
from varref.validation.tables import PercentileTable

WHITE = (255, 255, 255)
ALLOWED_COLOUR = (214, 230, 245)
FAVOURED_COLOUR = (140, 185, 225)
GRID_COLOUR = (190, 190, 190)
AXIS_COLOUR = (120, 120, 120)
POINT_COLOUR = (0, 0, 0)
OUTLIER_COLOUR = (220, 20, 20)


def encode_png(rgb: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """A PNG file (8-bit RGB, no interlace) of an (height, width, 3) uint8 image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, channels = rgb.shape
    if channels != 3:
        raise ValueError("expected an (h, w, 3) RGB array")

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    # every scanline starts with filter type 0 (none)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1)
    parts = [b"\x89PNG\r\n\x1a\n",
             chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        parts.append(chunk(b"tEXt", key.encode("latin-1") + b"\0"
                           + value.encode("latin-1", "replace")))
    parts.append(chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def ramachandran_image(phi: np.ndarray, psi: np.ndarray, outlier: np.ndarray,
                       table: PercentileTable | None, allowed_threshold: float,
                       scale: int = 2, point_half_size: int = 2) -> np.ndarray:
    """RGB image (360*scale square) of one Ramachandran class; see module docstring.

    Without a table (no reference data) the background is left white.
    """
    image = np.empty((360, 360, 3), dtype=np.uint8)
    image[:] = WHITE
    if table is not None:
        # pixel (row, column) covers phi = column - 180 + 0.5, psi = 179.5 - row
        centres = np.arange(360) - 179.5
        phi_grid, psi_grid = np.meshgrid(centres, centres[::-1])
        values = table.value_at(np.stack([phi_grid.ravel(), psi_grid.ravel()], axis=1))
        values = values.reshape(360, 360)
        image[values >= allowed_threshold] = ALLOWED_COLOUR
        image[values >= FAVOURED_THRESHOLD] = FAVOURED_COLOUR
    for line in range(0, 360, 60):
        image[line, :] = GRID_COLOUR
        image[:, line] = GRID_COLOUR
    image[180, :] = AXIS_COLOUR
    image[:, 180] = AXIS_COLOUR
    image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    size = 360 * scale
    columns = np.clip(((np.asarray(phi) + 180.0) * scale).astype(int), 0, size - 1)
    rows = np.clip(((180.0 - np.asarray(psi)) * scale).astype(int), 0, size - 1)
    # outliers last so they stay visible on top
    for is_outlier in (False, True):
        colour = OUTLIER_COLOUR if is_outlier else POINT_COLOUR
        for row, column in zip(rows[outlier == is_outlier], columns[outlier == is_outlier]):
            image[max(row - point_half_size, 0):row + point_half_size + 1,
                  max(column - point_half_size, 0):column + point_half_size + 1] = colour
    return image


def write_ramachandran_plots(rama_rows: list[dict], tables: dict[str, PercentileTable] | None,
                             directory: str | PathLike, prefix: str = "ramachandran"
                             ) -> list[Path]:
    """One PNG per Ramachandran class that has residues (general always written).

    Parameters
    ----------
    rama_rows
        Per-residue rows of :func:`varref.validation.ramachandran.ramachandran_analysis`
        (``phi``, ``psi``, ``rama_class``, ``status``).
    tables
        The Top8000 grids (None: points on a white background).
    directory
        Output directory (created if needed).

    Returns
    -------
    The paths written, ``<prefix>_<class>.png``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    classes = [c for c in RAMA_CLASSES
               if c == "general" or any(row["rama_class"] == c for row in rama_rows)]
    classes += sorted({row["rama_class"] for row in rama_rows} - set(classes))
    written = []
    for rama_class in classes:
        members = [row for row in rama_rows if row["rama_class"] == rama_class]
        phi = np.array([row["phi"] for row in members], dtype=float)
        psi = np.array([row["psi"] for row in members], dtype=float)
        outlier = np.array([row["status"] == OUTLIER for row in members], dtype=bool)
        table = tables.get(rama_class) if tables else None
        allowed = ALLOWED_THRESHOLD.get(rama_class, ALLOWED_THRESHOLD_OTHER)
        image = ramachandran_image(phi, psi, outlier, table, allowed)
        n_out = int(outlier.sum())
        text = {
            "Title": f"Ramachandran plot, {rama_class}: {len(members)} residues, "
                     f"{n_out} outliers",
            "Description": "x: phi -180..180 (left to right), y: psi -180..180 (bottom to "
                           "top), grid every 60 deg; dark blue favoured (>= 2 %), pale blue "
                           f"allowed (>= {allowed * 100:g} %), red squares outliers"
                           + ("" if table is not None else "; no Top8000 contours "
                              "(no reference data)"),
            "Software": "varref",
        }
        path = directory / f"{prefix}_{rama_class}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(encode_png(image, text))
        written.append(path)
    return written
