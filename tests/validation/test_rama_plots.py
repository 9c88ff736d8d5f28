"""The numpy/zlib PNG writer and the Ramachandran plots."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from varref.validation.plots import (FAVOURED_COLOUR, OUTLIER_COLOUR, WHITE, encode_png,
                                     write_ramachandran_plots)


def decode_png(data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    """Minimal reader for the files encode_png writes (8-bit RGB, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, text = 8, b"", {}
    width = height = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        payload = data[position + 8:position + 8 + length]
        crc = struct.unpack(">I", data[position + 8 + length:position + 12 + length])[0]
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", payload[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += payload
        elif kind == b"tEXt":
            key, value = payload.split(b"\0", 1)
            text[key.decode()] = value.decode("latin-1")
        position += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(height, width, 3), text


def test_png_round_trip():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    decoded, text = decode_png(encode_png(image, {"Title": "test"}))
    assert np.array_equal(decoded, image) and text == {"Title": "test"}


def test_ramachandran_plot_shows_contours_and_marks_outliers(tmp_path, rama_tables):
    rows = [
        {"phi": -63.0, "psi": -43.0, "rama_class": "general", "status": "favoured"},
        {"phi": 120.0, "psi": 120.0, "rama_class": "general", "status": "outlier"},
        {"phi": 80.0, "psi": 10.0, "rama_class": "glycine", "status": "favoured"},
    ]
    paths = write_ramachandran_plots(rows, rama_tables, tmp_path)
    assert [p.name for p in paths] == ["ramachandran_general.png", "ramachandran_glycine.png"]
    image, text = decode_png(paths[0].read_bytes())
    assert image.shape == (720, 720, 3)
    assert "1 outliers" in text["Title"]
    # outlier square at phi = psi = 120 (scale 2: column (120+180)*2, row (180-120)*2)
    assert tuple(image[120, 600]) == OUTLIER_COLOUR
    # alpha-helix region is favoured, phi = psi = 0 is empty (away from any point)
    assert tuple(image[(180 + 30) * 2 + 1, (180 - 80) * 2 + 1]) == FAVOURED_COLOUR
    assert tuple(image[(180 - 10) * 2 + 1, (180 + 10) * 2 + 1]) == WHITE


def test_plots_without_reference_data_have_no_contours(tmp_path):
    rows = [{"phi": -63.0, "psi": -43.0, "rama_class": "general", "status": "favoured"}]
    (path,) = write_ramachandran_plots(rows, None, tmp_path)
    image, text = decode_png(path.read_bytes())
    assert "no Top8000 contours" in text["Description"]
    assert not np.any(np.all(image == FAVOURED_COLOUR, axis=-1))
