"""Atomic outputs: build beside the target, then swap; a failed run never leaves half a result."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError

# A directory holding this file was written by recsys and may be replaced wholesale.
OWNERSHIP_MARKER = "metadata.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Write a file under a temporary name in the same directory, then rename over the target."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    os.chmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would surprise whoever reads the output
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_replaceable_dir(target: Path) -> None:
    """Refuse to replace a directory recsys did not write: a typo must not delete user data."""
    if target.exists() and not target.is_dir():
        raise RecsysError(f"'{target}' exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not (target / OWNERSHIP_MARKER).is_file():
        raise RecsysError(
            f"'{target}' is a non-empty directory that was not written by recsys "
            f"(no {OWNERSHIP_MARKER}); refusing to replace it. Choose an empty or new directory."
        )


def check_writable_parent(target: Path) -> None:
    """Fail before any work if `target` could not be created or replaced."""
    check_replaceable_dir(target)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RecsysError(
            f"cannot create '{target}': '{parent}' is not a writable directory",
            stage="checking the output directory",
        )


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh sibling directory; on success it replaces `target`, on failure it vanishes.

    POSIX cannot rename over a non-empty directory, so the swap is two renames: the old
    output moves aside, the new one moves in, and the old one is deleted. A crash between
    the two renames leaves the previous output intact under `.<name>.old-*`.
    """
    target = Path(target)
    check_replaceable_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        for child in staging.iterdir():
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(staging)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Deterministic, human-readable JSON written atomically."""
    with atomic_file(path, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
        fh.write("\n")
