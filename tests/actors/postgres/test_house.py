"""The rest of the house knows PostgreSQL: after a backup of RAGFlow on PostgreSQL, `status --json`, `list`, the
per-component metrics and the console page all carry the postgres component (they read the registry and the
points' manifests)."""
from __future__ import annotations

import json

from agent.console.history import HistoryStore
from agent.console.view import build
from agent.health import collect
from agent.metrics import report_metrics
from core.config import load_settings
from core.points import Storage
from testbed import settings as testbed_settings
from tests.faults.harness import cli, write_config


def test_status_list_metrics_and_the_console_show_the_postgres_component(tmp_path, testbed_env, pg_dataset):
    cfg = testbed_settings.postgres(testbed_env, database=pg_dataset.database)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False}, "mysql": {"enabled": False},
        "postgres": {"enabled": True, "host": cfg.host, "port": cfg.port, "user": cfg.user,
                     "password": cfg.password.get_secret_value(), "database": cfg.database}})
    assert cli(config, "backup", "--local").returncode == 0

    status = json.loads(cli(config, "status", "--json").stdout)
    listed = json.loads(cli(config, "list", "--json").stdout)
    settings = load_settings(config)
    storage = Storage(settings.storage_root)
    report = collect(settings, storage)
    metrics = {(family.name, sample.labels.get("component")): sample.value
               for family in report_metrics(report) for sample in family.samples}
    page = build(settings, storage, lambda: report, HistoryStore(storage.root))

    point = storage.points("daily")[-1]
    assert [(c["component"], c["point"]) for c in status["components"]] == [("postgres", point.ref)]
    assert {p["ref"]: p["components"] for p in listed["points"]}[point.ref] == {"postgres": "ok"}
    finished = point.manifest().components["postgres"].finished_at.timestamp()
    assert metrics[("ragflow_backup_last_success_timestamp_seconds", "postgres")] == finished
    assert [(row.name, row.state, row.rpo, row.point) for row in page.components] == [
        ("postgres", "ok", "26 h", point.ref)]
