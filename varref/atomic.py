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
