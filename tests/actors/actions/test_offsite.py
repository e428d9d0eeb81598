"""The offsite copy: points and the MinIO mirror in a restic repository (a folder standing in for a USB
disk, and a bucket of the test bed's MinIO as an S3 backend), status, retention, and a restore with the
local storage root gone."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from actors.actions.offsite import Restic, copy_point, forget
from actors.actions.offsite_choice import choose_search_repo
from actors.actions.runs import run_component
from actors.minio.mirror import reconcile
from agent.cli import app
from core import audit, clients
from core.config import ConfigError, Settings, load_settings
from core.points import Storage
from core.restic import Snapshot
from testbed import settings as tb
from testbed.seed import Dataset, remove, seed

PASSWORD = "correct horse battery staple"


def cli(config: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200, env=env)


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def password_file(folder: Path, text: str = PASSWORD) -> Path:
    path = folder / "offsite.pass"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def config_only(tmp_path) -> Path:
    """A config whose only component is RAGFlow's config files: a complete point in milliseconds."""
    docker = tmp_path / "ragflow" / "docker"
    docker.mkdir(parents=True)
    (docker / ".env").write_text("MYSQL_PASSWORD=not-a-real-one\n")
    (docker / "docker-compose.yml").write_text("services: {}\n")
    return docker


def folder_config(tmp_path: Path, docker: Path, repository: Path, password: Path,
                  offsite_retention: dict[str, int] | None = None, **sections) -> Path:
    """A config whose offsite repository is a folder; `sections` (e.g. retention=keep(1)) are added to it."""
    offsite = {"enabled": True, "repository": str(repository), "password_file": str(password)}
    if offsite_retention is not None:
        offsite["retention"] = offsite_retention
    return write_config(
        tmp_path / "config.yml", storage_root=str(tmp_path / "backups"), ragflow_dir=str(docker),
        mysql={"enabled": False}, minio={"enabled": False}, search={"enabled": False}, offsite=offsite, **sections)


def keep(daily: int) -> dict[str, int]:
    """A retention policy of `daily` daily points and nothing else."""
    return {"daily": daily, "weekly": 0, "monthly": 0}


def copied_daily_points(settings: Settings, days: int, pins: dict[int, str] | None = None) -> Storage:
    """`days` daily points of the config files from 2026-11-01 02:00 UTC, each copied offsite; the point of day
    `d` in `pins` is pinned with its label before its copy."""
    storage = Storage(settings.storage_root)
    start = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    for day in range(days):
        point = storage.new_point(["config"], at=start + timedelta(days=day))
        run_component(settings, point, "config")
        if pins and day in pins:
            point.pin(pins[day])
        copy_point(settings, point)
    return storage


def test_a_point_reaches_a_folder_repository_and_status_shows_it(tmp_path, config_only):
    config = folder_config(tmp_path, config_only, tmp_path / "usb" / "ragflow", password_file(tmp_path))
    assert cli(config, "backup", "--local").exit_code == 0

    copied = cli(config, "offsite", "copy")
    again = cli(config, "offsite", "copy", "--no-mirror")
    status = cli(config, "offsite", "status")

    assert copied.exit_code == 0, copied.output
    assert "already offsite" in again.output  # a retried copy sends nothing twice
    assert status.exit_code == 0, status.output
    assert "config" in status.output and "daily/" in status.output and "repository size" in status.output
    settings = load_settings(config)
    [snapshot] = Restic(settings).snapshots("point")
    assert snapshot.tags["component"] == ["config"] and snapshot.point.startswith("daily/")
    assert (tmp_path / "usb" / "ragflow" / "config").is_file()
    lines = list(audit.read(settings.storage_root, action="offsite-copy"))
    assert [line["result"] for line in lines][:1] == ["ok"]
    assert "offsite-copy" in cli(config, "audit", "--action", "offsite-copy", "--json").output
    from prometheus_client import CollectorRegistry, generate_latest

    from agent.health import collect
    from agent.metrics import report_metrics

    class Report:
        def collect(self):
            return report_metrics(collect(settings, Storage(settings.storage_root)))

    registry = CollectorRegistry()
    registry.register(Report())
    text = generate_latest(registry).decode()
    assert 'ragflow_backup_offsite_last_run_timestamp_seconds{action="offsite-copy",result="ok"} 1' in text
    assert 'ragflow_backup_offsite_last_run_timestamp_seconds{action="offsite-copy",result="failed"} 0.0' in text


