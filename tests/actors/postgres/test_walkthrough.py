"""RAGFlow v0.27 on PostgreSQL, as an operator meets it: its docker/ folder with DB_TYPE=postgres, `init`, a
backup, a whole-stack restore after things were lost, and a drill, all through the CLI. (MinIO is left off:
the mirror is the same whatever the metadata engine, and tests/actors/actions covers it.)"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from actors.postgres.session import connect
from actors.search.backup import RepositoryMissing, SnapshotRepo
from agent.cli import app
from core import clients
from core.config import SearchSettings, load_settings
from testbed import settings as tb
from testbed.postgres_seed import PgDataset, seed_postgres
from testbed.postgres_seed import drop_database as drop_pg_database
from testbed.seed import Dataset, remove, seed
from tests.actors.actions.test_restore import chunk_ids
from tests.actors.postgres.test_postgres import Live, checksums
from tests.conftest import reach
from tests.faults.harness import cli, write_config


@dataclass
class Ragflow:
    folder: Path
    dataset: Dataset
    pg: PgDataset
    search: SearchSettings


@pytest.fixture
def ragflow_on_postgres(tmp_path, testbed_env) -> Iterator[Ragflow]:
    """A seeded RAGFlow of this test's own: v0.27's docker/ folder switched to PostgreSQL the way its .env
    says (DB_TYPE, METADATA_DB_PROFILE, POSTGRES_*), its tables in a PostgreSQL database, its chunks in
    Elasticsearch."""
    search = tb.search("elasticsearch", testbed_env)
    folder = tmp_path / "ragflow" / "docker"
    dataset = seed(ragflow_dir=folder, env=testbed_env, search=search, size="tiny")
    try:
        pg = reach("PostgreSQL (test bed, port PG_PORT)", lambda: seed_postgres(testbed_env, size="tiny"))
        try:
            env = folder / ".env"
            text = env.read_text().replace("DB_TYPE=${DB_TYPE:-mysql}", "DB_TYPE=postgres").replace(
                "METADATA_DB_PROFILE=${METADATA_DB_PROFILE:-mysql}", "METADATA_DB_PROFILE=postgres")
            env.write_text(text + f"\nPOSTGRES_HOST={testbed_env['PG_HOST']}\nPOSTGRES_PORT={testbed_env['PG_PORT']}"
                                  f"\nPOSTGRES_USER={testbed_env['PG_USER']}\nPOSTGRES_PASSWORD="
                                  f"{testbed_env['PG_PASSWORD']}\nPOSTGRES_DBNAME={pg.database}\n")
            yield Ragflow(folder, dataset, pg, search)
        finally:
            drop_pg_database(pg.database, testbed_env)
    finally:
        remove(dataset, search=search)


def test_an_operator_on_postgresql_inits_backs_up_restores_the_whole_stack_and_drills(tmp_path, testbed_env,
                                                                                      ragflow_on_postgres):
    ragflow = ragflow_on_postgres
    config = tmp_path / "config.yml"
    init = CliRunner().invoke(app, ["init", "--ragflow-dir", str(ragflow.folder), "--storage-root",
                                    str(tmp_path / "backups"), "-o", str(config)], terminal_width=200)
    assert init.exit_code == 0, init.output
    assert "backed up: PostgreSQL" in init.output
    written = yaml.safe_load(config.read_text())
    assert written["mysql"]["enabled"] is False and written["postgres"]["database"] == ragflow.pg.database
    # What an operator of a shared cluster sets by hand: this RAGFlow's indices, a snapshot repository of its
    # own; the MinIO mirror is kept by the agent, not by these commands.
    repository = f"repo_{uuid.uuid4().hex[:10]}"
    written["search"].update(indices=ragflow.dataset.indices, repository=repository,
                             repository_path=f"{testbed_env['SNAPSHOT_ROOT']}/{repository}",
                             password=testbed_env["ES_PASSWORD"])
    written["minio"] = {"enabled": False}
    write_config(config, written)
    live = Live(load_settings(config), ragflow.pg)
    es = clients.search_client(ragflow.search)
    index = ragflow.dataset.indices[0]
    try:
        doctor = {c["name"]: c for c in json.loads(cli(config, "doctor", "--json").stdout)["checks"]}
        assert doctor["mysql"]["detail"].startswith("RAGFlow uses PostgreSQL") and doctor["postgres"]["status"] == "ok"
        steps = [cli(config, "backup", "--local"), cli(config, "verify")]
        assert [s.returncode for s in steps] == [0, 0], [s.stdout + s.stderr for s in steps]
        rows, chunks = checksums(live), chunk_ids(es, index)
        env_before = (ragflow.folder / ".env").read_bytes()

        with closing(connect(live.settings.postgres)) as conn:  # things are lost
            conn.execute("DELETE FROM document")
        es.delete(index=index, id=chunks[0], refresh=True)
        (ragflow.folder / ".env").write_bytes(env_before + b"RAGFLOW_IMAGE=edited-by-mistake\n")

        whole = cli(config, "restore", "--yes")
        assert whole.returncode == 0, whole.stdout + whole.stderr
        assert checksums(live) == rows
        assert chunk_ids(es, index) == chunks
        assert (ragflow.folder / ".env").read_bytes() == env_before

        drill = cli(config, "drill")
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "postgres" in drill.stdout and "dropped" in drill.stdout
    finally:
        repo = SnapshotRepo(es, "elasticsearch", repository)
        try:
            for snap in repo.snapshots():
                repo.delete(snap["snapshot"])
            repo.unregister()
        except RepositoryMissing:
            pass

