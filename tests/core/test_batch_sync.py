"""core/batch_sync.py: a batch of new files is made durable with one syncfs, and still an fsync per file."""
from __future__ import annotations

import os

import pytest

from core import batch_sync


def record_syncs(monkeypatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    real_fsync = os.fsync
    monkeypatch.setattr(batch_sync.os, "fsync", lambda fd: (calls.append(("fsync", fd)), real_fsync(fd))[1])
    if batch_sync.SYNCFS is not None:
        real_syncfs = batch_sync.SYNCFS
        monkeypatch.setattr(batch_sync, "SYNCFS", lambda fd: (calls.append(("syncfs", fd)), real_syncfs(fd))[1])
    return calls


def test_every_file_of_a_batch_is_fsynced_after_one_syncfs(tmp_path, monkeypatch):
    files = [tmp_path / f"{n}.part" for n in range(6)]
    for path in files:
        path.write_bytes(b"x" * 100)
    calls = record_syncs(monkeypatch)
    batch_sync.fsync_files(files)
    assert [kind for kind, _ in calls if kind == "fsync"] == ["fsync"] * len(files)
    if batch_sync.SYNCFS is not None:
        assert calls[0][0] == "syncfs" and [kind for kind, _ in calls].count("syncfs") == 1


def test_a_few_files_are_fsynced_one_by_one(tmp_path, monkeypatch):
    files = [tmp_path / f"{n}.part" for n in range(batch_sync.MIN_BATCH - 1)]
    for path in files:
        path.write_bytes(b"x")
    calls = record_syncs(monkeypatch)
    batch_sync.fsync_files(files)
    assert [kind for kind, _ in calls] == ["fsync"] * len(files)


def test_a_missing_file_fails_the_batch_and_closes_what_was_opened(tmp_path):
    present = tmp_path / "a.part"
    present.write_bytes(b"x")
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        batch_sync.fsync_files([present, tmp_path / "gone.part"])
    assert len(os.listdir("/proc/self/fd")) == before
