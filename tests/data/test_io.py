"""Atomic outputs: a failed run leaves the previous result byte-identical."""

from __future__ import annotations

import hashlib
import os

import pytest

from recsys.data.fingerprint import FileFingerprint
from recsys.data.io import atomic_dir, atomic_file
from recsys.errors import RecsysError


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as stage:
        (stage / "metadata.json").write_text("{}")
        (stage / "a").write_text("1")
    with atomic_dir(target) as stage:
        (stage / "metadata.json").write_text('{"v": 2}')
    assert snapshot(target) == {"metadata.json": b'{"v": 2}'}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left behind


def test_atomic_dir_keeps_old_output_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as stage:
        (stage / "metadata.json").write_text("{}")
    before = snapshot(target)
    with pytest.raises(RuntimeError), atomic_dir(target) as stage:
        (stage / "metadata.json").write_text("half")
        raise RuntimeError("boom")
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    target = tmp_path / "home"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(RecsysError, match="not written by recsys"), atomic_dir(target):
        pass
    assert (target / "thesis.tex").read_text() == "precious"


def test_atomic_file(tmp_path):
    target = tmp_path / "f.txt"
    with atomic_file(target, "w") as fh:
        fh.write("one")
    with pytest.raises(ValueError), atomic_file(target, "w") as fh:
        fh.write("two")
        raise ValueError
    assert target.read_text() == "one"
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fingerprint_hashes_the_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_bytes(b"one\n\ntwo" * 10_000_000)  # several blocks
    assert FileFingerprint(target).sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
