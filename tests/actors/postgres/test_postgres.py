"""The PostgreSQL component against the test bed's real server (and its container): a tiny RAGFlow seeded into a
database of the test's own, backed up with run_component, verified, damaged and restored."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from actors.actions.restore import execute, make_plan, rollback_last
from actors.actions.runs import run_component
from actors.components import COMPONENTS
from actors.postgres import COMPONENT
from actors.postgres.backup import ARTIFACT, archive_rows
from actors.postgres.load import scratch_name, sweep_leftovers
from actors.postgres.restore import KB_TABLES, kb_rows, restore, restore_kb
from actors.postgres.session import connect, dump_tools
from core.atomic import sha256_of
from core.checks import CorruptArtifact
from core.component import NothingChanged, PermanentError
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point, Storage
from testbed import settings as testbed_settings
from testbed.postgres_seed import PgDataset


@dataclass
class Live:
    settings: Settings
    dataset: PgDataset

    @property
    def database(self) -> str:
        return self.dataset.database


def make_live(testbed_env: dict[str, str], tmp_path: Path, dataset: PgDataset, docker: bool = False) -> Iterator[Live]:
    cfg = testbed_settings.postgres(testbed_env, database=dataset.database, docker=docker)
    yield Live(Settings(storage_root=tmp_path / "b", postgres=cfg, docker={"host": testbed_env["DOCKER_HOST"]}),
               dataset)
    with closing(connect(cfg, "postgres")) as admin:  # scratch, old and drill databases named after the seeded one
        for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                     (dataset.database + "\\_\\_%",)).fetchall():
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def live(testbed_env, tmp_path, pg_dataset) -> Iterator[Live]:
    yield from make_live(testbed_env, tmp_path, pg_dataset)


@pytest.fixture
def docker_live(testbed_env, tmp_path, docker_pg_dataset) -> Iterator[Live]:
    yield from make_live(testbed_env, tmp_path, docker_pg_dataset, docker=True)


def backup(live: Live) -> tuple[Point, ComponentRecord]:
    point = Storage(live.settings.storage_root).new_point(["postgres"])
    record = run_component(live.settings, point, "postgres")
    assert record is not None and record.status == "ok", record and record.error
    return point, record


def execute_sql(live: Live, *statements: str, database: str | None = None) -> None:
    with closing(connect(live.settings.postgres, database)) as conn:
        for statement in statements:
            conn.execute(statement)


def checksums(live: Live, database: str | None = None) -> dict[str, str]:
    """Every table's rows as text, in order, hashed: equal checksums, equal rows."""
    with closing(connect(live.settings.postgres, database)) as conn:
        names = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {name: conn.execute(sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                                           "FROM {} t").format(sql.Identifier(name))).fetchone()[0] for name in names}


def databases_like(live: Live, marker: str) -> list[str]:
    with closing(connect(live.settings.postgres, "postgres")) as admin:
        return [row[0] for row in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                (f"{live.database}%{marker}%",)).fetchall()]


def loading_roles(live: Live) -> list[str]:
    with closing(connect(live.settings.postgres, "postgres")) as admin:
        return [row[0] for row in admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE "
                                                "'ragflow\\_backup\\_load\\_%'").fetchall()]


# ---------------------------------------------------------------- backup and verify


def test_the_component_is_registered_and_enabled_by_a_postgres_section_which_turns_mysql_off(live):
    assert COMPONENTS["postgres"] is COMPONENT
    assert COMPONENT.enabled(live.settings) and not live.settings.mysql.enabled


def test_a_backup_records_rows_per_table_the_versions_and_a_checksummed_archive(live):
    point, record = backup(live)

    assert record.counts == live.dataset.row_counts
    assert [a.name for a in record.artifacts] == [ARTIFACT]
    assert (point.folder / ARTIFACT).read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert record.details["server_version"].startswith("15.") and "pg_dump" in record.details["pg_dump_version"]
    assert record.details["mode"] == "tcp"
    assert COMPONENT.verify(live.settings, point, record) == []


def test_verify_finds_an_archive_whose_rows_differ_from_the_manifest(live):
    point, record = backup(live)
    record.counts["document"] += 1

    problems = COMPONENT.verify(live.settings, point, record)

    assert any("document" in p and "differ from the manifest" in p for p in problems)


def test_verify_finds_a_damaged_archive(live):
    point, record = backup(live)
    path = point.folder / ARTIFACT
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    assert any("SHA-256" in p for p in COMPONENT.verify(live.settings, point, record))


