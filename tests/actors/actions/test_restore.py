"""`ragflow-backup restore` end to end: a seeded RAGFlow, a backup, damage, then the restore."""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from actors.minio.mirror import reconcile
from actors.search.backup import SnapshotRepo
from agent.cli import app
from core import clients
from core.config import load_settings
from testbed import settings as tb
from testbed.seed import Dataset, remove, seed


@pytest.fixture
def ragflow(tmp_path, testbed_env, private_minio) -> Iterator[tuple[Dataset, dict, Path]]:
    """A tiny seeded RAGFlow of this test's own (its objects in a private MinIO), a config for it, and a
    first complete backup with the mirror up to date."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    services = {"mysql": tb.mysql(testbed_env, database=database), "minio": private_minio.settings(),
                "search": tb.search("elasticsearch", testbed_env)}
    dataset = seed(database=database, ragflow_dir=tmp_path / "ragflow" / "docker", env=testbed_env, size="tiny", **services)
    repository = f"repo_{uuid.uuid4().hex[:10]}"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(dataset.ragflow_dir),
        "mysql": {"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]), "database": database,
                  "password": testbed_env["MYSQL_PASSWORD"]},
        "minio": {"endpoint": private_minio.endpoint, "access_key": private_minio.access_key,
                  "secret_key": private_minio.secret_key},
        "search": {"url": testbed_env["ES_URL"], "password": testbed_env["ES_PASSWORD"], "repository": repository,
                   "repository_path": f"{testbed_env['SNAPSHOT_ROOT']}/{repository}", "indices": dataset.indices},
    }))
    settings = load_settings(config)
    assert reconcile(settings).complete  # the mirror runs all along, as the agent keeps it
    assert cli(config, "backup", "--local").exit_code == 0
    yield dataset, services, config
    es = clients.search_client(services["search"])
    repo = SnapshotRepo(es, "elasticsearch", repository)
    for snap in repo.snapshots():
        repo.delete(snap["snapshot"])
    repo.unregister()
    remove(dataset, **services)


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200)


def table_checksums(settings) -> dict[str, int]:
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        tables = [row[0] for row in cur.fetchall()]
        cur.execute("CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
        return {row[0].split(".")[-1]: row[1] for row in cur.fetchall()}


def kb_rows(settings, kb: str) -> dict[str, list]:
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM knowledgebase WHERE id=%s ORDER BY id", (kb,))
        kbs = cur.fetchall()
        cur.execute("SELECT * FROM document WHERE kb_id=%s ORDER BY id", (kb,))
        return {"knowledgebase": list(kbs), "document": list(cur.fetchall())}


def bucket_digest(client, bucket: str) -> dict[str, str]:
    digests = {}
    for item in client.list_objects(bucket, recursive=True):
        response = client.get_object(bucket, item.object_name)
        try:
            digests[item.object_name] = hashlib.sha256(response.read()).hexdigest()
        finally:
            response.close()
            response.release_conn()
    return digests


def chunk_ids(es, index: str, kb: str | None = None) -> list[str]:
    es.indices.refresh(index=index)
    query = {"term": {"kb_id": kb}} if kb else {"match_all": {}}
    hits = es.search(index=index, query=query, size=10_000, source=False)["hits"]["hits"]
    return sorted(hit["_id"] for hit in hits)


def test_a_dropped_database_comes_back_with_equal_row_counts(ragflow):
    dataset, services, config = ragflow
    settings = load_settings(config)
    before = table_checksums(settings)
    with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{dataset.database}`")
    result = cli(config, "restore", "--component", "mysql", "--yes")
    assert result.exit_code == 0, result.output
    assert table_checksums(settings) == before
    audit = [json.loads(line) for line in (settings.storage_root / "logs" / "audit.log").read_text().splitlines()]
    assert [(a["action"], a["result"]) for a in audit if a["action"] == "restore"] == [("restore", "started"), ("restore", "finished")]


def test_a_deleted_index_comes_back_with_equal_doc_counts(ragflow):
    dataset, services, config = ragflow
    es = clients.search_client(services["search"])
    index = dataset.indices[0]
    before = chunk_ids(es, index)
    es.indices.delete(index=index)
    result = cli(config, "restore", "--component", "search", "--yes")
    assert result.exit_code == 0, result.output
    assert chunk_ids(es, index) == before
    assert es.count(index=index)["count"] == dataset.doc_counts[index]


def test_one_knowledge_base_comes_back_and_the_others_are_unchanged(ragflow, private_minio):
    dataset, services, config = ragflow
    settings = load_settings(config)
    lost, kept = dataset.kb_ids[0], dataset.kb_ids[1]
    es = clients.search_client(services["search"])
    minio = private_minio.client()
    index = dataset.indices[0]
    lost_before = (kb_rows(settings, lost), chunk_ids(es, index, lost), bucket_digest(minio, lost))
    # Delete the knowledge base the way a user's mistake would: its rows, chunks and objects.
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM task WHERE doc_id IN (SELECT id FROM document WHERE kb_id=%s)", (lost,))
        cur.execute("DELETE FROM document WHERE kb_id=%s", (lost,))
        cur.execute("DELETE FROM knowledgebase WHERE id=%s", (lost,))
    # (by id: the test bed's integ-test Elasticsearch has no _delete_by_query)
    es.bulk(operations=[{"delete": {"_index": index, "_id": chunk}} for chunk in chunk_ids(es, index, lost)], refresh=True)
    for name in list(bucket_digest(minio, lost)):
        minio.remove_object(lost, name)
    assert reconcile(settings).complete  # the mirror sees the deletions (kept as versions)
    kept_now = (kb_rows(settings, kept), chunk_ids(es, index, kept), bucket_digest(minio, kept))

    result = cli(config, "restore", "--kb", lost, "--yes")
    assert result.exit_code == 0, result.output
    assert (kb_rows(settings, lost), chunk_ids(es, index, lost), bucket_digest(minio, lost)) == lost_before
    assert (kb_rows(settings, kept), chunk_ids(es, index, kept), bucket_digest(minio, kept)) == kept_now


def test_a_restore_that_fails_midway_is_rolled_back(ragflow):
    dataset, services, config = ragflow
    settings = load_settings(config)
    # A change after the backup: the restore would undo it, the rollback must bring it back.
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("UPDATE knowledgebase SET name='renamed after the backup' WHERE id=%s", (dataset.kb_ids[0],))
    before = table_checksums(settings)
    # The point's snapshot disappears from the repository: the search step will fail after mysql's.
    point = json.loads((sorted((settings.storage_root / "daily").glob("*/search_snapshot.json"))[0]).read_text())
    es = clients.search_client(services["search"])
    SnapshotRepo(es, "elasticsearch", settings.search.repository).delete(point["snapshot"])

    result = cli(config, "restore", "--component", "mysql", "--component", "search", "--yes")
    assert result.exit_code == 1
    assert "rolled back" in result.output
    assert table_checksums(settings) == before
    audit = [(a["action"], a["result"]) for a in map(json.loads, (settings.storage_root / "logs" / "audit.log").read_text().splitlines())]
    assert ("restore", "failed") in audit and ("rollback", "finished") in audit


def test_without_a_terminal_a_restore_needs_yes_and_a_dry_run_changes_nothing(ragflow):
    dataset, services, config = ragflow
    refused = cli(config, "restore", "--component", "mysql")
    assert refused.exit_code == 2 and "--yes" in refused.output
    env_file = dataset.ragflow_dir / ".env"
    env_file.write_text(env_file.read_text().replace("MYSQL_PASSWORD=", "MYSQL_PASSWORD=changed-", 1))
    planned = cli(config, "restore", "--dry-run")
    assert planned.exit_code == 0 and "nothing was changed" in planned.output and "safety point" in planned.output
    assert "config files that would change" in planned.output and ".env" in planned.output
    assert "changed-" not in planned.output, "secrets are masked in the diff"


def test_the_restore_drill_restores_into_scratch_targets_compares_and_cleans_up(ragflow):
    dataset, services, config = ragflow
    settings = load_settings(config)
    before = table_checksums(settings)
    es = clients.search_client(services["search"])
    result = cli(config, "drill")
    assert result.exit_code == 0, result.output
    assert "30-minute objective" in result.output
    for component in ("mysql", "search", "config", "minio"):
        assert component in result.output
    [binlog] = [line for line in result.output.splitlines() if "binlog" in line]
    assert "checked, not restored" in binlog  # the archive's files against its index; a MySQL restore replays it
    assert table_checksums(settings) == before
    with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"{dataset.database}__drill%",))
        assert cur.fetchall() == ()
    assert es.indices.get(index="drill-*", allow_no_indices=True, expand_wildcards="all").body == {}
    audit = [json.loads(line) for line in (settings.storage_root / "logs" / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "drill" and audit[-1]["result"] == "ok"


def run_on_a_terminal(config: Path, answers: str, *args: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin, as an operator at a console would."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    cli_path = str(Path(sys.executable).parent / "ragflow-backup")
    process = subprocess.Popen([cli_path, "--config", str(config), *args], stdin=follower, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    os.close(follower)
    os.write(leader, answers.encode())
    output, _ = process.communicate(timeout=120)
    os.close(leader)
    return process.returncode, output.decode()


def test_on_a_terminal_the_restore_asks_for_the_point_and_components_and_confirmation(ragflow):
    dataset, services, config = ragflow
    settings = load_settings(config)
    before = table_checksums(settings)
    code, output = run_on_a_terminal(config, "1\nmysql\n", "restore", "--dry-run")
    assert code == 0, output
    assert "Which point" in output and "Components" in output
    assert "components: mysql (everything they hold)" in output and "nothing was changed" in output

    code, output = run_on_a_terminal(config, "1\nmysql\nn\n", "restore")
    assert code == 1 and "Restore now?" in output and "not confirmed" in output
    assert table_checksums(settings) == before
