"""The binlog archive's index: read back as untrusted input, spans and gaps, replay plans re-checked on disk."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone

import pytest

from actors.binlog.index import ArchivedFile, ArchiveIndex, RecordedGap, ServerIdentity, load_index, save_index
from core.component import PermanentError
from core.layout import Layout
from core.pitr import ArchiveGap, BinlogCoordinates

T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=timezone.utc)
SERVER = ServerIdentity(server_id=1, server_uuid="3e11fa47-71ca-11e1-9e33-c80aa9429562", sequence_start="binlog.000001")


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def archive(layout: Layout, index: ArchiveIndex, name: str, first: float, last: float, complete: bool = True,
            server: ServerIdentity = SERVER, content: bytes | None = None) -> ArchivedFile:
    """Put a file into the archive folder and the index, as the archive component does."""
    data = content if content is not None else f"binlog bytes of {name}".encode()
    folder = layout.private("mysql_binlog")
    (folder / name).write_bytes(data)
    entry = ArchivedFile(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                         first_event=minutes(first), last_event=minutes(last), complete=complete, server=server)
    index.put(entry)
    return entry


@pytest.fixture
def layout(tmp_path) -> Layout:
    (tmp_path / "root").mkdir()
    return Layout(tmp_path / "root")


def test_an_archive_that_does_not_exist_yet_has_an_empty_index(layout):
    index = load_index(layout)
    assert index.files == [] and index.spans() == []


def test_the_index_is_written_atomically_and_read_back_the_same(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    archive(layout, index, "binlog.000002", 10, 12, complete=False)
    path = save_index(layout, index)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    assert load_index(layout) == index


def test_consecutive_files_of_one_server_make_one_span(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    archive(layout, index, "binlog.000002", 10, 20, complete=False)
    assert [(s.start, s.end) for s in index.spans()] == [(minutes(0), minutes(20))]


def test_a_quiet_live_file_is_restorable_up_to_the_moment_it_was_last_in_sync(layout):
    index = ArchiveIndex()
    live = archive(layout, index, "binlog.000001", 0, 5, complete=False)
    index.put(live.model_copy(update={"synced_at": minutes(30)}))
    assert index.spans()[0].end == minutes(30)


def test_a_missing_file_number_splits_the_spans(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    archive(layout, index, "binlog.000003", 20, 30)
    assert [(s.start, s.end) for s in index.spans()] == [(minutes(0), minutes(10)), (minutes(20), minutes(30))]


def test_a_server_reinitialised_is_a_gap_not_a_continuation(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    reset = SERVER.model_copy(update={"sequence_start": "binlog.000002"})
    archive(layout, index, "binlog.000002", 10, 20, server=reset)
    assert len(index.spans()) == 2


def test_a_recorded_gap_splits_the_spans_even_between_consecutive_numbers(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    archive(layout, index, "binlog.000002", 15, 20)
    assert index.record_gap(RecordedGap(before="binlog.000002", reason="purged", detected_at=minutes(16)))
    assert not index.record_gap(RecordedGap(before="binlog.000002", reason="purged", detected_at=minutes(17)))
    assert len(index.spans()) == 2


def test_a_replay_plan_names_the_files_from_the_start_file_up_to_the_one_reaching_the_moment(layout):
    index = ArchiveIndex()
    for n in range(1, 5):
        archive(layout, index, f"binlog.00000{n}", 10 * (n - 1), 10 * n)
    folder = layout.binlog_archive
    plan = index.replay_plan(BinlogCoordinates("binlog.000002", 4), minutes(25), "rag_flow", folder)
    assert plan.files == (folder / "binlog.000002", folder / "binlog.000003")
    assert plan.start == BinlogCoordinates("binlog.000002", 4) and plan.database == "rag_flow"
    assert plan.stop_at == minutes(25)


def test_a_replay_plan_refuses_to_cross_a_gap_and_names_the_nearest_restorable_moments(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    archive(layout, index, "binlog.000003", 20, 30)
    with pytest.raises(ArchiveGap) as refused:
        index.replay_plan(BinlogCoordinates("binlog.000001", 4), minutes(25), "rag_flow", layout.binlog_archive)
    assert (refused.value.before, refused.value.after) == (minutes(10), minutes(20))


def test_a_replay_plan_refuses_a_moment_past_the_newest_archived_event(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10, complete=False)
    with pytest.raises(ArchiveGap) as refused:
        index.replay_plan(BinlogCoordinates("binlog.000001", 4), minutes(11), "rag_flow", layout.binlog_archive)
    assert (refused.value.before, refused.value.after) == (minutes(10), None)


def test_a_replay_plan_refuses_a_start_file_the_archive_never_got(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000005", 20, 30)
    with pytest.raises(ArchiveGap, match="binlog.000004 the point starts from is not in the archive") as refused:
        index.replay_plan(BinlogCoordinates("binlog.000004", 4), minutes(25), "rag_flow", layout.binlog_archive)
    assert refused.value.after is None or refused.value.after == minutes(20)


def test_a_replay_plan_refuses_an_archived_file_changed_on_disk(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10, content=b"0123456789")
    (layout.binlog_archive / "binlog.000001").write_bytes(b"0123456780")
    with pytest.raises(ArchiveGap, match="does not match its checksum"):
        index.replay_plan(BinlogCoordinates("binlog.000001", 4), minutes(5), "rag_flow", layout.binlog_archive)


def test_a_replay_plan_refuses_an_archived_file_that_is_missing(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10)
    (layout.binlog_archive / "binlog.000001").unlink()
    with pytest.raises(ArchiveGap, match="is missing although the index lists it"):
        index.replay_plan(BinlogCoordinates("binlog.000001", 4), minutes(5), "rag_flow", layout.binlog_archive)


def test_a_live_file_that_grew_after_the_index_was_written_is_checked_up_to_the_indexed_size(layout):
    index = ArchiveIndex()
    archive(layout, index, "binlog.000001", 0, 10, complete=False, content=b"events so far")
    with open(layout.binlog_archive / "binlog.000001", "ab") as grown:
        grown.write(b" and more")
    plan = index.replay_plan(BinlogCoordinates("binlog.000001", 4), minutes(5), "rag_flow", layout.binlog_archive)
    assert plan.files == (layout.binlog_archive / "binlog.000001",)


@pytest.mark.parametrize("damage", [
    b"not json",
    b"[]",
    b'{"format": 2, "files": [], "gaps": []}',
    b'{"format": 1, "files": [{"name": "../../etc/passwd", "size": 1, "sha256": "' + b"0" * 64 + b'", '
    b'"complete": true, "server": {"server_id": 1, "sequence_start": "binlog.000001"}}], "gaps": []}',
    b'{"format": 1, "files": [{"name": "binlog.000001", "size": "1", "sha256": "' + b"0" * 64 + b'", '
    b'"complete": true, "server": {"server_id": 1, "sequence_start": "binlog.000001"}}], "gaps": []}',
])
def test_a_damaged_index_is_refused_naming_the_file_and_the_fix(layout, damage):
    folder = layout.private("mysql_binlog")
    (folder / "index.json").write_bytes(damage)
    with pytest.raises(PermanentError, match=r"index\.json is damaged .*Move it aside"):
        load_index(layout)


def test_an_index_that_is_a_symlink_is_never_followed(layout, tmp_path):
    folder = layout.private("mysql_binlog")
    (tmp_path / "elsewhere.json").write_text('{"format": 1}')
    os.symlink(tmp_path / "elsewhere.json", folder / "index.json")
    with pytest.raises(PermanentError, match="symbolic link"):
        load_index(layout)
