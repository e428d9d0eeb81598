"""What a restore takes from an archive's table of contents, and what the loading role may do: an archive read
back from the storage root is untrusted."""
from __future__ import annotations

import secrets
from contextlib import closing

import psycopg
import pytest
from psycopg import sql

from actors.postgres.load import filtered_list, foreign_objects
from testbed.postgres_seed import connect, drop_database

LISTING = """\
;
; Archive created at 2026-11-30 02:00:00 UTC
;
215; 1259 16390 TABLE public document rag_flow
3380; 0 16390 TABLE DATA public document rag_flow
3230; 2606 16396 CONSTRAINT public document document_pkey rag_flow
3231; 1259 16397 INDEX public document_kb_id rag_flow
216; 1255 16400 FUNCTION public stamp() rag_flow
217; 3079 16401 EXTENSION - plperlu
218; 1259 16402 TABLE evil payload rag_flow
219; 2620 16403 TRIGGER public knowledgebase kb_stamp rag_flow
220; 1259 16404 VIEW public kb_names rag_flow
221; 0 0 ACL - SCHEMA public pg_database_owner
"""


def test_only_ragflows_kind_of_entries_in_public_are_handed_to_pg_restore():
    kept, skipped = filtered_list(LISTING)

    assert kept.split() == ["215;", "3380;", "3230;", "3231;"]
    assert {entry.split()[0] for entry in skipped} == {"FUNCTION", "EXTENSION", "TABLE", "TRIGGER", "VIEW"}
    assert any("evil payload" in entry for entry in skipped)


@pytest.fixture
def scratch(testbed_env):
    name = f"rbtest_{secrets.token_hex(6)}"
    with connect(testbed_env, "postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    drop_database(name, testbed_env)


def test_a_function_trigger_or_view_in_the_scratch_database_is_found(testbed_env, scratch):
    with connect(testbed_env, scratch) as conn:
        conn.execute("CREATE TABLE knowledgebase (id varchar(32) PRIMARY KEY, name text)")
        assert foreign_objects(conn) == []
        conn.execute("CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER kb_stamp BEFORE INSERT ON knowledgebase FOR EACH ROW EXECUTE FUNCTION stamp()")
        conn.execute("CREATE VIEW kb_names AS SELECT name FROM knowledgebase")

        assert set(foreign_objects(conn)) == {"function stamp", "trigger kb_stamp", "view or foreign table kb_names"}


def test_a_role_made_like_the_loading_role_cannot_run_programs_or_read_server_files(testbed_env, scratch):
    role, password = f"rbtest_load_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    with connect(testbed_env, "postgres") as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(scratch), sql.Identifier(role)))
    with connect(testbed_env, scratch) as conn:
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    try:
        with closing(psycopg.connect(host=testbed_env["PG_HOST"], port=int(testbed_env["PG_PORT"]), user=role,
                                     password=password, dbname=scratch, autocommit=True)) as loader:
            loader.execute("CREATE TABLE t (line text)")
            for statement in ("COPY t FROM PROGRAM 'id'", "COPY t FROM '/etc/passwd'", "CREATE EXTENSION plperlu"):
                with pytest.raises(psycopg.Error) as refused:
                    loader.execute(statement)
                assert "permission denied" in str(refused.value) or "must be" in str(refused.value) \
                    or "not available" in str(refused.value)
    finally:
        drop_database(scratch, testbed_env)
        with connect(testbed_env, "postgres") as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
