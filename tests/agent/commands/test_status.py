"""`ragflow-backup status` reads the storage root and the broker's queues."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dramatiq
import yaml
from typer.testing import CliRunner

from actors.broker import make_broker
from agent.cli import app
from agent.config import load_settings
from agent.offsite import audited
from agent.manifest import ComponentRecord
from agent.points import Storage

CLI = str(Path(sys.executable).parent / "ragflow-backup")


def test_status_shows_each_components_last_success_and_the_queues(tmp_path, redis_url):
    broker = make_broker(redis_url, namespace="status-test")
    waiting = dramatiq.actor(lambda bucket, key: None, broker=broker, queue_name="mirror", actor_name="mirror_object")
    waiting.send("kb", "a.pdf")
    waiting.send("kb", "b.pdf")
    storage = Storage(tmp_path / "backups")
    at = datetime.now(timezone.utc) - timedelta(hours=3)
    point = storage.new_point(["mysql"], at=at)
    point.save_record(ComponentRecord(component="mysql", status="ok", started_at=at, finished_at=at))
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(storage.root), "broker": {"url": redis_url, "namespace": "status-test"},
        "search": {"enabled": False}, "config_files": {"enabled": False},
        "offsite": {"enabled": True, "repository": str(tmp_path / "usb")},
    }))
    with audited(load_settings(config), "offsite-copy", point.ref):
        pass  # what a successful copy records
    result = subprocess.run([CLI, "--config", str(config), "status"], capture_output=True, text=True,
                            env={"COLUMNS": "200", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert point.ref in result.stdout and "3.0 h" in result.stdout
    assert "failed" not in result.stdout + result.stderr  # the broker's Redis was reached
    assert "queues: mirror 2" in result.stdout and "next: " in result.stdout
    assert "lag " in result.stdout
    # From the agent's state: status never waits on the remote repository.
    assert re.search(rf"offsite: last copy [\d.]+ (s|min) ago \({point.ref}\)", result.stdout)


def test_status_states_the_mirrors_rpo_when_reconcile_alone_mirrors(tmp_path, redis_url):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(tmp_path / "backups"), "broker": {"url": redis_url, "namespace": "status-rpo-test"},
        "minio": {"events": False}, "mysql": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False}, "schedule": {"reconcile": "*/20 * * * *"},
    }))
    result = CliRunner().invoke(app, ["--config", str(config), "status"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert ("mirror RPO: minio.events is false: reconcile alone mirrors, RPO 20 min (schedule.reconcile "
            "'*/20 * * * *')") in result.output
    assert "RAGFlow: not recorded" not in result.output and "RAGFlow: " in result.output