def test_a_docker_mode_backup_dumps_with_the_containers_own_pg_dump(docker_live):
    point, record = backup(docker_live)

    assert record.details["mode"] == "docker"
    assert record.counts == docker_live.dataset.row_counts
    assert COMPONENT.verify(docker_live.settings, point, record) == []


def test_a_docker_mode_backup_and_verify_read_the_archive_with_the_containers_pg_restore(docker_live, monkeypatch,
                                                                                        tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-client-here"))  # no local pg_restore to fall back on
    point, record = backup(docker_live)

    assert record.counts == docker_live.dataset.row_counts
    assert COMPONENT.verify(docker_live.settings, point, record) == []
    path = point.path("postgres_dump.pgdump")
    with open(path, "r+b") as archive:  # a cut-off archive is caught by the container's pg_restore too
        archive.truncate(archive.seek(0, 2) // 2)
    with dump_tools(docker_live.settings) as tools, pytest.raises(CorruptArtifact) as cut:
        archive_rows(path, docker_live.settings.postgres, tools)
    assert "pg_restore in container rbtb-postgres-1 cannot read it" in str(cut.value)


# ---------------------------------------------------------------- restore


def test_a_dropped_database_comes_back_with_every_row_and_the_same_data(live):
    point, record = backup(live)
    before = checksums(live)
    execute_sql(live, f'DROP DATABASE "{live.database}" WITH (FORCE)', database="postgres")

    result = restore(live.settings, point, record)

    assert result.ok and result.target == live.database and result.found == live.dataset.row_counts
    assert checksums(live) == before
    assert databases_like(live, "__restore_") == databases_like(live, "__old_") == []
    assert loading_roles(live) == []


def test_functions_and_triggers_in_an_archive_are_left_out_of_the_restore(live, caplog):
    execute_sql(live, "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$ BEGIN NEW.name := 'stamped'; RETURN NEW; END $$",
                "CREATE TRIGGER kb_stamp BEFORE INSERT ON knowledgebase FOR EACH ROW EXECUTE FUNCTION stamp()",
                "CREATE VIEW kb_names AS SELECT name FROM knowledgebase")
    point, record = backup(live)

    result = restore(live.settings, point, record)

    assert result.ok
    with closing(connect(live.settings.postgres)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'stamp'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'kb_stamp'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_views WHERE viewname = 'kb_names'").fetchone()[0] == 0
    assert "left out of the restore" in caplog.text and "FUNCTION" in caplog.text


def test_a_damaged_database_is_swapped_for_the_backup_and_open_connections_are_ended(live):
    point, record = backup(live)
    before = checksums(live)
    execute_sql(live, "DELETE FROM task", "UPDATE knowledgebase SET name = 'damaged'")
    idle = connect(live.settings.postgres)  # RAGFlow's pool, say

    result = restore(live.settings, point, record)

    assert result.ok and checksums(live) == before
    assert idle.closed or idle.broken or _fails(idle)
    assert databases_like(live, "__old_") == []


def _fails(conn) -> bool:
    try:
        conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - terminated by the swap
        return True
    return False


def test_the_previous_database_is_kept_when_asked_and_the_scratch_one_never_is(live):
    point, record = backup(live)
    execute_sql(live, "DELETE FROM document")

    result = restore(live.settings, point, record, keep_previous=True)

    assert result.previous_database in databases_like(live, "__old_")
    with closing(connect(live.settings.postgres, result.previous_database)) as old:
        assert old.execute("SELECT count(*) FROM document").fetchone()[0] == 0
    assert databases_like(live, "__restore_") == []


def test_one_knowledge_base_comes_back_and_the_others_keep_their_changes(live):
    point, record = backup(live)
    lost, kept = live.dataset.kb_ids[0], live.dataset.kb_ids[1]
    with closing(connect(live.settings.postgres)) as conn:
        lost_before = {t: sorted(ids) for t, ids in kb_rows(conn, lost).items()}
        lost_rows_before = _kb_full_rows(conn, lost)
        conn.execute("DELETE FROM task WHERE doc_id IN (SELECT id FROM document WHERE kb_id = %s)", (lost,))
        conn.execute("DELETE FROM file2document WHERE document_id IN (SELECT id FROM document WHERE kb_id = %s)", (lost,))
        conn.execute("DELETE FROM document WHERE kb_id = %s", (lost,))
        conn.execute("DELETE FROM knowledgebase WHERE id = %s", (lost,))
        conn.execute("UPDATE knowledgebase SET name = 'changed after the backup' WHERE id = %s", (kept,))

    result = restore_kb(live.settings, point, record, lost)

    assert result.ok and result.found == {t: len(lost_before[t]) for t in KB_TABLES}
    with closing(connect(live.settings.postgres)) as conn:
        assert _kb_full_rows(conn, lost) == lost_rows_before
        assert conn.execute("SELECT name FROM knowledgebase WHERE id = %s", (kept,)).fetchone()[0] == \
            "changed after the backup"


def _kb_full_rows(conn, kb_id: str) -> dict[str, list[tuple]]:
    ids = kb_rows(conn, kb_id)
    return {t: conn.execute(sql.SQL("SELECT * FROM {} WHERE id = ANY(%s) ORDER BY id").format(sql.Identifier(t)),
                            (sorted(ids[t]),)).fetchall() for t in KB_TABLES}


def test_a_drill_restores_into_a_scratch_database_checks_it_and_drops_it(live):
    point, _ = backup(live)

    ok, said = COMPONENT.drill(live.settings, point, "drilltok")

    assert ok and "dropped" in said
    assert databases_like(live, "__drill_") == []


def test_a_restore_through_the_actions_takes_a_safety_point_and_rolls_back_to_it(live):
    point, _ = backup(live)
    execute_sql(live, "UPDATE knowledgebase SET name = 'changed after the backup'")
    changed = checksums(live)

    done = execute(live.settings, make_plan(live.settings, point.ref, components=["postgres"]))
    assert done["safety"] is not None and checksums(live) != changed

    rollback_last(live.settings)

    assert checksums(live) == changed


def test_a_docker_mode_point_restores_with_the_same_data(docker_live):
    point, record = backup(docker_live)
    before = checksums(docker_live)
    execute_sql(docker_live, "DELETE FROM file2document")

    result = restore(docker_live.settings, point, record)

    assert result.ok and checksums(docker_live) == before


def test_a_docker_mode_restore_loads_with_the_containers_pg_restore_and_only_ragflows_entries(docker_live, monkeypatch,
                                                                                             tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-client-here"))  # no local pg_restore to fall back on
    execute_sql(docker_live, "CREATE FUNCTION stamp() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "CREATE VIEW document_ids AS SELECT id FROM document")
    point, record = backup(docker_live)
    before = checksums(docker_live)
    execute_sql(docker_live, "DELETE FROM file2document")

    result = restore(docker_live.settings, point, record)

    assert result.ok and checksums(docker_live) == before
    with closing(connect(docker_live.settings.postgres)) as conn:  # the filtered list was read in the container
        assert conn.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                            "WHERE n.nspname = 'public'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_views WHERE schemaname = 'public'").fetchone()[0] == 0
    assert databases_like(docker_live, "__restore_") == [] and loading_roles(docker_live) == []


def test_an_archive_the_containers_pg_restore_cannot_read_is_refused_before_anything_changes(docker_live):
    point, record = backup(docker_live)
    before = checksums(docker_live)
    path = point.path(ARTIFACT)
    path.write_bytes(b"PGDMP" + b"\xff" * 4096)  # as if written so, checksums and all
    [artifact] = record.artifacts
    artifact.bytes, artifact.sha256 = path.stat().st_size, sha256_of(path)

    with pytest.raises(PermanentError, match=f"pg_restore in container rbtb-postgres-1 cannot read {ARTIFACT} of {point.ref}"):
        restore(docker_live.settings, point, record)

    assert checksums(docker_live) == before
    assert databases_like(docker_live, "__restore_") == [] and loading_roles(docker_live) == []


def test_a_docker_mode_restore_of_one_knowledge_base_needs_no_local_client(docker_live, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-client-here"))
    point, record = backup(docker_live)
    before = checksums(docker_live)
    kb = docker_live.dataset.kb_ids[0]
    execute_sql(docker_live, f"DELETE FROM task WHERE doc_id IN (SELECT id FROM document WHERE kb_id = '{kb}')")

    result = restore_kb(docker_live.settings, point, record, kb)

    assert result.ok and checksums(docker_live) == before


def test_an_account_that_may_not_create_roles_is_told_what_a_restore_needs_and_nothing_changes(live):
    point, record = backup(live)
    execute_sql(live, "DELETE FROM task")
    before = checksums(live)
    weak, password = f"{live.database}_weak", "weak-pw-1"
    execute_sql(live, f"CREATE ROLE {weak} LOGIN PASSWORD '{password}'", database="postgres")
    try:
        cfg = live.settings.postgres.model_copy(update={"user": weak, "password": password})
        settings = live.settings.model_copy(update={"postgres": cfg})

        with pytest.raises(NothingChanged) as refused:
            restore(settings, point, record)

        assert "may not create roles" in str(refused.value) and f"ALTER ROLE {weak} CREATEROLE" in str(refused.value)
        assert checksums(live) == before
    finally:
        execute_sql(live, f"DROP ROLE IF EXISTS {weak}", database="postgres")


def test_a_database_owned_by_ragflows_own_account_comes_back_owned_by_it_and_readable_by_it(live):
    owner, password = f"{live.database}_app", "app-pw-1"
    execute_sql(live, f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'", f"GRANT {owner} TO CURRENT_USER",
                f'ALTER DATABASE "{live.database}" OWNER TO {owner}', database="postgres")
    with closing(connect(live.settings.postgres)) as conn:  # table by table: REASSIGN OWNED would take databases too
        for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table), sql.Identifier(owner)))
    try:
        point, record = backup(live)

        restore(live.settings, point, record)

        app = live.settings.postgres.model_copy(update={"user": owner, "password": password})
        with closing(connect(app)) as conn:
            assert conn.execute("SELECT count(*) FROM knowledgebase").fetchone()[0] == len(live.dataset.kb_ids)
            assert {row[0] for row in conn.execute("SELECT DISTINCT tableowner FROM pg_tables "
                                                   "WHERE schemaname = 'public'")} == {owner}
    finally:
        execute_sql(live, f'DROP DATABASE IF EXISTS "{live.database}" WITH (FORCE)', f"DROP ROLE IF EXISTS {owner}",
                    database="postgres")


def test_a_knowledge_base_the_point_does_not_hold_is_refused_before_anything_changes(live):
    point, record = backup(live)

    assert COMPONENT.restore_problems(live.settings, RestoreRequest(point=point, record=record, kb=live.dataset.kb_ids[0])) == []
    [problem] = COMPONENT.restore_problems(live.settings, RestoreRequest(point=point, record=record, kb="f" * 32))
    assert f"knowledge base {'f' * 32} is not in {point.ref}" in problem


def test_in_docker_mode_the_knowledge_base_check_reads_the_point_with_the_containers_pg_restore(docker_live, monkeypatch,
                                                                                               tmp_path):
    point, record = backup(docker_live)
    monkeypatch.setenv("PATH", str(tmp_path / "no-client-here"))  # no local pg_restore to fall back on

    held = RestoreRequest(point=point, record=record, kb=docker_live.dataset.kb_ids[0])
    assert COMPONENT.restore_problems(docker_live.settings, held) == []
    [problem] = COMPONENT.restore_problems(docker_live.settings, RestoreRequest(point=point, record=record, kb="f" * 32))
    assert f"knowledge base {'f' * 32} is not in {point.ref}" in problem


def test_doctor_in_docker_mode_checks_the_containers_pg_dump_and_pg_restore(docker_live, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-client-here"))  # a local client is not needed
    checks = {c.name: c for c in COMPONENT.checks(docker_live.settings)}

    for tool in ("pg_dump", "pg_restore"):
        assert checks[f"postgres {tool}"].status == "ok"
        assert checks[f"postgres {tool}"].detail.endswith("in container rbtb-postgres-1")


def test_what_a_cut_off_restore_left_is_swept_by_the_next_one_even_for_a_long_database_name(live):
    long_target = live.database + "_" + "x" * 50  # cut to fit 63 bytes with the suffix
    token = uuid.uuid4().hex[:6]
    scratch, loader = scratch_name(long_target, "restore", token), f"ragflow_backup_load_{token}"
    execute_sql(live, f'CREATE DATABASE "{scratch}"', f"CREATE ROLE {loader} LOGIN",
                f'ALTER DATABASE "{live.database}" WITH ALLOW_CONNECTIONS false', database="postgres")

    with closing(connect(live.settings.postgres, "postgres")) as admin:
        sweep_leftovers(admin, long_target, logging.getLogger("test"))
        sweep_leftovers(admin, live.database, logging.getLogger("test"))
        left = admin.execute("SELECT datname FROM pg_database WHERE datname = %s UNION ALL SELECT rolname FROM "
                             "pg_roles WHERE rolname = %s", (scratch, loader)).fetchall()
        allowed = admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                                (live.database,)).fetchone()[0]
    assert left == [] and allowed is True
