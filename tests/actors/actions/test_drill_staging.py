"""`drill --staging --report FILE`: the newest point restored into a second RAGFlow's services (a private MariaDB
and MinIO of this test's own), each one's recovery time recorded, and a DR report an operator can keep."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import yaml

from actors.actions.drill import DrillItem, DrillReport
from agent.drill_report import report_markdown
from core import clients
from core.config import MySQLSettings, load_settings
from testbed import settings as tb
from testbed.minio_server import PrivateMinio
from testbed.private_servers import PrivateMariadb, PrivateRedis
from testbed.seed import remove, seed
from tests.actors.actions.test_restore import bucket_digest, cli, ragflow, table_checksums  # noqa: F401 - a fixture
from tests.conftest import reach


@pytest.fixture
def staging(tmp_path, testbed_env) -> Iterator[tuple[PrivateMariadb, PrivateMinio]]:
    """A second installation's MariaDB and MinIO, empty, of this test's own."""
    mariadb = PrivateMariadb(tmp_path / "staging-mariadb")
    minio = PrivateMinio(testbed_env, tmp_path / "staging-minio")
    minio.data.mkdir(parents=True)
    reach("MariaDB (private mariadbd)", mariadb.start)
    try:
        reach("MinIO (private server from the test bed's binary)", minio.start)
        yield mariadb, minio
    finally:
        minio.kill()
        mariadb.kill()


def with_staging(config, mariadb: PrivateMariadb, minio: PrivateMinio) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["staging"] = {"mysql": {"host": "127.0.0.1", "port": mariadb.port, "user": "root",
                                "password": mariadb.password, "database": "rag_flow_staging"},
                      "minio": {"endpoint": minio.endpoint, "access_key": minio.access_key,
                                "secret_key": minio.secret_key}}
    config.write_text(yaml.safe_dump(raw))


def test_a_staging_drill_restores_into_the_staging_services_and_writes_a_report(ragflow, staging, private_minio,
                                                                                tmp_path):
    dataset, services, config = ragflow
    mariadb, staging_minio = staging
    with_staging(config, mariadb, staging_minio)
    settings = load_settings(config)
    production_rows = table_checksums(settings)
    production_objects = {bucket: bucket_digest(private_minio.client(), bucket) for bucket in dataset.buckets}

    report_file = tmp_path / "dr-report.json"
    result = cli(config, "drill", "--staging", "--report", str(report_file))
    assert result.exit_code == 0, result.output

    staged = settings.model_copy(update={"mysql": MySQLSettings(host="127.0.0.1", port=mariadb.port, user="root",
                                                                 password=mariadb.password,
                                                                 database="rag_flow_staging")})
    assert table_checksums(staged) == production_rows
    assert {bucket: bucket_digest(staging_minio.client(), bucket) for bucket in dataset.buckets} == production_objects
    assert table_checksums(settings) == production_rows  # production untouched

    report = json.loads(report_file.read_text())
    assert report["ok"] and report["within_objective"] and report["objective_seconds"] == 1800
    rows = {item["component"]: item for item in report["components"]}
    assert rows["mysql"]["restored_into"] == "staging" and rows["minio"]["restored_into"] == "staging"
    assert rows["mysql"]["expected"] == rows["mysql"]["found"] == sum(dataset.row_counts.values())
    assert rows["search"]["restored_into"] == "scratch names on production"
    assert all(item["seconds"] >= 0 for item in report["components"])
    assert report["point"].startswith("daily/") and "ragflow" in report


@pytest.mark.fault("a `staging:` section naming production's own MySQL server and database",
                   "drill --staging is refused before anything is restored, naming staging.mysql; production's rows "
                   "unchanged, no scratch database made")
def test_a_staging_section_naming_production_is_refused_before_anything_is_done(ragflow):
    dataset, services, config = ragflow
    raw = yaml.safe_load(config.read_text())
    raw["staging"] = {"mysql": raw["mysql"]}
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    before = table_checksums(settings)
    result = cli(config, "drill", "--staging")
    assert result.exit_code == 1
    assert "staging.mysql is production's mysql" in result.output
    assert table_checksums(settings) == before
    with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (f"{dataset.database}__%",))
        assert cur.fetchall() == ()


def test_the_markdown_report_names_the_point_the_objective_and_keeps_untrusted_text_in_code_spans():
    report = DrillReport("daily/2026-11-30", [DrillItem("mysql", True, 12.5, "40 rows `# injected`", "staging", 40, 40)],
                         seconds=12.5, started_at=datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc))
    text = report_markdown(report)
    assert text.startswith("# RAGFlow disaster-recovery drill: PASSED")
    assert "12.5 s of the 30-minute objective (RTO): within it" in text
    assert "| mysql | staging | 40 | 40 | 12.5 | ok | `40 rows '# injected'` |" in text


@pytest.fixture
def staging_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "staging-redis", persistent=False)
    reach("Redis (private redis-server)", server.start)
    yield server
    server.kill()


def values(client) -> dict[bytes, object]:
    """Each key's value as Redis reads it back (DUMP bytes may order a hash's fields differently)."""
    read = {b"string": client.get, b"hash": client.hgetall, b"stream": lambda key: client.xrange(key),
            b"list": lambda key: client.lrange(key, 0, -1), b"set": client.smembers,
            b"zset": lambda key: client.zrange(key, 0, -1, withscores=True)}
    return {key: read[client.type(key)](key) for key in client.scan_iter()}


def test_a_staging_drill_puts_redis_keys_into_the_staging_redis(tmp_path, testbed_env, redis_db, staging_redis):
    production = tb.redis(testbed_env, db=redis_db)
    dataset = seed(redis=production, env=testbed_env, size="tiny")
    try:
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump({
            "storage_root": str(tmp_path / "backups"),
            "mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"enabled": False},
            "config_files": {"enabled": False},
            "redis": {"enabled": True, "host": production.host, "port": production.port,
                      "password": production.password.get_secret_value(), "db": redis_db},
            "staging": {"redis": {"host": "127.0.0.1", "port": staging_redis.port,
                                  "password": staging_redis.password, "db": 1}}}))
        assert cli(config, "backup", "--local").exit_code == 0
        result = cli(config, "drill", "--staging", "--json")
        assert result.exit_code == 0, result.output
        (item,) = json.loads(result.stdout)["components"]
        assert item["restored_into"] == "staging" and item["expected"] == item["found"] > 0
        assert values(staging_redis.client(db=1)) == values(clients.redis_client(production))
    finally:
        remove(dataset, redis=production)
