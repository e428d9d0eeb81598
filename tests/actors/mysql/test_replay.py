"""Replaying an archived binlog into a scratch database (actors/mysql/replay.py), against the test bed's MariaDB:
rows are written with the session's TIMESTAMP set to T-1, T and T+1 (the binlog events carry that time), the
server's log is copied byte-exact, and the copy is replayed up to T as a restore's temporary account."""
from __future__ import annotations

import contextlib
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

import actors.mysql.replay as replay_module
from actors.mysql.replay import BinlogGuard, replay, stop_bound
from actors.mysql.sandbox import allow_replay, client_host, load_account
from core import clients
from core.component import PermanentError
from core.config import Settings
from core.pitr import ReplayPlan
from testbed import settings as testbed_settings
from tests.actors.mysql.binlog_copy import coordinates, copy_binlog, remove_binlog_copies
from tests.conftest import unique

# An hour ago: the binlog is the test bed's, shared, and an event stamped in the future would look to every
# other replay of that stretch like the end of its moment.
T = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def write_at(cur, moment: datetime, sql: str) -> None:
    cur.execute("SET TIMESTAMP = %s", (int(moment.timestamp()),))
    cur.execute(sql)
    cur.execute("SET TIMESTAMP = DEFAULT")


@pytest.fixture(autouse=True)
def no_binlog_copies_left(tmp_path):
    yield
    remove_binlog_copies(tmp_path)


@pytest.fixture
def written(testbed_env, mysql_database, tmp_path):
    yield from write_rows(testbed_settings.mysql(testbed_env, database=mysql_database), tmp_path)


@pytest.fixture
def written_in_docker(testbed_env, docker_mysql_database, tmp_path):
    cfg = testbed_settings.mysql(testbed_env, database=docker_mysql_database, docker=True)
    yield from write_rows(cfg, tmp_path, Settings(storage_root=tmp_path / "b", mysql=cfg,
                                                 docker={"host": testbed_env["DOCKER_HOST"]}))


@pytest.fixture
def written_across_files(testbed_env, mysql_database, tmp_path):
    yield from write_rows(testbed_settings.mysql(testbed_env, database=mysql_database), tmp_path, rotate=True)


def write_rows(cfg, tmp_path, settings: Settings | None = None, rotate: bool = False):
    """Rows 1..3 written at T-1, T and T+1 in the test's database (and one in another database meanwhile);
    a scratch database holding the table as it was before them; the binlog copied from before the writes.
    `rotate`: the server starts a new binlog file after each second's writes, so the replay crosses files."""
    mysql_database = cfg.database
    other, scratch = unique("t_oth_"), mysql_database + "__restore_abc123"
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        for database in (mysql_database, scratch):
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute(f"CREATE DATABASE `{other}`")
        cur.execute(f"CREATE TABLE `{other}`.x (id INT PRIMARY KEY)")
        start = coordinates(cfg)
        conn.select_db(mysql_database)
        for number, second in enumerate((-1, 0, 1), start=1):
            moment = datetime.fromtimestamp(T.timestamp() + second, UTC)
            write_at(cur, moment, f"INSERT INTO t VALUES ({number}, 'at {second:+d}')")
            conn.select_db(other)
            write_at(cur, moment, f"INSERT INTO x VALUES ({number})")
            conn.select_db(mysql_database)
            if second == 0:
                write_at(cur, T, "UPDATE t SET v = 'changed at T' WHERE id = 1")
            if rotate:
                cur.execute("FLUSH BINARY LOGS")
    files = copy_binlog(cfg, start, tmp_path / "archive")
    settings = settings or Settings(storage_root=tmp_path / "b", mysql=cfg)
    yield settings, ReplayPlan(files, start, T, mysql_database), scratch, other
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        for database in (scratch, other):
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")


