"""The feedback log: `POST /feedback` events as JSON lines, on disk before they are acknowledged.

Each worker process writes its own files, `$RECSYS_FEEDBACK_DIR/events-<UTC start>-<host>-
<pid>-<seq>.jsonl` (created exclusively, so no two writers ever share one), and starts the next
when a batch would take the open one past `$RECSYS_FEEDBACK_MAX_BYTES`. A batch is complete
lines written with one `write` and made durable with `fdatasync`; only then are its requests
answered, so an accepted event survives SIGTERM, a crash or a restart. A reader takes every
`*.jsonl` in the directory and ignores a last line without a newline (a write in progress, or
one torn by a crash): `read_events`.

Hand-written because no library offers this: logging handlers and JSON-lines writers flush but
never fsync, and an fsync per request would cap the endpoint at the disk's sync rate. Group
commit (one writer task per process batching whatever requests arrived while the previous
write was in flight) makes one fsync serve many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DIR_ENV = "RECSYS_FEEDBACK_DIR"
MAX_BYTES_ENV = "RECSYS_FEEDBACK_MAX_BYTES"
DEFAULT_DIR = "feedback"
DEFAULT_MAX_BYTES = 64 * 2**20
# The keys of every line, in this order.
FIELDS = (
    "type", "user_id", "item_id", "request_id", "timestamp", "model_version", "served_by",
    "received_at",
)  # fmt: skip


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_events(events: Iterable[Mapping[str, Any]], served_by: str, received_at: int) -> bytes:
    """The log lines of validated events: a missing `request_id` is null, a missing `timestamp`
    the receive time, a missing `model_version` the serving one (`served_by`)."""
    lines = []
    for event in events:
        line = {
            "type": event["type"],
            "user_id": event["user_id"],
            "item_id": event["item_id"],
            "request_id": event.get("request_id"),
            "timestamp": _given(event.get("timestamp"), received_at),
            "model_version": _given(event.get("model_version"), served_by),
            "served_by": served_by,
            "received_at": received_at,
        }
        lines.append(json.dumps(line, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def read_events(directory: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete event in the log, file by file in name order."""
    for path in sorted(Path(directory).glob("*.jsonl")):
        data = path.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            yield json.loads(line)


def settings(environ: Mapping[str, str] = os.environ) -> tuple[Path, int]:
    """The log's directory and rotation size from the environment."""
    directory = Path(environ.get(DIR_ENV) or DEFAULT_DIR)
    value = environ.get(MAX_BYTES_ENV, str(DEFAULT_MAX_BYTES))
    try:
        max_bytes = int(value)
    except ValueError:
        max_bytes = 0
    if max_bytes < 1:
        raise ValueError(f"{MAX_BYTES_ENV} must be a positive number of bytes, got '{value}'")
    return directory, max_bytes


def writable_dir(directory: Path) -> Path:
    """`directory` as an absolute path, created if missing, once a file was made in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise RuntimeError(
            f"{DIR_ENV}={directory}: cannot write feedback events there ({err}); point it at "
            "a writable directory"
        ) from err
    return directory.absolute()


class FeedbackLog:
    """One process's append-only event files, written by a single task in group commits."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = writable_dir(directory)
        self.max_bytes = max_bytes
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"
        self._origin = f"{host}-{os.getpid()}"
        self._seq = 0
        self._fd: int | None = None
        self._size = 0  # bytes durably written to the open file
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # One thread: writes stay in order, and the event loop serves requests during fsync.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="feedback-log")

    async def append(self, lines: bytes) -> None:
        """Return once `lines` (complete JSON lines) are durably written; raise the OSError
        that kept them from being written."""
        if self._closing:
            raise RuntimeError("the feedback log is closed")
        done = asyncio.get_running_loop().create_future()
        self._pending.append((lines, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches())
        self._wake.set()
        await done

    async def aclose(self) -> None:
        """Write what is pending, then close the open file (on shutdown)."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_file)
        self._thread.shutdown()

    async def _write_batches(self) -> None:
        """Each batch is every request that arrived while the previous one was being written."""
        loop = asyncio.get_running_loop()
        while self._pending or not self._closing:
            if not self._pending:
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._pending = self._pending, []
            error: BaseException | None = None
            try:
                await loop.run_in_executor(self._thread, self._write, b"".join(b for b, _ in batch))
            except Exception as err:  # handed to the waiting requests, which report it
                error = err
            for _, done in batch:
                if done.done():  # the request was cancelled meanwhile
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _write(self, data: bytes) -> None:
        if self._fd is not None and self._size and self._size + len(data) > self.max_bytes:
            self._close_file()
        if self._fd is None:
            self._open_next()
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
        except OSError:
            # Cut the failed batch off and leave the file: the next batch starts a new one, so
            # a fragment that could not be cut is a last line, which readers ignore.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            self._close_file()
            raise
        self._size += len(data)

    def _open_next(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)  # it may have been removed meanwhile
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        while True:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.directory / f"events-{stamp}-{self._origin}-{self._seq:04d}.jsonl"
            self._seq += 1
            try:
                self._fd = os.open(path, flags, 0o666)
                break
            except FileExistsError:  # an earlier process with this pid, the same second
                continue
        self._size = 0
        _fsync_dir(self.directory)  # the new name survives a crash too

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
