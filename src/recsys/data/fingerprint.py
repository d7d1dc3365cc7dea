"""SHA-256 of the raw input, computed on a background thread.

Hashing costs a third as much CPU as parsing; started first, it overlaps the interpreter's
start-up and the parse. Every step releases the GIL (readinto, sha256 on large buffers), so
the hash never holds up the main thread. Only the standard library is imported here so that
it can start before polars loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading

BLOCK_BYTES = 16 << 20


class FileFingerprint:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = path
        self._sha256 = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recsys-fingerprint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Lowest CPU priority for this thread only (Linux threads are tasks): the hash then
        # fills idle cycles (start-up, single-threaded stages) instead of slowing the parse.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            digest = hashlib.sha256()
            buffer = bytearray(BLOCK_BYTES)
            with open(self.path, "rb", buffering=0) as fh:
                while size := fh.readinto(buffer):
                    digest.update(memoryview(buffer)[:size])
            self._sha256 = digest.hexdigest()
        except BaseException as err:  # surfaced to the caller by sha256
            self._error = err

    @property
    def sha256(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sha256


def start_fingerprint(path: str | os.PathLike[str]) -> FileFingerprint | None:
    """Begin hashing if the path is a readable regular file; errors are reported later."""
    try:
        if os.path.isfile(path) and os.access(path, os.R_OK):
            return FileFingerprint(path)
    except OSError:
        pass
    return None