def test_a_point_reaches_an_s3_repository_in_a_second_bucket(tmp_path, config_only, testbed_env, bucket):
    env_file = tmp_path / "s3.env"
    env_file.write_text(f"AWS_ACCESS_KEY_ID={testbed_env['MINIO_ACCESS_KEY']}\n"
                        f"AWS_SECRET_ACCESS_KEY={testbed_env['MINIO_SECRET_KEY']}\n")
    env_file.chmod(0o600)
    config = write_config(
        tmp_path / "config.yml", storage_root=str(tmp_path / "backups"), ragflow_dir=str(config_only),
        mysql={"enabled": False}, minio={"enabled": False}, search={"enabled": False},
        offsite={"enabled": True, "repository": f"s3:http://{testbed_env['MINIO_ENDPOINT']}/{bucket}/ragflow",
                 "env_file": str(env_file)})
    assert cli(config, "backup", "--local").exit_code == 0

    copied = cli(config, "offsite", "copy", env={"RAGFLOW_BACKUP_OFFSITE_PASSWORD": PASSWORD})
    checked = cli(config, "offsite", "check", "--read-data-subset", env={"RAGFLOW_BACKUP_OFFSITE_PASSWORD": PASSWORD})

    assert copied.exit_code == 0, copied.output
    assert checked.exit_code == 0, checked.output
    client = clients.minio_client(tb.minio(testbed_env))
    names = [item.object_name for item in client.list_objects(bucket, prefix="ragflow/", recursive=True)]
    assert "ragflow/config" in names and any(name.startswith("ragflow/snapshots/") for name in names)
    assert all(testbed_env["MINIO_SECRET_KEY"] not in line for line in (tmp_path / "backups" / "logs" / "audit.log").read_text().splitlines())


def test_a_wrong_password_is_a_clear_error_naming_where_it_came_from(tmp_path, config_only):
    repository = tmp_path / "usb" / "ragflow"
    config = folder_config(tmp_path, config_only, repository, password_file(tmp_path))
    assert cli(config, "offsite", "init").exit_code == 0
    password_file(tmp_path, "not the password")

    result = cli(config, "offsite", "snapshots")
    restore = cli(config, "restore", "--from", "offsite", "--yes")

    assert result.exit_code == 1
    assert "wrong offsite repository password" in result.output and str(tmp_path / "offsite.pass") in result.output
    assert "not the password" not in result.output
    assert restore.exit_code == 1 and "wrong offsite repository password" in restore.output


def test_a_missing_repository_and_a_missing_password_say_what_to_do(tmp_path, config_only):
    config = folder_config(tmp_path, config_only, tmp_path / "nowhere", password_file(tmp_path))
    missing = cli(config, "offsite", "snapshots")
    assert missing.exit_code == 1 and "offsite init" in missing.output

    (tmp_path / "offsite.pass").unlink()
    no_file = cli(config, "offsite", "snapshots")
    assert no_file.exit_code == 1 and "offsite.password_file" in no_file.output and "does not exist" in no_file.output

    raw = yaml.safe_load(config.read_text())
    del raw["offsite"]["password_file"]
    config.write_text(yaml.safe_dump(raw))
    no_password = cli(config, "offsite", "snapshots", env={"RAGFLOW_BACKUP_OFFSITE_PASSWORD": "", "RESTIC_PASSWORD": ""})
    assert no_password.exit_code == 1 and "RAGFLOW_BACKUP_OFFSITE_PASSWORD" in no_password.output


