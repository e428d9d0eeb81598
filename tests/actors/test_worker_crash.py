"""A worker SIGKILLed in the middle of a MySQL dump leaves nothing half-done, and the run completes later."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import clients
from core.points import Storage
from testbed import settings as testbed_settings
from testbed.polling import wait_for

CLI = str(Path(sys.executable).parent / "ragflow-backup")


def fill_database(env: dict[str, str], database: str, rows_log2: int = 18) -> None:
    """About 2**rows_log2 rows of 256 bytes: a dump that takes a few seconds."""
    with clients.mysql_connection(testbed_settings.mysql(env, database=database)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE chunk (id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(256))")
        cur.execute("INSERT INTO chunk (body) VALUES (REPEAT(MD5(RAND()), 8))")
        for _ in range(rows_log2):
            cur.execute("INSERT INTO chunk (body) SELECT REPEAT(MD5(RAND()), 8) FROM chunk")


def write_config(tmp_path: Path, env: dict[str, str], redis_url: str, database: str) -> Path:
    config = {
        "storage_root": str(tmp_path / "backups"),
        # A dead worker's messages are requeued after 2 s of silence; check on every broker command.
        "broker": {"url": redis_url, "namespace": f"crash-{tmp_path.name}", "heartbeat_timeout_ms": 2000,
                   "maintenance_chance": 1_000_000},
        "mysql": {"host": env["MYSQL_HOST"], "port": int(env["MYSQL_PORT"]), "password": env["MYSQL_PASSWORD"],
                  "database": database},
        "search": {"enabled": False},
        "minio": {"enabled": False},
        "config_files": {"enabled": False},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_worker(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([CLI, "--config", str(config), "worker", "--threads", "1"], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.fault("worker SIGKILLed during a MySQL dump",
                   "nothing under the final name, the point shows as interrupted, the requeued message "
                   "completes it, the temp file is removed and the point verifies")
def test_a_worker_killed_mid_dump_leaves_no_artifact_and_the_requeued_run_completes(
    tmp_path, testbed_env, redis_url, mysql_database
):
    fill_database(testbed_env, mysql_database)
    config = write_config(tmp_path, testbed_env, redis_url, mysql_database)
    queued = subprocess.run([CLI, "--config", str(config), "backup", "--component", "mysql"], capture_output=True, text=True)
    assert queued.returncode == 0, queued.stderr
    storage = Storage(tmp_path / "backups")
    [point] = storage.points("daily")

    worker_log = tmp_path / "worker.log"
    worker = start_worker(config, worker_log)
    try:
        temp = wait_for(lambda: [p for p in point.folder.glob(".mysql_dump.sql.gz.tmp-*") if p.stat().st_size > 0],
                        "the dump to start writing", timeout=60)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)

    assert temp, "the dump was caught in the middle"
    assert not (point.folder / "mysql_dump.sql.gz").exists()
    assert point.manifest().status == "running"
    assert point.status() == "interrupted", "nobody works on it any more, and it is not complete"

    worker = start_worker(config, worker_log)
    try:
        wait_for(lambda: point.manifest().status != "running", f"the requeued run (log: {worker_log})", timeout=180)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    manifest = point.manifest()
    assert manifest.status == "complete", manifest.components
    assert manifest.components["mysql"].counts["chunk"] == 2**18
    assert (point.folder / "mysql_dump.sql.gz").is_file()
    assert not list(point.folder.glob(".*.tmp-*")), "the killed run's temp file is cleaned up"
    verified = subprocess.run([CLI, "--config", str(config), "verify", point.ref], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
