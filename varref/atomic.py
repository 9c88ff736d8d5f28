"""Write output files atomically, so a failure never leaves a partial or corrupt file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
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


def check_output_path(path: str | os.PathLike, inputs: Sequence = (), option: str | None = None, *,
                      overwrite: bool = False, store: bool = False) -> Path:
    """Check one output path before any computation.

    The directory it goes into exists and is writable; it is not one of the ``inputs``, not
    inside one (a zarr store is a directory) and does not contain one; and it does not exist
    yet unless ``overwrite`` (files only: an existing store is the caller's business, since
    ``--resume`` continues it).

    Parameters
    ----------
    path
        The output file or, with ``store=True``, the output directory store.
    inputs
        Paths read by the run (None entries are ignored).
    option
        The option that named the output, for the message (default: the path).
    overwrite
        Allow replacing an existing file (``--overwrite``).
    store
        ``path`` is a directory store (zarr) rather than a file.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        Naming ``option`` (or the path) and the problem.
    """
    from varref.errors import InputError

    name = option or str(path)
    if not str(path).strip():
        raise InputError(name, "empty output path")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(name, f"output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(name, f"output directory {directory} is not writable")
    resolved = path.resolve()
    for item in inputs:
        if item is None or not str(item):
            continue
        source = Path(item).resolve()
        same = source == resolved or (
            # a hard link is the same file under another name
            path.exists() and source.exists() and os.path.samefile(path, source))
        if same:
            raise InputError(name, f"{path} is also an input; choose another output")
        if resolved.is_relative_to(source) or source.is_relative_to(resolved):
            raise InputError(name, f"{path} overlaps the input {item}; choose another output")
    if not store:
        if path.is_dir():
            raise InputError(name, f"{path} is a directory, expected a file name")
        if path.exists() and not overwrite:
            raise InputError(name, f"{path} exists; use --overwrite to replace it")
    elif path.exists() and not path.is_dir():
        raise InputError(name, f"{path} exists and is not a store directory")
    return path


def check_outputs(outputs: Sequence[tuple[str | os.PathLike | None, str]], inputs: Sequence = (),
                  overwrite: bool = False) -> list[Path]:
    """:func:`check_output_path` for every ``(path, option)`` pair (None paths skipped), and
    no two outputs the same file.

    Returns
    -------
    list of Path
        The checked paths, in order (None entries dropped).
    """
    from varref.errors import InputError

    checked: dict[Path, str] = {}
    for path, option in outputs:
        if path is None:
            continue
        checked_path = check_output_path(path, inputs, option, overwrite=overwrite)
        key = checked_path.resolve()
        if key in checked:
            raise InputError(option, f"{path} is also the output of {checked[key]}")
        checked[key] = option
    return [Path(p) for p, _ in outputs if p is not None]


def prefixed_path(prefix: str | os.PathLike, name: str) -> Path:
    """The file ``name`` under an output prefix: ``PREFIX_name``, or ``PREFIX/name`` when the
    prefix is an existing directory or ends with a path separator (the convention of every
    ``--plots PREFIX`` option). A ``.png`` suffix on the prefix is dropped, so
    ``--plots spread.png`` writes ``spread_NAME.png``."""
    text = str(prefix)
    if text.lower().endswith(".png"):  # a file name given as the prefix: use its stem
        text = text[:-4]
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return Path(text) / name
    return Path(f"{text}_{name}")