def rows(cfg, database: str, table: str = "t") -> list[tuple]:
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{database}`.`{table}` ORDER BY 1")
        return [tuple(row) for row in cur.fetchall()]


def run_replay(settings: Settings, plan: ReplayPlan, scratch: str):
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn:
        with load_account(conn, scratch, client_host(conn)) as account:
            return replay(settings, conn, plan, scratch, account)


def test_the_stop_bound_is_the_next_whole_second_in_utc():
    local = datetime(2026, 11, 30, 15, 32, 7, 900000).astimezone()
    assert stop_bound(local) == local.replace(microsecond=0).astimezone(UTC) + timedelta(seconds=1)


def test_replay_applies_every_row_committed_at_or_before_t_and_none_after(written):
    settings, plan, scratch, other = written
    result = run_replay(settings, plan, scratch)
    assert rows(settings.mysql, scratch) == [(1, "changed at T"), (2, "at +0")]
    assert result.transactions >= 3
    # The live database and the other database are as they were: nothing replayed into them twice.
    assert rows(settings.mysql, plan.database) == [(1, "changed at T"), (2, "at +0"), (3, "at +1")]
    assert rows(settings.mysql, other, "x") == [(1,), (2,), (3,)]


def test_a_replay_that_crosses_from_one_binlog_file_to_the_next_applies_the_rows_up_to_t(written_across_files):
    """The decoder's rotate and checkpoint comments name the next file ('binlog.0000NN'): they pass the guard."""
    settings, plan, scratch, _ = written_across_files
    assert len(plan.files) >= 3
    run_replay(settings, plan, scratch)
    assert rows(settings.mysql, scratch) == [(1, "changed at T"), (2, "at +0")]


def test_in_docker_mode_the_containers_own_decoder_and_client_replay_the_archive(written_in_docker):
    settings, plan, scratch, other = written_in_docker
    run_replay(settings, plan, scratch)
    assert rows(settings.mysql, scratch) == [(1, "changed at T"), (2, "at +0")]
    assert rows(settings.mysql, other, "x") == [(1,), (2,), (3,)]


def test_a_logged_statement_that_reaches_another_database_is_refused_by_the_server(written_in_docker):
    settings, plan, scratch, other = written_in_docker  # the container's server logs MIXED: statements
    with clients.mysql_connection(settings.mysql, database=plan.database) as conn, conn.cursor() as cur:
        start = coordinates(settings.mysql)
        write_at(cur, T, f"INSERT INTO `{other}`.x VALUES (4)")
    files = copy_binlog(settings.mysql, start, plan.files[0].parent.parent / "reaching")
    with pytest.raises(PermanentError, match="reaches beyond the scratch database"):
        run_replay(settings, ReplayPlan(files, start, T, plan.database), scratch)
    assert rows(settings.mysql, other, "x") == [(1,), (2,), (3,), (4,)]


def last_gtid_sequence(cfg) -> int:
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        return max(int(gtid.split("-")[2]) for gtid in cur.fetchone()[0].split(",") if gtid.startswith("0-"))


def test_replay_gives_the_replayed_transactions_the_servers_next_gtids_not_the_archived_ones(written):
    settings, plan, scratch, _ = written
    before = last_gtid_sequence(settings.mysql)
    run_replay(settings, plan, scratch)
    assert last_gtid_sequence(settings.mysql) > before  # an archived GTID (older) would be the last one logged


def decoded(plan: ReplayPlan, rewrite_to: str | None) -> bytes:
    args = ["mariadb-binlog", "--no-defaults", f"--start-position={plan.start.position}",
            f"--database={plan.database}"]
    if rewrite_to:
        args.append(f"--rewrite-db={plan.database}->{rewrite_to}")
    return subprocess.run([*args, *map(str, plan.files)], check=True, capture_output=True).stdout


def guarded(text: bytes, scratch: str, chunk: int = 1 << 20) -> bytes:
    guard = BinlogGuard(scratch)
    return b"".join(guard.feed(text[at:at + chunk]) for at in range(0, len(text), chunk)) + guard.finish()


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_the_guard_passes_row_events_for_the_scratch_database_however_the_text_is_cut(written, chunk):
    _, plan, scratch, _ = written
    text = decoded(plan, scratch)
    out = guarded(text, scratch, chunk)
    assert out.count(b"BINLOG '") == text.count(b"BINLOG '") >= 4
    assert b"gtid_seq_no" in text and b"gtid_seq_no" not in out and b"server_id=" not in out


def test_a_row_event_for_another_database_is_refused_before_the_client_sees_it(written):
    _, plan, scratch, _ = written
    with pytest.raises(PermanentError, match=f"row event for database '{plan.database}', not the scratch"):
        guarded(decoded(plan, None), scratch)


@pytest.mark.parametrize("line", [b"BINLOG @binlog_fragment_0, @binlog_fragment_1/*!*/;\n",
                                  b"SELECT 1; binlog 'AAAA'/*!*/;\n"])
def test_a_binlog_statement_the_decoder_does_not_write_is_refused(line):
    with pytest.raises(PermanentError, match="naming BINLOG that the decoder does not write"):
        guarded(b"START TRANSACTION\n/*!*/;\n" + line, "scratch")


def test_only_the_named_databases_events_are_replayed_and_a_corrupt_file_fails_the_replay(written, tmp_path):
    settings, plan, scratch, _ = written
    wrong = ReplayPlan(plan.files, plan.start, plan.stop_at, "not_" + plan.database)
    run_replay(settings, wrong, scratch)  # no event of that database: nothing to apply
    assert rows(settings.mysql, scratch) == []
    corrupt = tmp_path / "corrupt" / plan.files[0].name
    corrupt.parent.mkdir()
    data = bytearray(plan.files[0].read_bytes())
    data[plan.start.position + 40] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(PermanentError, match="could not decode the archived binlog|replaying the archived binlog"):
        run_replay(settings, ReplayPlan((corrupt,), plan.start, plan.stop_at, plan.database), scratch)
    assert rows(settings.mysql, scratch) == []


def test_an_event_of_another_database_stamped_after_t_does_not_end_the_replay(written, tmp_path):
    settings, plan, scratch, other = written
    with clients.mysql_connection(settings.mysql, database=other) as conn, conn.cursor() as cur:
        start = coordinates(settings.mysql)
        write_at(cur, T + timedelta(seconds=30), "INSERT INTO x VALUES (10)")  # another application, ahead
        conn.select_db(plan.database)
        write_at(cur, T, "INSERT INTO t VALUES (20, 'at T, logged later')")
    files = copy_binlog(settings.mysql, start, tmp_path / "ahead")
    run_replay(settings, ReplayPlan(files, start, T, plan.database), scratch)
    assert rows(settings.mysql, scratch) == [(20, "at T, logged later")]


def test_a_big_statement_is_fed_in_pieces_that_each_repeat_the_table_map(written, tmp_path, monkeypatch):
    settings, plan, scratch, _ = written
    with clients.mysql_connection(settings.mysql, database=plan.database) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, 'x')", [(n,) for n in range(100, 2100)])
        conn.commit()
        run_replay(settings, ReplayPlan(plan.files, plan.start, T, plan.database), scratch)
        start = coordinates(settings.mysql)
        write_at(cur, T, "UPDATE t SET v = 'updated at T' WHERE id >= 100")  # one statement, ~100 KB of rows
    files = copy_binlog(settings.mysql, start, tmp_path / "big")
    with clients.mysql_connection(settings.mysql, database=scratch) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, 'x')", [(n,) for n in range(100, 2100)])
        conn.commit()
    monkeypatch.setattr(replay_module, "STATEMENT_BYTES", 8 << 10)
    text = decoded(ReplayPlan(files, start, T, plan.database), scratch)
    assert len(guarded(text, scratch).split(b"BINLOG '")) > 5  # cut into pieces of about 8 KiB
    run_replay(settings, ReplayPlan(files, start, T, plan.database), scratch)
    with clients.mysql_connection(settings.mysql, database=scratch) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE v = 'updated at T'")
        assert cur.fetchone()[0] == 2000


def test_the_temporary_account_may_run_binlog_statements_only_once_the_replay_allows_it(written):
    settings, plan, scratch, _ = written
    text = decoded(plan, scratch).decode()
    statement = text[text.index("BINLOG '"):text.index("'/*!*/;") + 1]  # the format-description event
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn:
        with load_account(conn, scratch, client_host(conn)) as account:
            as_account = settings.mysql.model_copy(update={"user": account.user, "password": account.password})
            with contextlib.closing(clients.mysql_connection(as_account, database=scratch)) as loader:
                with pytest.raises(Exception, match="1227|BINLOG REPLAY|denied"), loader.cursor() as cur:
                    cur.execute(statement)  # what a planted BINLOG line in a dump would try
            allow_replay(conn, account)
            with contextlib.closing(clients.mysql_connection(as_account, database=scratch)) as loader:
                with loader.cursor() as cur:
                    cur.execute(statement)
