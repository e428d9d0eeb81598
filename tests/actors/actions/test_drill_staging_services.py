"""`drill --staging` into a staging search server (a private Elasticsearch of this test's own, which lists the
test bed's snapshot folder in its path.repo) and a staging PostgreSQL database: the indices and rows come back on
staging under their live names, production untouched; a staging section naming production's own server is
refused before anything is done."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from psycopg import sql

from actors.postgres.session import connect
from core import clients
from core.config import load_settings
from testbed import settings as tb
from testbed.postgres_seed import PgDataset, drop_database
from testbed.private_servers import PrivateElasticsearch
from tests.actors.actions.test_offsite import cli, config_only  # noqa: F401 - a fixture
from tests.actors.postgres.conftest import docker_pg_dataset, pg_dataset  # noqa: F401 - fixtures
from tests.actors.search.test_backup import search_cfg, seeded  # noqa: F401 - fixtures used by name
from tests.conftest import reach
from tests.faults.harness import write_config


@pytest.fixture
def staging_es(testbed_env) -> Iterator[PrivateElasticsearch]:
    """A staging Elasticsearch of this test's own whose path.repo also lists the test bed's snapshot folder
    (production's repository, which it is given read only)."""
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-staging-", dir="/var/tmp"))  # ES runs as another user
    folder.chmod(0o711)
    server = PrivateElasticsearch(folder / "elasticsearch", also_repo=(testbed_env["SNAPSHOT_ROOT"],))
    try:
        reach("Elasticsearch (a private server for staging)", server.start)
        yield server
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def search_only(tmp_path: Path, docker: Path, cfg, staging: dict | None = None) -> Path:
    section = {**cfg.model_dump(mode="json"), "password": cfg.password.get_secret_value()}
    raw = {"storage_root": str(tmp_path / "backups"), "ragflow_dir": str(docker), "mysql": {"enabled": False},
           "minio": {"enabled": False}, "search": section}
    return write_config(tmp_path / "config.yml", {**raw, **({"staging": {"search": staging}} if staging else {})})


def documents(client, index: str) -> dict[str, dict]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, query={"match_all": {}}, size=10000)["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


@pytest.mark.parametrize("search_settings", ["elasticsearch"], indirect=True)
def test_a_staging_drill_restores_the_indices_into_the_staging_search_server_under_their_live_names(
        search_cfg, seeded, tmp_path, config_only, staging_es):  # noqa: F811 - fixtures imported above
    staging = {"engine": "elasticsearch", "url": staging_es.url, "user": "elastic", "password": staging_es.password,
               "repository": "staging_own", "repository_path": str(staging_es.repo_root / "staging_own")}
    config = search_only(tmp_path, config_only, search_cfg, staging)
    assert cli(config, "backup", "--local").exit_code == 0
    production = clients.search_client(search_cfg)
    before = {index: documents(production, index) for index in seeded}

    result = cli(config, "drill", "--staging", "--json")

    assert result.exit_code == 0, result.output
    rows = {item["component"]: item for item in json.loads(result.stdout)["components"]}
    assert rows["search"]["restored_into"] == "staging" and rows["search"]["ok"]
    assert rows["search"]["expected"] == rows["search"]["found"] == sum(seeded.values())
    assert rows["search"]["seconds"] >= 0  # staging's recovery time, recorded like the others'
    on_staging = clients.search_client(load_settings(config).staging.search)
    assert {index: documents(on_staging, index) for index in seeded} == before
    assert {index: documents(production, index) for index in seeded} == before  # production untouched
    registered = on_staging.snapshot.get_repository(name=search_cfg.repository)[search_cfg.repository]
    assert registered["settings"]["readonly"] in ("true", True)  # staging never writes production's repository
    again = cli(config, "drill", "--staging", "--json")  # next month's: over staging's indices, the repository known
    assert again.exit_code == 0, again.output
    assert {index: documents(on_staging, index) for index in seeded} == before


@pytest.mark.fault("a `staging:` section naming production's own search server (the same host and port)",
                   "drill --staging is refused before anything is restored, naming staging.search; production's "
                   "indices unchanged")
@pytest.mark.parametrize("search_settings", ["elasticsearch"], indirect=True)
def test_a_staging_search_server_that_is_productions_is_refused_before_anything_is_done(
        search_cfg, seeded, tmp_path, config_only):  # noqa: F811 - fixtures imported above
    config = search_only(tmp_path, config_only, search_cfg, {"url": search_cfg.url.upper() + "/",  # written otherwise
                                                            "password": "other", "repository": "staging_own"})
    assert cli(config, "backup", "--local").exit_code == 0
    production = clients.search_client(search_cfg)
    before = {index: documents(production, index) for index in seeded}

    result = cli(config, "drill", "--staging")

    assert result.exit_code == 1
    assert "staging.search is production's search" in " ".join(result.output.split())
    assert {index: documents(production, index) for index in seeded} == before


def table_rows(cfg, database: str) -> dict[str, list[str]]:
    """Every row of every table of `database`, as text, sorted (the order rows are stored in may differ)."""
    with closing(connect(cfg, database)) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1").fetchall()]
        return {table: sorted(map(repr, conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))))
                for table in tables}


