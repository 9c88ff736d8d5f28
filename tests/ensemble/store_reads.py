"""Record what zarr reads from a store: every key and its stored (compressed) size.

Patches ``get`` of zarr's local and fsspec stores, so it sees the reads of every thread of
this process (a Dask cluster started with ``processes=False`` included), and forbids partial
reads, which would read chunks behind the record's back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class StoreReads:
    """(key, stored bytes) of every read, in order."""

    reads: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def chunk_keys(self, array: str = "maps") -> list[str]:
        """Keys of the chunks of ``array`` read (relative to the group), in order."""
        return [_relative(key, array) for key, _ in self.reads if f"{array}/c/" in key]

    def frame_chunks(self, frame: int, array: str = "maps") -> set[str]:
        """Chunk keys of one frame read (a chunk key is ``maps/c/frame/iz/iy/ix``)."""
        return {key for key in self.chunk_keys(array) if key.split("/")[2] == str(frame)}

    def stored_bytes(self, keys: set[str] | None = None, array: str = "maps") -> int:
        """Stored bytes read for chunks of ``array`` (only ``keys`` if given)."""
        return sum(size for key, size in self.reads if f"{array}/c/" in key
                   and (keys is None or _relative(key, array) in keys))

    def clear(self) -> None:
        with self.lock:
            self.reads.clear()


def _relative(key: str, array: str) -> str:
    return key[key.index(f"{array}/c/"):]


def record_store_reads(monkeypatch) -> StoreReads:
    """Start recording (undone by ``monkeypatch`` at the end of the test)."""
    from zarr.storage import FsspecStore, LocalStore

    record = StoreReads()

    def no_partial_reads(*args, **kwargs):
        raise AssertionError("unexpected partial read")

    for cls in (LocalStore, FsspecStore):
        original = cls.get

        async def recording_get(self, key, prototype=None, byte_range=None, _original=original):
            value = await _original(self, key, prototype, byte_range)
            with record.lock:
                record.reads.append((key, 0 if value is None else len(value)))
            return value

        monkeypatch.setattr(cls, "get", recording_get)
        monkeypatch.setattr(cls, "get_partial_values", no_partial_reads)
    return record
