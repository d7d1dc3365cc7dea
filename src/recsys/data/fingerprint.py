"""SHA-256 and line count of the raw input, computed on a background thread.

Hashing costs about as much CPU as parsing; started first, it overlaps the interpreter's
imports and the parse (hashlib and bytes.count release the GIL on large buffers).
Only the standard library is imported here so that it can start before polars loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading

BLOCK_BYTES = 8 << 20


class FileFingerprint:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = path
        self._sha256 = ""
        self._newlines = 0
        self._ends_with_newline = True
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recsys-fingerprint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Lowest CPU priority for this thread only (Linux threads are tasks): the hash then
        # fills idle cycles (imports, single-threaded stages) instead of slowing the parse.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            digest = hashlib.sha256()
            last = b"\n"
            with open(self.path, "rb") as fh:
                while chunk := fh.read(BLOCK_BYTES):
                    digest.update(chunk)
                    self._newlines += chunk.count(b"\n")
                    last = chunk[-1:]
            self._sha256 = digest.hexdigest()
            self._ends_with_newline = last == b"\n"
        except BaseException as err:  # surfaced to the caller by result()
            self._error = err

    def _result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    @property
    def sha256(self) -> str:
        self._result()
        return self._sha256

    @property
    def lines(self) -> int:
        """Lines in the raw bytes (meaningful for uncompressed files only)."""
        self._result()
        return self._newlines + (not self._ends_with_newline)


def start_fingerprint(path: str | os.PathLike[str]) -> FileFingerprint | None:
    """Begin hashing if the path is a readable regular file; errors are reported later."""
    try:
        if os.path.isfile(path) and os.access(path, os.R_OK):
            return FileFingerprint(path)
    except OSError:
        pass
    return None