def postgres_only(tmp_path: Path, cfg, staging: dict, docker_host: str | None = None) -> Path:
    section = {**cfg.model_dump(mode="json"), "password": cfg.password.get_secret_value()}
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "mysql": {"enabled": False}, "postgres": section,
        "minio": {"enabled": False}, "search": {"enabled": False}, "config_files": {"enabled": False},
        "docker": {"host": docker_host}, "staging": {"postgres": {**section, **staging}}})


def test_a_staging_drill_restores_the_rows_into_the_staging_postgres_database(
        testbed_env, tmp_path, pg_dataset: PgDataset):  # noqa: F811 - a fixture imported above
    production = tb.postgres(testbed_env, database=pg_dataset.database)
    staging_database = f"{pg_dataset.database}_staging"  # another database of the same server: another "server"
    config = postgres_only(tmp_path, production, {"database": staging_database})
    try:
        assert cli(config, "backup", "--local").exit_code == 0
        before = table_rows(production, pg_dataset.database)

        result = cli(config, "drill", "--staging", "--json")

        assert result.exit_code == 0, result.output
        [item] = json.loads(result.stdout)["components"]
        assert item["component"] == "postgres" and item["restored_into"] == "staging" and item["ok"]
        assert item["expected"] == item["found"] == sum(pg_dataset.row_counts.values())
        assert table_rows(production, staging_database) == before
        assert table_rows(production, pg_dataset.database) == before  # production untouched
    finally:
        drop_database(staging_database, testbed_env)


def test_a_staging_drill_in_docker_mode_loads_the_rows_into_another_database_of_the_container(
        testbed_env, tmp_path, docker_pg_dataset: PgDataset):  # noqa: F811 - a fixture imported above
    production = tb.postgres(testbed_env, database=docker_pg_dataset.database, docker=True)
    staging_database = f"{docker_pg_dataset.database}_staging"  # the same container, another database
    config = postgres_only(tmp_path, production, {"database": staging_database}, testbed_env["DOCKER_HOST"])
    try:
        assert cli(config, "backup", "--local").exit_code == 0
        before = table_rows(production, docker_pg_dataset.database)

        result = cli(config, "drill", "--staging", "--json")

        assert result.exit_code == 0, result.output
        [item] = json.loads(result.stdout)["components"]
        assert item["restored_into"] == "staging" and item["expected"] == item["found"] > 0
        assert table_rows(production, staging_database) == before
        assert table_rows(production, docker_pg_dataset.database) == before  # production untouched
    finally:
        drop_database(staging_database, testbed_env, "DOCKER_PG_PORT")


@pytest.mark.fault("a `staging:` section naming production's own PostgreSQL server and database",
                   "drill --staging is refused before anything is restored, naming staging.postgres; production's "
                   "rows unchanged")
def test_a_staging_postgres_that_is_productions_database_is_refused_before_anything_is_done(
        testbed_env, tmp_path, pg_dataset: PgDataset):  # noqa: F811 - a fixture imported above
    production = tb.postgres(testbed_env, database=pg_dataset.database)
    config = postgres_only(tmp_path, production, {"user": "someone_else"})
    assert cli(config, "backup", "--local").exit_code == 0
    before = table_rows(production, pg_dataset.database)

    result = cli(config, "drill", "--staging")

    assert result.exit_code == 1
    assert "staging.postgres is production's postgres" in " ".join(result.output.split())
    assert table_rows(production, pg_dataset.database) == before
