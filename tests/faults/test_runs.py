"""Runs that must end honestly: two local backups at once, the storage root filling up while outcomes are
saved, a knowledge base that is not in the point, `backup --wait` with no worker, operator input that
cannot work (unknown components, --at in the future or before the first point), and restore results
printed in words."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from core import locks
from core.points import Storage
from testbed import settings as tb
from testbed.polling import wait_for
from testbed.seed import remove, seed
from tests.faults.harness import cli, fingerprint, kill, start_cli, text_of, write_config
from tests.faults.test_concurrency import ragflow_dir
from tests.faults.test_storage import small_root  # noqa: F401 - the 8 MiB tmpfs fixture

PAGE = 4096


def said(done: subprocess.CompletedProcess) -> str:
    return " ".join((done.stdout + done.stderr).split())


def config_only(tmp_path: Path, root: Path, **extra) -> Path:
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(root), "ragflow_dir": str(ragflow_dir(tmp_path)), "minio": {"enabled": False},
        "mysql": {"enabled": False}, "search": {"enabled": False}, "redis": {"enabled": False}, **extra})


def history(root: Path) -> dict[str, str]:
    """point -> status of its (last) line in logs/backup_history.log."""
    path = root / "logs" / "backup_history.log"
    lines = path.read_text().splitlines() if path.is_file() else []
    return {line["point"]: line["status"] for line in map(json.loads, lines)}


# ---------------------------------------------------------------- two at once


@pytest.mark.fault("two `backup --local` at once on one storage root",
                   "the second says 'a backup into ROOT is already running (pid N) ... waiting for it to end' and "
                   "creates no point until the first has finished; both end complete (never two partial points)")
def test_a_second_local_backup_waits_for_the_first_and_both_complete(tmp_path):
    root = tmp_path / "backups"
    config = config_only(tmp_path, root)
    lock = root / "locks" / "backup-run.lock"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_cli(config, first_log, "backup", "--local")
    second = None
    try:
        # Caught holding the run lock (its pid is written in it), then hung there by SIGSTOP.
        wait_for(lambda: lock.is_file() and lock.read_text().split()[:1] == [str(first.pid)], "the first run's lock",
                 timeout=60, interval=0.001)
        os.killpg(first.pid, signal.SIGSTOP)
        assert first.poll() is None and locks.is_held(lock), "the first run was caught while running"
        points_then = Storage(root).points("daily")
        second = start_cli(config, second_log, "backup", "--local")
        wait_for(lambda: "waiting for it to end" in text_of(second_log), "the second run to say it waits", timeout=60)
        assert f"a backup into {root} is already running (pid {first.pid})" in " ".join(text_of(second_log).split())
        assert Storage(root).points("daily") == points_then  # the second created no point
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert first.wait(120) == 0, text_of(first_log)
    assert second.wait(120) == 0, text_of(second_log)
    points = Storage(root).points("daily")
    assert [p.manifest().status for p in points] == ["complete", "complete"]


# ---------------------------------------------------------------- the storage root full


def fill(root: Path, leave_pages: int) -> Path:
    """A filler file that leaves exactly `leave_pages` free pages on the tmpfs at `root`."""
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while os.write(fd, bytes(PAGE)) == PAGE:
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    size = filler.stat().st_size // PAGE * PAGE
    os.truncate(filler, size)
    os.truncate(filler, size - leave_pages * PAGE)
    return filler


def full_config(tmp_path: Path, root: Path, inbox) -> Path:
    config = config_only(tmp_path, root, notify={"urls": [inbox.url], "min_interval_seconds": 0, "rpo_hours": {}})
    # An archive of some pages (random text compresses little), so that removing it makes room for an outcome.
    (tmp_path / "ragflow" / "docker" / "certs.yml").write_text(base64.b64encode(os.urandom(96 << 10)).decode())
    assert cli(config, "backup", "--local").returncode == 0
    return config


@pytest.mark.fault("storage root full mid-backup: the config archive fits, the Git history and the outcome do "
                   "not (ENOSPC raised again while saving the record)",
                   "no traceback; the point ends failed with 'storage full' in its error (the unrecorded archive is "
                   "removed to make room for the record), exit 1, notified, its line in backup_history.log; the "
                   "next run completes once there is room")
def test_a_storage_root_full_while_saving_ends_the_point_failed_notified_and_logged(tmp_path, small_root, inbox):
    config = full_config(tmp_path, small_root, inbox)
    [before] = Storage(small_root).points("daily")
    archive_pages = -(-(before.folder / "config_backup.tar.gz").stat().st_size // PAGE)
    filler = fill(small_root, leave_pages=archive_pages + 2)  # + the new manifest and backup.log

    done = cli(config, "backup", "--local")
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, said(done)
    point = Storage(small_root).points("daily")[-1]
    manifest = point.manifest()
    assert point != before and manifest.status == "failed", said(done) + text_of(point.folder / "backup.log")
    assert manifest.components["config"].error.startswith("storage full: ")
    assert f"the file system of the storage root {small_root} is full" in manifest.components["config"].error
    assert "storage full" in said(done)
    assert history(small_root)[point.ref] == "failed"
    assert any(point.ref in title for title in inbox.titles()) and "storage full" in inbox.text()

    filler.unlink()
    again = cli(config, "backup", "--local")
    assert again.returncode == 0, said(again)
    assert history(small_root)[Storage(small_root).points("daily")[-1].ref] == "complete"


@pytest.mark.fault("storage root full mid-backup with not even room for the outcome (one page left for the new "
                   "point's manifest)",
                   "no traceback, exit 1, 'storage full' said and notified; the point reads 'interrupted', never "
                   "running or complete; once there is room the next run finishes it as failed, writes its "
                   "history line, and completes")
def test_a_storage_root_with_no_room_for_the_outcome_leaves_an_interrupted_point_finished_later(
        tmp_path, small_root, inbox):
    config = full_config(tmp_path, small_root, inbox)
    filler = fill(small_root, leave_pages=1)

    done = cli(config, "backup", "--local")
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, said(done)
    assert "storage full" in said(done) and "storage full" in inbox.text()
    point = Storage(small_root).points("daily")[-1]
    assert point.status() == "interrupted"
    assert any(f"{point.ref} is interrupted" in title for title in inbox.titles())

    filler.unlink()
    again = cli(config, "backup", "--local")
    assert again.returncode == 0, said(again)
    assert point.manifest().status == "failed" and "interrupted" in point.manifest().components["config"].error
    newest = Storage(small_root).points("daily")[-1]
    assert history(small_root)[point.ref] in ("failed", "interrupted") and history(small_root)[newest.ref] == "complete"


# ---------------------------------------------------------------- a knowledge base not in the point


@pytest.fixture
def mysql_point(tmp_path, testbed_env):
    """A seeded RAGFlow database of this test's own and one complete point of it (MySQL only)."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    mysql = tb.mysql(testbed_env, database=database)
    dataset = seed(database=database, mysql=mysql, env=testbed_env, size="tiny")
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "search": {"enabled": False},
        "redis": {"enabled": False}, "config_files": {"enabled": False},
        "mysql": {"host": mysql.host, "port": mysql.port, "user": mysql.user, "database": database,
                  "password": mysql.password.get_secret_value()}})
    try:
        assert cli(config, "backup", "--local").returncode == 0
        yield config, dataset, mysql
    finally:
        remove(dataset, mysql=mysql)


