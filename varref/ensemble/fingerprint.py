"""Content hashes of a run's inputs, recorded in its results store and compared on resume.

A resumed run must be the run that made the store: every input that determines a member's
result is reduced to a SHA-256 of its content (not its file name, which may change while the
content does not, or stay while the content changes).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from varref.maps import Map
from varref.model import Model

#: Model fields that are not content: the gemmi template (rebuilt from the arrays) and the
#: file name.
_MODEL_SKIP = frozenset({"structure", "source"})


def _feed(digest, value) -> None:
    """Add ``value`` to ``digest`` unambiguously (type tag, length, content), recursively."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, np.generic)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        digest.update(f"ndarray:{value.dtype.str}:{value.shape};".encode())
        if value.dtype.kind in "OUS":  # strings: their text, not object pointers
            digest.update("\x1f".join(map(str, value.ravel().tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}:{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, dict):
        digest.update(f"dict:{len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, Model):
        fingerprint_fields(digest, value, skip=_MODEL_SKIP)
    elif dataclasses.is_dataclass(value):
        fingerprint_fields(digest, value)
    else:
        # an object with no content we can see: hashing its repr would hash its address
        raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def fingerprint_fields(digest, value, skip: frozenset[str] = frozenset()) -> None:
    """Add a dataclass's fields (except ``skip``) to ``digest``."""
    digest.update(f"{type(value).__name__};".encode())
    for item in dataclasses.fields(value):
        if item.name not in skip:
            digest.update(f"{item.name}=".encode())
            _feed(digest, getattr(value, item.name))


def content_sha256(value) -> str:
    """SHA-256 of a value's content (arrays, scalars, dataclasses such as
    :class:`~varref.restraints.Restraints`, containers of these).

    Examples
    --------
    >>> content_sha256({"a": np.arange(3)}) == content_sha256({"a": np.arange(3)})
    True
    >>> content_sha256(np.arange(3)) == content_sha256(np.arange(3.0))
    False
    """
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def model_sha256(model: Model) -> str:
    """SHA-256 of everything in a model that refinement reads: coordinates, identifiers,
    elements, B, occupancy (not its file name)."""
    return content_sha256(model)


def data_sha256(density: Map) -> str:
    """SHA-256 of a map's values and grid (origin, voxel size)."""
    digest = hashlib.sha256(np.ascontiguousarray(density.data).tobytes())
    for values in (density.origin, density.voxel_size):
        digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _file_sha256(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)


def _url_store_sha256(digest, url: str, array: str) -> None:
    """Add the objects under ``url``/``array`` (names relative to ``url``, then bytes)."""
    from varref.ensemble import urls

    fs, root = urls.filesystem(url)
    try:
        names = sorted(fs.find(f"{root}/{array}"))
        for name in names:
            digest.update(name[len(root):].lstrip("/").encode())
            with fs.open(name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    except Exception as exc:  # noqa: BLE001 - every backend has its own errors
        raise urls.unreachable(url, exc, "map series") from None


def series_sha256(series) -> str:
    """SHA-256 of every frame of a map series and its shared geometry.

    A zarr map series is hashed from its stored (compressed) chunk files and metadata (a
    URL store: its objects, read one at a time, so the client downloads the compressed
    series once), a file series from its map files' bytes, anything else from each frame's
    values: the raw bytes are cheaper than decoding every frame, and any change to them
    changes what a worker reads.
    """
    from varref.ensemble.mapseries import ARRAY_NAME, FileMapSeries, MapSeries

    digest = hashlib.sha256()
    for values in (series.origin, series.voxel_size):
        digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    digest.update(repr(tuple(series.shape)).encode())
    if isinstance(series, MapSeries) and series.is_url:
        _url_store_sha256(digest, series.path, ARRAY_NAME)
    elif isinstance(series, MapSeries):
        root = Path(series.path)
        files = sorted(p for p in (root / ARRAY_NAME).rglob("*") if p.is_file())
        for path in files:
            digest.update(str(path.relative_to(root)).encode())
            _file_sha256(digest, path)
    elif isinstance(series, FileMapSeries):
        for path in series.paths:
            digest.update(b"\x1e")
            _file_sha256(digest, Path(path))
    else:
        for k in range(len(series)):
            digest.update(data_sha256(series.frame(k)).encode())
    return digest.hexdigest()
