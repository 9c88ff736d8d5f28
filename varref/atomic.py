"""Write output files atomically, so a failure never leaves a partial or corrupt file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``destination``; rename it into place on success.

    The temporary file lives in the destination's directory (same filesystem, so the final
    ``os.replace`` is atomic) and keeps the destination's suffix (so writers that choose a
    format from the suffix still work). On any exception it is removed and the destination
    is left untouched.
    """
    destination = Path(destination)
    directory = destination.parent if str(destination.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=destination.suffix or ".tmp", dir=directory
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, destination)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def check_output_path(path: str | os.PathLike, inputs: tuple = (), option: str | None = None) -> Path:
    """Check an output path before any computation: its directory exists and is writable,
    and it is not one of the ``inputs`` (an output must never replace an input).

    Raises
    ------
    InputError
        Naming ``option`` (or the path) and the problem.
    """
    from varref.errors import InputError

    path = Path(path)
    name = option or str(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(name, f"directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(name, f"directory {directory} is not writable")
    if path.is_dir():
        raise InputError(name, f"{path} is a directory")
    resolved = path.resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == resolved:
            raise InputError(name, f"{path} is also an input; choose another output")
    return path
