"""Views, with their definers and algorithms, come back with the tables they read, beside the routines and
triggers (a whole restore, the drill's restore into another database, docker mode); a view whose definer does
not exist on the server comes back as SQL SECURITY INVOKER under the restoring account."""
from __future__ import annotations

import pytest

from actors.actions.drill import run_drill
from actors.mysql.restore import restore
from core import clients
from tests.actors.mysql.test_restore import Live, backup, checksums, docker_live, execute, live, scratch_left  # noqa: F401

VIEWS = {
    "kb_documents": "CREATE ALGORITHM=MERGE SQL SECURITY DEFINER VIEW kb_documents AS "
                    "SELECT kb_id, id, name FROM document",
    "kb_sizes": "CREATE ALGORITHM=TEMPTABLE VIEW kb_sizes AS SELECT kb_id, COUNT(*) AS documents FROM kb_documents "
                "GROUP BY kb_id",
}


def view_rows(live: Live, database: str) -> dict[str, list[tuple]]:
    with clients.mysql_connection(live.cfg, database=database) as conn, conn.cursor() as cur:
        found = {}
        for name in sorted(VIEWS):
            cur.execute(f"SELECT * FROM `{name}` ORDER BY 1, 2")
            found[name] = list(cur.fetchall())
        return found


def view_facts(live: Live, database: str) -> dict[str, tuple]:
    """Per view: its algorithm, definer and SQL SECURITY, as the server records them."""
    with clients.mysql_connection(live.cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME, ALGORITHM, DEFINER, SECURITY_TYPE FROM information_schema.VIEWS "
                    "WHERE TABLE_SCHEMA = %s ORDER BY 1", (database,))
        return {row[0]: tuple(row[1:]) for row in cur.fetchall()}


def restoring_account(live: Live) -> str:
    with clients.mysql_connection(live.cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        return cur.fetchone()[0]


def with_views_routine_and_trigger(live: Live) -> None:
    execute(live.cfg, live.database, *VIEWS.values(),
            "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, doc_id VARCHAR(32))",
            "CREATE TRIGGER document_audit AFTER DELETE ON document FOR EACH ROW "
            "INSERT INTO audit (doc_id) VALUES (OLD.id)",
            "CREATE FUNCTION kb_size(kb VARCHAR(32)) RETURNS INT READS SQL DATA "
            "RETURN (SELECT documents FROM kb_sizes WHERE kb_id = kb)")


def code_works(live: Live, database: str) -> None:
    """The restored routine reads through the views; the restored trigger fires."""
    kb = live.dataset.kb_ids[0]
    with clients.mysql_connection(live.cfg, database=database) as conn, conn.cursor() as cur:
        cur.execute("SELECT kb_size(%s)", (kb,))
        assert cur.fetchone()[0] == 3
        cur.execute("DELETE FROM document WHERE kb_id = %s", (kb,))
        cur.execute("SELECT COUNT(*) FROM audit")
        assert cur.fetchone()[0] == 3


@pytest.mark.fault("a database holding VIEWs (MERGE and TEMPTABLE, with their definers) beside a routine and a trigger",
                   "backup and restore -C mysql (TCP and docker mode) bring every view back with its "
                   "algorithm, definer and SQL SECURITY, answering the same rows; the routine reads through them, "
                   "the trigger fires")
@pytest.mark.parametrize("mode", ["tcp", "docker"])
def test_views_come_back_with_their_algorithms_and_definers_and_answer_the_same_rows(request, mode):
    live = request.getfixturevalue("docker_live" if mode == "docker" else "live")
    with_views_routine_and_trigger(live)
    rows, facts = view_rows(live, live.database), view_facts(live, live.database)
    assert {name: fact[0] for name, fact in facts.items()} == {"kb_documents": "MERGE", "kb_sizes": "TEMPTABLE"}
    point, record = backup(live)
    execute(live.cfg, live.database, "DROP VIEW kb_sizes", "UPDATE document SET name = 'changed after the backup'",
            "CREATE VIEW made_later AS SELECT 1 AS one")
    before = checksums(live.cfg, live.database)

    result = restore(live.settings, point, record, keep_previous=True)

    assert result.ok
    assert {"VIEW kb_documents", "VIEW kb_sizes", "FUNCTION kb_size", "TRIGGER document_audit"} <= set(result.stored_code)
    assert view_facts(live, live.database) == facts  # algorithm, definer, SQL SECURITY as they were
    assert facts["kb_documents"][1] == restoring_account(live)
    assert view_rows(live, live.database) == rows
    assert sorted(view_facts(live, result.previous_database)) == ["kb_documents", "made_later"]  # kept for a rollback
    assert checksums(live.cfg, result.previous_database) == before
    code_works(live, live.database)


@pytest.mark.fault("the restore drill on a database holding VIEWs",
                   "the drill restores the views into its scratch database (same rows, algorithms and definers) and "
                   "passes; the live views still read the live tables; no scratch database is left")
def test_the_drill_restores_views_into_its_scratch_database_and_the_live_one_keeps_its_own(live):
    with_views_routine_and_trigger(live)
    rows, facts = view_rows(live, live.database), view_facts(live, live.database)
    point, record = backup(live)
    drill = f"{live.database}_drill"

    result = restore(live.settings, point, record, target_database=drill)  # as the drill does

    assert result.ok and view_rows(live, drill) == rows and view_facts(live, drill) == facts
    code_works(live, drill)
    assert view_rows(live, live.database) == rows  # the live views still read the live tables
    report = run_drill(live.settings)
    [drilled] = [item for item in report.components if item.component == "mysql"]
    assert drilled.ok, drilled.detail
    assert scratch_left(live) == set()


@pytest.mark.fault("a VIEW whose DEFINER account does not exist on the server restored to",
                   "restored as SQL SECURITY INVOKER under the restoring account, answering the same rows; the log "
                   "names the view and the missing definer")
def test_a_view_whose_definer_does_not_exist_here_comes_back_as_sql_security_invoker(live, caplog):
    gone = f"gone_{live.database[-8:]}"
    host = restoring_account(live).rpartition("@")[2]  # the view is made while its definer exists
    execute(live.cfg, "", f"CREATE USER '{gone}'@'{host}'",
            f"GRANT SELECT ON `{live.database}`.* TO '{gone}'@'{host}'")
    try:
        execute(live.cfg, live.database, f"CREATE DEFINER='{gone}'@'{host}' SQL SECURITY DEFINER VIEW orphan AS "
                                         f"SELECT id, name FROM knowledgebase")
        point, record = backup(live)
    finally:
        execute(live.cfg, "", f"DROP USER IF EXISTS '{gone}'@'{host}'")  # as on a server it never existed on
    execute(live.cfg, live.database, "DROP VIEW orphan")

    result = restore(live.settings, point, record)

    assert result.ok
    assert view_facts(live, live.database)["orphan"][1:] == (restoring_account(live), "INVOKER")
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM orphan")
        assert cur.fetchone()[0] == live.dataset.row_counts["knowledgebase"]
    assert f"VIEW orphan named definer {gone}@{host}, which does not exist here" in caplog.text
