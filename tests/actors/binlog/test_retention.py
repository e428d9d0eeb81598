"""Retention keeps the archived binlog files a replay from the oldest kept daily point needs, removes older ones
(listed like points, audited), and leaves the index to the archiver while one runs."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from actors.actions.retention import prune
from actors.binlog.index import ArchivedFile, ArchiveIndex, ServerIdentity, load_index, save_index
from actors.binlog.retention import REQUEST, archive_lock, take_request
from core import locks
from core.config import Settings
from core.manifest import ComponentRecord
from core.points import Storage

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
SERVER = ServerIdentity(server_id=1, gtid_domain=0, sequence_start="binlog.000001")


def archive_of(settings: Settings, count: int) -> ArchiveIndex:
    index = ArchiveIndex()
    folder = settings.layout.private("mysql_binlog")
    for n in range(1, count + 1):
        name, data = f"binlog.{n:06d}", f"events of file {n}".encode()
        (folder / name).write_bytes(data)
        index.put(ArchivedFile(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                               first_event=T0 + timedelta(days=n - 1), last_event=T0 + timedelta(days=n),
                               complete=n < count, server=SERVER))
    save_index(settings.layout, index)
    return index


def daily_point(storage: Storage, day: int, binlog_file: str) -> None:
    at = T0 + timedelta(days=day - 1)
    point = storage.new_point(["mysql"], at=at)
    point.save_record(ComponentRecord(component="mysql", status="ok", started_at=at, finished_at=at + timedelta(minutes=5),
                                      details={"binlog": {"file": binlog_file, "position": 4}}))


def setup(tmp_path) -> tuple[Settings, Storage]:
    storage = Storage(tmp_path / "root").prepare()
    settings = Settings(storage_root=storage.root, retention={"daily": 2, "weekly": 0, "monthly": 0})
    archive_of(settings, 5)
    for day in range(1, 5):
        daily_point(storage, day, f"binlog.{day:06d}")
    return settings, storage


def test_files_older_than_the_oldest_kept_daily_points_coordinates_are_removed_and_listed(tmp_path):
    settings, storage = setup(tmp_path)
    decisions = prune(storage, settings, dry_run=False, now=T0 + timedelta(days=5))
    removed = [d.ref for d in decisions if d.delete and d.ref.startswith("mysql_binlog/")]
    assert removed == ["mysql_binlog/binlog.000001", "mysql_binlog/binlog.000002"]
    assert all("the oldest kept daily point" in d.reason for d in decisions if d.ref in removed)
    assert [entry.name for entry in load_index(settings.layout).files] == [f"binlog.{n:06d}" for n in (3, 4, 5)]
    assert sorted(p.name for p in settings.layout.binlog_archive.glob("binlog.*")) == [
        "binlog.000003", "binlog.000004", "binlog.000005"]
    audit = (settings.layout.logs / "audit.log").read_text()
    assert "binlog-prune" in audit


def test_a_dry_run_lists_the_files_and_removes_nothing(tmp_path):
    settings, storage = setup(tmp_path)
    decisions = prune(storage, settings, dry_run=True, now=T0 + timedelta(days=5))
    assert [d.ref for d in decisions if d.ref.startswith("mysql_binlog/")] == [
        "mysql_binlog/binlog.000001", "mysql_binlog/binlog.000002"]
    assert len(load_index(settings.layout).files) == 5


def test_while_an_archiver_holds_the_archive_retention_leaves_the_removal_to_it(tmp_path):
    settings, storage = setup(tmp_path)
    with locks.exclusive(archive_lock(settings.layout), "the binlog archive"):
        prune(storage, settings, dry_run=False, now=T0 + timedelta(days=5))
        assert len(load_index(settings.layout).files) == 5
        request = json.loads(settings.layout.state_file(REQUEST).read_text())
        assert request["keep_from"] == "binlog.000003"
        assert take_request(settings.layout)[0] == "binlog.000003"
        assert take_request(settings.layout) is None


def test_without_binlog_coordinates_in_any_kept_point_no_file_goes(tmp_path):
    storage = Storage(tmp_path / "root").prepare()
    settings = Settings(storage_root=storage.root, retention={"daily": 2, "weekly": 0, "monthly": 0})
    archive_of(settings, 3)
    decisions = prune(storage, settings, dry_run=False, now=T0 + timedelta(days=5))
    assert [d for d in decisions if d.ref.startswith("mysql_binlog/")] == []
    assert len(load_index(settings.layout).files) == 3
