"""One writer per results store: a lock file inside the store while a run writes it.

The lock is ``STORE/.varref.lock``, a small JSON file (pid, host, start time, a random token)
created with ``O_CREAT | O_EXCL``, so of two runs that try at once exactly one succeeds. A new
store gets the lock file before it is renamed into place (see
:meth:`varref.ensemble.results.ResultStore.create`), so it is never visible unlocked. The lock
is removed when the run ends, also on an exception or Ctrl-C; only its owner (same token)
removes it.

A lock left by a run that was killed (SIGKILL, power loss) is *stale*: on the same host, when
its process is gone (or the pid now belongs to a process started later), the next run takes it
over with a warning. A lock from another host cannot be checked from here and is refused, with
the file to delete once that run is known to be dead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from varref.errors import InputError

log = logging.getLogger(__name__)

#: Name of the lock file inside a store.
LOCK_NAME = ".varref.lock"

#: A lock file is written right after it is created; a reader that finds it empty or
#: half-written waits this long (s) for its content before calling it unreadable.
_READ_GRACE_S = 2.0


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid
    from the original process; None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    return stat[stat.rindex(")") + 2:].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:  # a killed process not yet reaped by its parent (a zombie) writes nothing any more
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, "
            f"started {holder.get('started')}")


class StoreLock:
    """The lock of one store, held by this process (make one with :func:`hold`)."""

    def __init__(self, store: Path):
        self.store = Path(store)
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "process_start": _process_start(os.getpid()), "token": uuid.uuid4().hex}

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.store / LOCK_NAME

    def _text(self) -> str:
        return json.dumps(self.info) + "\n"

    def write_into(self, directory: Path) -> None:
        """Put this lock's file into ``directory`` (a new store before it is renamed into
        place; nobody else can see it yet)."""
        (Path(directory) / LOCK_NAME).write_text(self._text())

    def acquire(self) -> None:
        """Take the lock of the existing store, taking over a stale one.

        Raises
        ------
        InputError
            Another live run holds it, or a run on another host does.
        """
        for _ in range(5):  # a takeover race can need another round; never loops forever
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                self._take_over_if_stale(holder)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(self._text())
                handle.flush()
                os.fsync(handle.fileno())
            return
        raise InputError(self.store, f"could not take the lock {self.path} (other runs keep "
                                     "taking it over); try again")

    def _read_holder(self) -> dict:
        deadline = time.monotonic() + _READ_GRACE_S
        while True:
            try:
                holder = json.loads(self.path.read_text())
                if isinstance(holder, dict) and "pid" in holder and "host" in holder:
                    return holder
            except FileNotFoundError:
                return {}  # released meanwhile: try again
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise InputError(self.store, f"locked by an unreadable lock file {self.path}; "
                                             "if no run writes this store, delete that file")
            time.sleep(0.05)

    def _refuse_if_live(self, holder: dict) -> None:
        """Raise unless ``holder``'s lock is stale (or gone)."""
        if not holder:
            return
        here = socket.gethostname()
        if holder["host"] != here:
            raise InputError(self.store, f"locked by another run ({_describe(holder)}); if that "
                             f"run is no longer running, delete {self.path}")
        pid = int(holder["pid"])
        started = holder.get("process_start")
        live = _alive(pid) and (started is None or _process_start(pid) in (None, started))
        if live:
            raise InputError(self.store, f"locked by another run ({_describe(holder)}); wait "
                             f"for it to finish or stop it (a killed run's lock is taken over "
                             f"automatically)")

    def _take_over_if_stale(self, holder: dict) -> None:
        """Remove ``holder``'s lock file if it is stale; raise if it is live."""
        if not holder:
            return
        self._refuse_if_live(holder)
        # rename first: of several runs taking over at once only one moves the file
        grave = self.path.with_name(f"{LOCK_NAME}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(grave.read_text())
        except (OSError, ValueError):
            moved = {}
        if moved.get("token") != holder.get("token"):
            # another run took it over between our read and rename: give its lock back
            try:
                os.link(grave, self.path)
            except FileExistsError:  # and a third one locked meanwhile: cannot be untangled
                grave.unlink()
                raise InputError(self.store, "several runs are taking over this store's stale "
                                             "lock at once; stop all but one and retry") from None
        else:
            log.warning("%s: taking over the lock of a run that is no longer running (%s)",
                        self.store, _describe(holder))
        grave.unlink()

    def release(self) -> None:
        """Remove the lock file if it is still this lock's (never another run's)."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if holder.get("token") == self.info["token"]:
            self.path.unlink()


def lock_holder(store: str | os.PathLike) -> dict | None:
    """The lock of ``store`` as recorded (pid, host, started, ...), or None if unlocked."""
    path = Path(store) / LOCK_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}


def check_not_locked(store: str | os.PathLike) -> None:
    """Raise :class:`InputError` if a live run holds the lock of ``store`` (a cheap early
    check, e.g. before starting a cluster; :func:`hold` is what excludes a second writer).

    Examples
    --------
    >>> check_not_locked("ens.zarr")      # doctest: +SKIP
    """
    lock = StoreLock(Path(store))
    if lock.path.exists():
        lock._refuse_if_live(lock._read_holder())


@contextlib.contextmanager
def hold(store: str | os.PathLike | None, exists: bool) -> Iterator[StoreLock | None]:
    """Hold the write lock of ``store`` for the body of the ``with`` block.

    Parameters
    ----------
    store
        The results store's directory; None (an in-memory run) holds nothing.
    exists
        True for an existing store (locked now); False for a store the body creates with
        :meth:`~varref.ensemble.results.ResultStore.create`, passing it the lock, which puts
        the lock file into the new store before it appears.

    Raises
    ------
    InputError
        The store is locked by another run (named, with how to clear a dead run's lock).

    Examples
    --------
    >>> with hold("ens.zarr", exists=True):      # doctest: +SKIP
    ...     ...                                   # write members
    """
    if store is None:
        yield None
        return
    lock = StoreLock(Path(store))
    if exists:
        lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