def checksums(mysql) -> dict[str, int]:
    from core import clients

    with clients.mysql_connection(mysql) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        tables = [row[0] for row in cur.fetchall()]
        cur.execute("CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
        return {row[0]: row[1] for row in cur.fetchall()}


@pytest.mark.fault("restore --kb with an id that is not in the point (and one that is no id at all)",
                   "refused before any change or safety point: 'knowledge base ID is not in daily/...: check the "
                   "id ...; nothing was changed' (or 'is not a knowledge base id'), exit 1; no 'rollback failed'")
def test_a_knowledge_base_not_in_the_point_is_refused_before_any_change(tmp_path, mysql_point):
    config, dataset, mysql = mysql_point
    before = checksums(mysql)
    missing = uuid.uuid4().hex

    done = cli(config, "restore", "--kb", missing, "--yes")
    assert done.returncode == 1, said(done)
    assert f"knowledge base {missing} is not in daily/" in said(done) and "nothing was changed" in said(done)
    assert "rollback" not in said(done)
    bad = cli(config, "restore", "--kb", "../../etc", "--yes")
    assert bad.returncode == 1 and "'../../etc' is not a knowledge base id" in said(bad)
    assert checksums(mysql) == before
    assert not list((tmp_path / "backups" / "safety").iterdir())
    audit = tmp_path / "backups" / "logs" / "audit.log"
    assert not [line for line in text_of(audit).splitlines() if json.loads(line)["action"] == "restore"]

    kb = dataset.kb_ids[0]  # one that is there is restored, and said in words
    restored = cli(config, "restore", "--kb", kb, "--yes")
    assert restored.returncode == 0, said(restored)
    assert f"knowledge base {kb} in {mysql.database}: rows knowledgebase 1" in said(restored)
    assert "KBRestoreResult(" not in restored.stdout


@pytest.mark.fault("restore --dry-run of what the restore itself would refuse (a knowledge base not in the point, "
                   "an id that is no id, with or without a point)",
                   "the dry run says the restore would be refused and why, exit 1, instead of showing a plan and "
                   "'nothing was changed' with exit 0; a knowledge base that is there still gets its plan")
def test_a_dry_run_refuses_what_the_restore_would_refuse(tmp_path, mysql_point):
    config, dataset, _ = mysql_point
    missing = uuid.uuid4().hex

    planned = cli(config, "restore", "--kb", missing, "--dry-run")
    assert planned.returncode == 1, said(planned)
    assert "the restore would be refused" in said(planned)
    assert f"knowledge base {missing} is not in daily/" in said(planned)
    nothing_yet = write_config(tmp_path / "empty.yml", {"storage_root": str(tmp_path / "empty"),
                                                         "mysql": {"enabled": False}, "search": {"enabled": False},
                                                         "config_files": {"enabled": False}})
    no_id = cli(nothing_yet, "restore", "--kb", "nope", "--dry-run")
    assert no_id.returncode == 1 and "'nope' is not a knowledge base id" in said(no_id), said(no_id)
    kb = dataset.kb_ids[0]
    fine = cli(config, "restore", "--kb", kb, "--dry-run")
    assert fine.returncode == 0 and "dry run: nothing was changed" in said(fine), said(fine)
    assert not list((tmp_path / "backups" / "safety").iterdir())


# ---------------------------------------------------------------- no worker


@pytest.mark.fault("`backup --wait` with no worker consuming the queue (a real Redis broker)",
                   "refused at once, exit 1: 'no worker is consuming the queue (no heartbeat in broker namespace "
                   "...)' with how to start one (`ragflow-backup ... worker`) or `--local`; nothing queued, no "
                   "point; without --wait the run is queued with that warning")
def test_backup_wait_without_a_worker_says_so_at_once_and_queues_nothing(tmp_path, redis_url):
    import redis

    namespace = f"no-worker-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "backups"
    config = config_only(tmp_path, root, broker={"url": redis_url, "namespace": namespace})
    client = redis.Redis.from_url(redis_url)

    done = cli(config, "backup", "--wait", timeout=120)
    assert done.returncode == 1, said(done)
    assert f"no worker is consuming the queue (no heartbeat in broker namespace '{namespace}'" in said(done)
    assert "worker`" in said(done) and "--local" in said(done) and "nothing was queued" in said(done)
    assert Storage(root).points("daily") == [] and client.llen(f"{namespace}:backup") == 0

    queued = cli(config, "backup", timeout=120)
    assert queued.returncode == 0, said(queued)
    assert "warning: no worker is consuming the queue" in said(queued)
    assert client.llen(f"{namespace}:backup") == 1
    client.delete(*client.keys(f"{namespace}:*"))


# ---------------------------------------------------------------- operator input that cannot work


@pytest.mark.fault("`--component` naming an unknown component (backup and restore); restore `--at` in the future "
                   "or before the first point",
                   "each refused before anything is created or changed, naming what is wrong and the choices "
                   "(exit 2), no traceback")
def test_unknown_components_and_impossible_moments_are_refused_naming_them(tmp_path, config_point):
    config, point = config_point
    root = tmp_path / "backups"
    before = sorted(p.ref for p in Storage(root).points())

    backup = cli(config, "backup", "--local", "-C", "nosuch")
    assert backup.returncode == 2 and "unknown component(s) nosuch; choose from mysql, postgres, search, redis, config" in said(backup)
    restore = cli(config, "restore", "-C", "nosuch", "--yes")
    assert restore.returncode == 2 and "unknown component(s) nosuch; choose from config, mysql, postgres, search, minio, redis" in said(restore)
    future = cli(config, "restore", "--at", "2999-01-01T00:00:00+00:00", "-C", "config", "--yes")
    assert future.returncode == 2 and "--at 2999-01-01T00:00:00+00:00 is in the future" in said(future)
    early = cli(config, "restore", "--at", "2000-01-01T00:00:00+00:00", "-C", "config", "--yes")
    assert early.returncode == 2, said(early)
    assert f"no complete point at or before --at 2000-01-01T00:00:00+00:00: the first is {point.ref}" in said(early)
    for done in (backup, restore, future, early):
        assert "Traceback" not in done.stdout + done.stderr
    assert sorted(p.ref for p in Storage(root).points()) == before


@pytest.mark.fault("`restore -C binlog` (the binlog archive, which is only replayed by a MySQL restore)",
                   "refused before anything is changed, saying a MySQL restore replays the archive and to use "
                   "`restore --at T` (exit 2); a whole restore's plan never lists binlog")
def test_the_binlog_archive_is_never_planned_nor_chosen_as_a_restore_of_its_own(tmp_path, config_point, testbed_env):
    config, point = config_point
    root = tmp_path / "backups"
    with_binlog = write_config(tmp_path / "binlog.yml", {
        **yaml.safe_load(config.read_text()), "redis": {"enabled": False}, "binlog": {"enabled": True},
        "mysql": {"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]),
                  "database": f"t_{uuid.uuid4().hex[:10]}", "password": testbed_env["MYSQL_PASSWORD"]}})
    before = fingerprint(root)

    chosen = cli(with_binlog, "restore", "-C", "binlog", "--yes")
    assert chosen.returncode == 2, said(chosen)
    assert "binlog is not restored by itself: a MySQL restore replays the binlog archive" in said(chosen)
    assert "use `ragflow-backup restore --at T`" in said(chosen)
    whole = cli(with_binlog, "restore", "--dry-run", "--yes")
    assert whole.returncode == 0, said(whole)
    assert f"from point {point.ref}" in said(whole) and "components: config (everything they hold)" in said(whole)
    assert "binlog" not in said(whole)
    for done in (chosen, whole):
        assert "Traceback" not in done.stdout + done.stderr
    assert fingerprint(root) == before
    assert not (root / "safety").is_dir() or not list((root / "safety").iterdir())


# ---------------------------------------------------------------- results in words


@pytest.mark.fault("the restore result table (it printed raw dataclasses: ConfigRestoreResult(...))",
                   "each component's outcome in words and numbers ('202 files ... checked', 'N keys restored')")
def test_the_restore_table_says_what_was_restored_in_words(tmp_path, config_point):
    config, point = config_point
    (tmp_path / "ragflow" / "docker" / ".env").write_text("MYSQL_PASSWORD=changed\n")

    done = cli(config, "restore", "--point", point.ref, "-C", "config", "--yes")
    assert done.returncode == 0, said(done)
    assert "1 file written, 201 unchanged in" in said(done) and "202 of 202 checked" in said(done)
    assert "RestoreResult(" not in done.stdout


@pytest.mark.fault("`backup --wait` with a worker running (a real Redis broker)",
                   "says how many workers it heard from, prints a line per finished component ('config: ok in "
                   "Ns (1/1 done)') while waiting, and ends with the point complete, exit 0")
def test_backup_wait_with_a_worker_shows_progress_and_completes(tmp_path, redis_url):
    import redis

    namespace = f"with-worker-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "backups"
    config = config_only(tmp_path, root, broker={"url": redis_url, "namespace": namespace})
    log = tmp_path / "worker.log"
    worker = start_cli(config, log, "worker", "--threads", "1")
    try:
        wait_for(lambda: "worker started" in text_of(log), "the worker", timeout=60)
        client = redis.Redis.from_url(redis_url)
        wait_for(lambda: client.zcard(f"{namespace}:__heartbeats__") > 0, "the worker's first heartbeat", timeout=60)
        done = cli(config, "backup", "--wait", timeout=300)
    finally:
        kill(worker, signal.SIGTERM)
    assert done.returncode == 0, said(done) + text_of(log)
    assert "1 worker(s) heard from" in said(done) and "(1/1 done)" in said(done) and "config: ok in" in said(done)
    assert Storage(root).points("daily")[-1].manifest().status == "complete"
    client.delete(*client.keys(f"{namespace}:*"))


def age_identity(folder: Path, name: str) -> tuple[Path, str]:
    path = folder / name
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    return path, public


@pytest.mark.fault("restore of an encrypted point with an identity file that does not exist or is not the key",
                   "refused before any change and before a safety point, naming the identity file; exit 1; with "
                   "the right identity the restore works")
def test_a_wrong_or_missing_identity_is_refused_before_any_change(tmp_path):
    key, public = age_identity(tmp_path, "key.txt")
    other, _ = age_identity(tmp_path, "other.txt")
    root = tmp_path / "backups"
    config = config_only(tmp_path, root, encryption={"enabled": True, "recipients": [public]})
    assert cli(config, "backup", "--local").returncode == 0
    [point] = Storage(root).points("daily")
    env = tmp_path / "ragflow" / "docker" / ".env"
    env.write_text("MYSQL_PASSWORD=changed\n")

    for bad in (tmp_path / "nowhere.txt", other):
        done = cli(config, "restore", "--point", point.ref, "-C", "config", "--yes", "--identity", str(bad))
        assert done.returncode == 1 and str(bad) in said(done) and "Traceback" not in said(done), said(done)
    assert env.read_text() == "MYSQL_PASSWORD=changed\n" and not list((root / "safety").iterdir())
    good = cli(config, "restore", "--point", point.ref, "-C", "config", "--yes", "--identity", str(key))
    assert good.returncode == 0, said(good)
    assert env.read_text() == "MYSQL_PASSWORD=secret\n"


@pytest.mark.fault("restore --rollback with state/last_restore.json tampered (not JSON, or naming what we never "
                   "wrote)",
                   "refused naming the file and how to roll back by hand; exit 1, no traceback, nothing changed")
def test_a_tampered_restore_state_is_refused_by_rollback(tmp_path, config_point):
    config, point = config_point
    state = tmp_path / "backups" / "state" / "last_restore.json"
    state.parent.mkdir(exist_ok=True)
    env = tmp_path / "ragflow" / "docker" / ".env"
    env.write_text("MYSQL_PASSWORD=changed\n")
    for text in ("{not json", json.dumps({"safety": "/etc", "began_at": 5, "components": ["rm -rf"]})):
        state.write_text(text)
        done = cli(config, "restore", "--rollback", "--yes")
        assert done.returncode == 1 and "Traceback" not in said(done), said(done)
        assert f"{state} is not a restore state this tool wrote" in said(done)
    assert env.read_text() == "MYSQL_PASSWORD=changed\n"
