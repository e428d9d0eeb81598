"""The test bed's PostgreSQL: RAGFlow's tables seeded as on MySQL, and a private server that stops and starts."""
from __future__ import annotations

from testbed.postgres_seed import connect
from testbed.private_servers import PrivatePostgres
from testbed.seed import TABLES


def test_a_seeded_postgres_database_has_ragflows_tables_and_every_planned_row(pg_dataset, testbed_env):
    with connect(testbed_env, pg_dataset.database) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in TABLES}
    assert tables == set(TABLES)
    assert counts == pg_dataset.row_counts


def test_the_account_is_ragflows_and_no_superuser(testbed_env):
    with connect(testbed_env, "postgres") as conn:
        user, superuser = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert (user, superuser) == ("rag_flow", False)


def test_a_private_postgres_answers_again_after_a_restart():
    server = PrivatePostgres()
    try:
        server.start()
        server.restart()
        assert server.ready()
    finally:
        server.cleanup()


def test_the_docker_engine_runs_a_compose_labelled_postgres_container_with_its_own_pg_dump(testbed_env, docker_client):
    container = docker_client.containers.get(testbed_env["DOCKER_PG_CONTAINER"])

    assert container.status == "running"
    assert container.labels["com.docker.compose.service"] == "postgres"
    assert container.image.tags == ["rbtb/postgres:bookworm"]
    assert container.exec_run(["pg_dump", "--version"]).output.startswith(b"pg_dump (PostgreSQL) 15.")
