"""`ragflow-backup status` reads the storage root and the broker's queues."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dramatiq
import yaml
from typer.testing import CliRunner

from actors.actions.offsite import audited
from actors.broker import make_broker
from agent.cli import app
from core.config import load_settings
from core.manifest import ComponentRecord
from core.mirror_status import record_mode
from core.mirror_store import Entry, MirrorStore
from core.points import Storage

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


def test_status_shows_the_mirrors_point_in_time_window_and_its_pacing_mode(tmp_path, redis_url):
    storage_root = tmp_path / "backups"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(storage_root), "broker": {"url": redis_url, "namespace": f"status-{uuid.uuid4().hex}"},
        "search": {"enabled": False}, "config_files": {"enabled": False}}))
    settings = load_settings(config)
    store = MirrorStore(storage_root / settings.minio.mirror_dir)
    now = datetime.now(timezone.utc)
    for hours, data in ((50, b"first"), (30, b"second"), (0, b"third")):
        temp = store.temp_file("kb")
        temp.write_bytes(data)
        store.commit("kb", "doc", temp, Entry(size=len(data), etag=hashlib.md5(data).hexdigest()),
                     now - timedelta(hours=hours))
    store.prune_versions(now - timedelta(days=30), budget_bytes=len(b"second"))  # "first" is dropped
    record_mode(settings, "catch-up")

    result = subprocess.run([CLI, "--config", str(config), "status"], capture_output=True, text=True,
                            env={"COLUMNS": "200", "PATH": "", "PYTHONPATH": os.environ.get("PYTHONPATH", "")})

    assert result.returncode == 0, result.stderr
    assert re.search(r"1 kept versions \(6 B(ytes)?, any moment since \S+: 30\.0 h\)", result.stdout), result.stdout
    assert "catch-up (50 % CPU) since" in result.stdout
