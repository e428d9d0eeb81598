"""A MySQL restore with a replay plan (RestoreRequest.replay): the point's dump loaded into the scratch database,
the archived binlog replayed to the moment, counted, then swapped in; a replay that fails swaps nothing.
The tiny seeded RAGFlow, its backup and the checks are tests/actors/mysql/test_restore.py's."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from actors.mysql.restore import restore, restore_kb
from core import clients
from core.component import PermanentError
from core.pitr import BinlogCoordinates, ReplayPlan
from tests.actors.mysql.binlog_copy import copy_binlog, remove_binlog_copies
from tests.actors.mysql.test_restore import Live, backup, checksums, execute, make_live, scratch_left


@pytest.fixture(autouse=True)
def no_binlog_copies_left(tmp_path):
    yield
    remove_binlog_copies(tmp_path)


@pytest.fixture
def live(testbed_env, tmp_path) -> Iterator[Live]:
    yield from make_live(testbed_env, tmp_path)


def after_the_point(live: Live, tmp_path):
    """A point, then one knowledge base renamed and a table added after it; the binlog copied from the point."""
    point, record = backup(live)
    start = BinlogCoordinates(record.details["binlog"]["file"], record.details["binlog"]["position"])
    kb = live.dataset.kb_ids[0]
    execute(live.cfg, live.database, f"UPDATE knowledgebase SET name = 'renamed after the point' WHERE id = '{kb}'",
            "CREATE TABLE added_after (id INT PRIMARY KEY)", "INSERT INTO added_after VALUES (1), (2)")
    files = copy_binlog(live.cfg, start, tmp_path / "archive")
    plan = ReplayPlan(files, start, datetime.now(UTC) + timedelta(seconds=1), live.database)
    return point, record, plan, kb


def test_a_restore_with_a_replay_brings_back_what_was_written_after_the_point(live, tmp_path):
    point, record, plan, kb = after_the_point(live, tmp_path)
    wanted = checksums(live.cfg, live.database)
    execute(live.cfg, live.database, "DROP TABLE added_after", "DELETE FROM document")
    result = restore(live.settings, point, record, replay_plan=plan)
    assert result.ok and result.replayed_to == plan.stop_at
    assert result.found["added_after"] == 2 and result.expected == result.found
    assert checksums(live.cfg, live.database) == wanted
    assert scratch_left(live) == set()


def test_a_knowledge_base_restore_with_a_replay_takes_its_rows_as_replayed(live, tmp_path):
    point, record, plan, kb = after_the_point(live, tmp_path)
    execute(live.cfg, live.database, f"UPDATE knowledgebase SET name = 'damaged' WHERE id = '{kb}'")
    result = restore_kb(live.settings, point, record, kb, replay_plan=plan)
    assert result.ok
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM knowledgebase WHERE id = %s", (kb,))
        assert cur.fetchone()[0] == "renamed after the point"
        cur.execute("SELECT COUNT(*) FROM added_after")
        assert cur.fetchone()[0] == 2  # one knowledge base's rows: the rest of the database is as it is now


def test_a_replay_that_fails_leaves_the_live_database_untouched(live, tmp_path):
    point, record, plan, _ = after_the_point(live, tmp_path)
    data = bytearray(plan.files[0].read_bytes())
    data[plan.start.position + 40] ^= 0xFF  # a damaged archive copy: its checksum no longer matches
    corrupt = tmp_path / "corrupt" / plan.files[0].name
    corrupt.parent.mkdir()
    corrupt.write_bytes(bytes(data))
    execute(live.cfg, live.database, "DELETE FROM task")
    before = checksums(live.cfg, live.database)
    with pytest.raises(PermanentError, match="could not decode the archived binlog|replaying the archived binlog"):
        restore(live.settings, point, record, replay_plan=ReplayPlan((corrupt,), plan.start, plan.stop_at,
                                                                     plan.database))
    assert checksums(live.cfg, live.database) == before
    assert scratch_left(live) == set()


def test_a_replay_plan_for_another_database_than_the_dump_is_refused_before_any_change(live, tmp_path):
    point, record, plan, _ = after_the_point(live, tmp_path)
    before = checksums(live.cfg, live.database)
    with pytest.raises(PermanentError, match="the replay plan is for database other_db"):
        restore(live.settings, point, record, replay_plan=ReplayPlan(plan.files, plan.start, plan.stop_at, "other_db"))
    assert checksums(live.cfg, live.database) == before and scratch_left(live) == set()