def test_a_password_in_the_config_file_is_refused(tmp_path):
    config = write_config(tmp_path / "config.yml", storage_root=str(tmp_path / "b"),
                          offsite={"repository": "/x", "password": "hunter2"})
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert "At 'offsite.password'" in str(error.value) and "hunter2" not in str(error.value)


def test_offsite_retention_keeps_the_policy(tmp_path, config_only):
    """Ten daily points copied with their own times; keep 3 daily leaves the newest three."""
    config = folder_config(tmp_path, config_only, tmp_path / "usb", password_file(tmp_path), offsite_retention=keep(3))
    settings = load_settings(config)
    copied_daily_points(settings, 10)

    forget(settings)

    kept = sorted(s.point for s in Restic(settings).snapshots("point"))
    assert kept == [f"daily/2026-11-{d:02d}" for d in (8, 9, 10)]


# ---------------------------------------------------------------- restore with the storage root gone


@pytest.fixture
def ragflow(tmp_path, testbed_env, private_minio) -> Iterator[tuple[Dataset, dict, Path]]:
    """A tiny seeded RAGFlow (MySQL, objects in a private MinIO, config), a complete point and the mirror,
    both copied to a folder repository."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    services = {"mysql": tb.mysql(testbed_env, database=database), "minio": private_minio.settings()}
    dataset = seed(database=database, ragflow_dir=tmp_path / "ragflow" / "docker", env=testbed_env, size="tiny", **services)
    config = write_config(
        tmp_path / "config.yml", storage_root=str(tmp_path / "backups"), ragflow_dir=str(dataset.ragflow_dir),
        mysql={"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]), "database": database,
               "password": testbed_env["MYSQL_PASSWORD"]},
        minio={"endpoint": private_minio.endpoint, "access_key": private_minio.access_key,
               "secret_key": private_minio.secret_key},
        search={"enabled": False},
        offsite={"enabled": True, "repository": str(tmp_path / "usb" / "ragflow"),
                 "password_file": str(password_file(tmp_path))})
    settings = load_settings(config)
    assert reconcile(settings).complete
    assert cli(config, "backup", "--local").exit_code == 0
    copied = cli(config, "offsite", "copy")
    assert copied.exit_code == 0, copied.output
    yield dataset, services, config
    remove(dataset, **services)


def row_counts(settings) -> dict[str, int]:
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        tables = [row[0] for row in cur.fetchall()]
        counts = {}
        for table in tables:
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            counts[table] = cur.fetchone()[0]
        return counts


def object_count(client, buckets: list[str]) -> int:
    return sum(1 for b in buckets if client.bucket_exists(b) for _ in client.list_objects(b, recursive=True))


def test_with_the_storage_root_gone_mysql_and_objects_come_back_from_offsite(ragflow):
    dataset, services, config = ragflow
    settings = load_settings(config)
    rows_before = row_counts(settings)
    minio = clients.minio_client(services["minio"])
    objects_before = object_count(minio, dataset.buckets)
    assert objects_before > 0 and sum(rows_before.values()) > 0

    shutil.rmtree(settings.storage_root)  # the NAS is gone...
    with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{dataset.database}`")  # ...and so is the data
    lost = dataset.buckets[0]
    for item in list(minio.list_objects(lost, recursive=True)):
        minio.remove_object(lost, item.object_name)
    assert object_count(minio, dataset.buckets) < objects_before

    result = cli(config, "restore", "--from", "offsite", "--point", "latest", "-C", "mysql", "-C", "minio", "--yes")

    assert result.exit_code == 0, result.output
    assert row_counts(settings) == rows_before
    assert object_count(minio, dataset.buckets) == objects_before
    assert not list((settings.storage_root / "offsite").glob("restore-*"))  # the fetched copy is gone again
    for folder, dirs, files in os.walk(settings.storage_root):
        for name in dirs:
            assert (Path(folder, name).stat().st_mode & 0o777) == 0o700, Path(folder, name)
        for name in files:
            path = Path(folder, name)
            assert path.is_symlink() or (path.stat().st_mode & 0o777) == 0o600, path


def test_doctor_reports_the_offsite_repository(tmp_path, config_only):
    from agent.doctor import check_offsite

    config = folder_config(tmp_path, config_only, tmp_path / "usb", password_file(tmp_path))
    assert check_offsite(load_settings(config)).status == "warn"  # not created yet
    assert cli(config, "offsite", "init").exit_code == 0
    assert check_offsite(load_settings(config)).status == "ok"
    password_file(tmp_path, "wrong")
    failed = check_offsite(load_settings(config))
    assert failed.status == "fail" and "wrong offsite repository password" in failed.detail


def test_a_permanent_offsite_failure_is_notified_at_once_and_a_transient_one_after_the_last_retry(tmp_path, config_only):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from actors.actions.offsite import OffsiteError, OffsitePermanent
    from actors.tasks import run_offsite_job

    titles: list[str] = []

    class Inbox(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            titles.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["title"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Inbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = folder_config(tmp_path, config_only, tmp_path / "usb", password_file(tmp_path))
    raw = yaml.safe_load(config.read_text())
    raw["notify"] = {"urls": [f"json://127.0.0.1:{server.server_address[1]}/"]}
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)

    def permanent():
        raise OffsitePermanent("wrong offsite repository password (from FILE)")

    def transient():
        raise OffsiteError("connection refused")

    try:
        run_offsite_job(settings, "offsite", "offsite copy of daily/x", permanent, final_attempt=False)  # not raised
        with pytest.raises(OffsiteError):
            run_offsite_job(settings, "offsite-y", "offsite copy of daily/y", transient, final_attempt=False)
        with pytest.raises(OffsiteError):
            run_offsite_job(settings, "offsite-z", "offsite copy of daily/z", transient, final_attempt=True)
    finally:
        server.shutdown()
        server.server_close()

    assert titles == ["ragflow-backup: offsite copy of daily/x failed",
                      "ragflow-backup: offsite copy of daily/z failed after retries"]


def test_the_agent_schedules_the_offsite_jobs_only_when_offsite_is_enabled(tmp_path, config_only):
    from datetime import datetime, timezone

    from actors import tasks
    from agent.agent import Agent, scheduled_jobs

    settings = load_settings(folder_config(tmp_path, config_only, tmp_path / "usb", password_file(tmp_path)))
    sent = []
    agent = Agent(settings, send=lambda actor, args: sent.append((actor, args)))
    for job in ("offsite_mirror", "offsite_check", "offsite_check_data"):
        agent._on_tick(job, datetime.now(timezone.utc))

    assert sent == [(tasks.offsite_mirror, ()), (tasks.offsite_check, (False,)), (tasks.offsite_check, (True,))]
    assert all(scheduled_jobs(settings)[job] for job in ("offsite_mirror", "offsite_check", "offsite_check_data"))
    assert {tasks.offsite_copy.queue_name, tasks.offsite_mirror.queue_name, tasks.offsite_check.queue_name} == {"offsite"}
    settings.offsite.enabled = False
    assert not any(scheduled_jobs(settings)[job] for job in ("offsite_mirror", "offsite_check", "offsite_check_data"))


def hold_a_restic_lock(restic: Restic) -> "subprocess.Popen[bytes]":
    """A restic backup reading stdin that never ends: it holds a lock until killed."""
    from testbed.polling import wait_for

    process = subprocess.Popen([restic.binary, "backup", "--stdin", "--stdin-filename", "held"], env=restic.env,
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: restic.run("list", "locks", "--no-lock").split(), "restic to take a lock", timeout=30, interval=0.1)
    return process


@pytest.mark.fault("restic killed while it holds a lock on the offsite repository",
                   "the next offsite job removes the dead process's stale lock (logged) and runs; a live "
                   "restic's lock is never removed: the job fails saying the repository is locked and how to unlock")
def test_a_stale_lock_from_a_killed_restic_does_not_block_later_jobs_but_a_live_one_is_respected(tmp_path, config_only):
    import signal

    from actors.actions import offsite

    config = folder_config(tmp_path, config_only, tmp_path / "usb" / "ragflow", password_file(tmp_path))
    settings = load_settings(config)
    restic = Restic(settings)
    restic.init()

    live = hold_a_restic_lock(restic)
    try:
        with pytest.raises(offsite.OffsiteError, match="locked by another restic process"):
            offsite.check(settings)
        assert restic.run("list", "locks", "--no-lock").split(), "a live restic's lock was removed"
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()

    assert "no errors were found" in offsite.check(settings)
    assert restic.run("list", "locks", "--no-lock").split() == []
    assert cli(config, "backup", "--local").exit_code == 0
    assert cli(config, "offsite", "copy").exit_code == 0
    assert len(restic.snapshots("point")) == 1


def test_a_pinned_point_is_tagged_offsite_and_offsite_retention_keeps_it(tmp_path, config_only):
    """Ten daily points copied; one pinned before its copy, one pinned after (`pin` re-tags it), one pinned and
    unpinned after; keep 3 daily leaves the newest three and the two pinned."""
    config = folder_config(tmp_path, config_only, tmp_path / "usb", password_file(tmp_path), offsite_retention=keep(3))
    settings = load_settings(config)
    copied_daily_points(settings, 10, pins={1: "before-migration"})

    assert cli(config, "pin", "daily/2026-11-04", "quarter-end").exit_code == 0
    assert cli(config, "pin", "daily/2026-11-05", "for-a-while").exit_code == 0
    assert cli(config, "unpin", "daily/2026-11-05").exit_code == 0
    pins = {s.point: s.tags.get("pin") for s in Restic(settings).snapshots("point") if "pinned" in s.tags}
    assert pins == {"daily/2026-11-02": ["before-migration"], "daily/2026-11-04": ["quarter-end"]}

    forget(settings)

    kept = sorted(s.point for s in Restic(settings).snapshots("point"))
    assert kept == [f"daily/2026-11-{d:02d}" for d in (2, 4, 8, 9, 10)]


def test_a_point_pinned_while_the_repository_is_away_is_tagged_before_offsite_retention_runs(tmp_path, config_only):
    repository = tmp_path / "usb" / "ragflow"
    config = folder_config(tmp_path, config_only, repository, password_file(tmp_path), offsite_retention=keep(1))
    settings = load_settings(config)
    copied_daily_points(settings, 3)
    away = repository.with_name("unplugged")
    repository.rename(away)  # the USB disk unplugged

    pinned = cli(config, "pin", "daily/2026-11-01", "audit-2026")

    assert pinned.exit_code == 0, pinned.output  # the pin itself holds locally
    assert "not re-tagged yet" in pinned.output and "next offsite job" in pinned.output
    away.rename(repository)
    forget(settings)
    kept = sorted(s.point for s in Restic(settings).snapshots("point"))
    assert kept == ["daily/2026-11-01", "daily/2026-11-03"]


def test_a_restore_fetches_the_first_search_repository_copy_made_once_its_point_was_complete():
    day = datetime(2026, 11, 24, 2, 0, 0, 123456, tzinfo=timezone.utc)

    def snap(name: str, at: datetime, **tags: str) -> Snapshot:
        return Snapshot(name, at, ["/x"], {key: [value] for key, value in tags.items()}, "nas")

    point = snap("p", day, kind="point", point="daily/2026-11-24")
    during = snap("a", day + timedelta(minutes=3), kind="search_repo", newest_point_at="20261123T020000Z")
    after = snap("b", day + timedelta(hours=1), kind="search_repo", newest_point_at="20261124T020000Z")
    later = snap("c", day + timedelta(days=1), kind="search_repo", newest_point_at="20261125T020000Z")
    hostile = snap("d", day + timedelta(minutes=5), kind="search_repo", newest_point_at="tomorrow,../x")

    assert choose_search_repo([point, during, hostile, after, later], point).id == "b"
    assert choose_search_repo([point, during], point).id == "a"  # none made since: the newest there is
    assert choose_search_repo([point], point) is None
