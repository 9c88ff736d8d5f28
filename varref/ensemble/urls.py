"""Stores given as URLs (``s3://``, ``gs://``, ``https://``, ``memory://``, ``file://``).

A map series may live in object storage, so that workers on a cluster without a shared
filesystem read their frames directly from it (``docs/distributed.md``). Anything with
``://`` is a URL: zarr opens it through fsspec (:class:`zarr.storage.FsspecStore`) and this
module turns fsspec's failures into one-line :class:`~varref.errors.InputError` messages: a
backend that is not installed (``s3fs``, ``gcsfs``, ``aiohttp``: fsspec names the package),
an unknown scheme, a store that cannot be reached. Credentials come from fsspec's usual
sources (environment variables, ``~/.aws``, ``~/.config/fsspec``); nothing here handles them.

Results stores stay local directories (:func:`require_local`): the client alone writes them,
with a lock file, fsync and atomic renames that object storage does not offer.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

from varref.errors import InputError


def is_url(location: str | PathLike | None) -> bool:
    """True for a URL (``scheme://...``), False for a local path.

    Examples
    --------
    >>> is_url("s3://bucket/maps.zarr"), is_url("maps.zarr"), is_url("/data/maps.zarr")
    (True, False, False)
    """
    return location is not None and "://" in str(location)


def scheme(url: str) -> str:
    """The URL's scheme (``"s3"`` for ``s3://bucket/x``)."""
    return str(url).split("://", 1)[0]


def _backend_problem(url: str, exc: BaseException) -> InputError:
    """A one-line error for a URL whose fsspec filesystem cannot be made."""
    if isinstance(exc, ImportError):
        return InputError(url, f"reading {scheme(url)}:// URLs needs an fsspec backend that is "
                          f"not installed: {str(exc).strip()} with pip (fsspec backends "
                          "are not varref dependencies)")
    if isinstance(exc, ValueError) and "Protocol not known" in str(exc):
        return InputError(url, f"unknown URL scheme {scheme(url)}:// (fsspec knows e.g. s3, "
                          "gs, https, file, memory)")
    return InputError(url, f"cannot reach the store: {type(exc).__name__}: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of ``url``; synchronous API.

    Raises
    ------
    InputError
        Missing backend package (named) or unknown scheme.
    """
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec comes with dask
        raise InputError(url, "URLs need the fsspec package (pip install fsspec)") from exc
    try:
        fs, path = url_to_fs(str(url))
    except Exception as exc:  # noqa: BLE001 - ImportError, ValueError, backend-specific
        raise _backend_problem(str(url), exc) from None
    return fs, path.rstrip("/")


def zarr_store(url: str, read_only: bool):
    """A :class:`zarr.storage.FsspecStore` for ``url`` (errors as :func:`filesystem`)."""
    from zarr.storage import FsspecStore

    try:
        return FsspecStore.from_url(str(url), read_only=read_only)
    except Exception as exc:  # noqa: BLE001 - ImportError, ValueError, backend-specific
        raise _backend_problem(str(url), exc) from None


def unreachable(url: str, exc: BaseException, what: str = "store") -> InputError:
    """The one-line error for a failed access to ``url``."""
    return InputError(url, f"cannot read the {what}: {type(exc).__name__}: {_one_line(exc)}")


def exists(url: str, name: str = "zarr.json") -> bool:
    """True if object ``name`` exists under ``url`` (a zarr store's root metadata by default).

    Raises
    ------
    InputError
        The store cannot be reached (connection refused, permission denied, ...).
    """
    fs, path = filesystem(url)
    try:
        return bool(fs.exists(f"{path}/{name}"))
    except Exception as exc:  # noqa: BLE001 - every backend has its own errors
        raise unreachable(url, exc) from None


def remove(url: str) -> None:
    """Delete everything under ``url`` (nothing if it does not exist)."""
    fs, path = filesystem(url)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def size(url: str) -> int:
    """Total bytes stored under ``url``."""
    fs, path = filesystem(url)
    return int(fs.du(path, total=True))


def require_local(location: str | PathLike | None, option: str) -> None:
    """Refuse a URL where only a local directory will do (a results store).

    Raises
    ------
    InputError
        One line naming ``option``: results stores are written by the client with a lock
        file and atomic renames, which object storage does not offer; a cluster does not
        need them shared.
    """
    if is_url(location):
        raise InputError(option, f"{location}: a results store must be a local directory (the "
                         "client writes it, with a lock file and atomic renames that object "
                         "storage does not offer; workers never touch it): write it locally "
                         "and copy it to object storage afterwards")
