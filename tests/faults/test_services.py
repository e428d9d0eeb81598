"""MariaDB, Redis and Elasticsearch stopped, hung (SIGSTOP) and restarted during a backup run, on servers
of the test's own: the run fails naming the service, the operator is notified, no point is marked
complete that is not, the existing points stay byte-identical, and the next run completes."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.points import Storage
from testbed.polling import wait_for
from tests.conftest import unique
from tests.faults.harness import cli, fingerprint, write_config

FAULTS = ("stopped", "hung")


@dataclass
class Target:
    """One component backed up from one private server."""

    component: str
    server: object
    section: dict  # the component's config section
    names: str  # how an error must name the service
    artifact: str
    busy: Callable[[Path], bool]  # true once a run is in the middle of its work (point folder given)


def mysql_target(server) -> Target:
    with server.connection() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS rag_flow")
        cur.execute("CREATE TABLE IF NOT EXISTS rag_flow.chunk (id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(256))")
        cur.execute("SELECT COUNT(*) FROM rag_flow.chunk")
        if cur.fetchone()[0] == 0:
            cur.execute("INSERT INTO rag_flow.chunk (body) VALUES (REPEAT(MD5(RAND()), 8))")
            for _ in range(17):
                cur.execute("INSERT INTO rag_flow.chunk (body) SELECT REPEAT(MD5(RAND()), 8) FROM rag_flow.chunk")
    section = {"host": "127.0.0.1", "port": server.port, "user": "root", "password": server.password,
               "database": "rag_flow", "stall_timeout_seconds": 10,
               "full_every_days": 0}  # full dumps: their temp file grows as mysqldump streams (`busy` below)
    return Target("mysql", server, section, f"127.0.0.1:{server.port}", "mysql_dump.sql.gz",
                  lambda folder: any(p.stat().st_size > 0 for p in folder.glob(".mysql_dump.sql.gz.tmp-*")))


def redis_target(server) -> Target:
    client = server.client(db=1)
    if not client.dbsize():
        for start in range(0, 200_000, 10_000):
            with client.pipeline(transaction=False) as pipe:
                for n in range(start, start + 10_000):
                    pipe.set(f"ragflow:key:{n}", f"value {n}" * 4)
                pipe.execute()
    section = {"enabled": True, "host": "127.0.0.1", "port": server.port, "password": server.password, "db": 1}
    # Busy: some client's last command is a SCAN (the keys are spooled to an unlinked file, unseen).
    return Target("redis", server, section, f"Redis at 127.0.0.1:{server.port}", "redis_dump.rdb.gz",
                  lambda folder: any(c.get("cmd") == "scan" for c in server.client().client_list()))


def search_target(server) -> Target:
    from core import clients

    repository = unique("repo_")
    settings = server.settings(repository)
    client = clients.search_client(settings)
    if not client.indices.exists(index="ragflow_fault"):
        client.indices.create(index="ragflow_fault", settings={"number_of_shards": 1, "number_of_replicas": 0})
        import os

        body = []
        for _ in range(2000):
            body += [{"index": {"_index": "ragflow_fault"}}, {"kb_id": "kb", "content": os.urandom(512).hex()}]
        client.bulk(operations=body, refresh=True)
    # Registered by us, throttled, at the place the product expects: a snapshot lasts a few seconds.
    client.snapshot.create_repository(name=repository, body={"type": "fs", "settings": {
        "location": settings.repository_path, "max_snapshot_bytes_per_sec": "200kb"}})
    section = {"engine": "elasticsearch", "url": server.url, "user": "elastic", "password": server.password,
               "repository": repository, "repository_path": settings.repository_path, "indices": ["ragflow_*"],
               "snapshot_timeout_seconds": 120}
    return Target("search", server, section, server.url, "search_snapshot.json",
                  lambda folder: "into repository" in _text(folder / "backup.log"))


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.fixture(params=["mysql", "redis", "search"])
def target(request) -> Target:
    if request.param == "mysql":
        return mysql_target(request.getfixturevalue("private_mariadb"))
    if request.param == "redis":
        return redis_target(request.getfixturevalue("private_redis"))
    return search_target(request.getfixturevalue("private_elasticsearch"))


def config_for(tmp_path: Path, target: Target, inbox) -> Path:
    sections = {"mysql": {"enabled": False}, "search": {"enabled": False}, "redis": {"enabled": False}}
    sections[target.component] = target.section
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "minio": {"enabled": False}, "config_files": {"enabled": False},
        "notify": {"urls": [inbox.url], "min_interval_seconds": 0}, **sections})


def newest(tmp_path: Path):
    return Storage(tmp_path / "backups").points("daily")[-1]


def backup(config: Path, component: str):
    return cli(config, "backup", "--local", "--component", component, timeout=400)


def assert_failed_and_recovers(tmp_path, target: Target, inbox, config: Path, done, before: dict) -> None:
    """What every case ends with: the failed run is reported and notified, nothing existing changed,
    and once the fault is gone the next run completes (and the recovery is notified)."""
    assert done.returncode == 1, done.stdout
    point = newest(tmp_path)
    manifest = point.manifest()
    assert manifest.status == "failed", manifest
    error = manifest.components[target.component].error
    assert target.names in error, error
    assert not (point.folder / target.artifact).exists()
    assert not list(point.folder.glob(".*.tmp-*")), "no temp file is left in a finished point"
    history = [json.loads(line) for line in (tmp_path / "backups" / "logs" / "backup_history.log").read_text().splitlines()]
    assert history[-1]["status"] == "failed" and target.names in history[-1]["errors"][target.component]
    wait_for(lambda: any(f"{point.ref} is failed" in t for t in inbox.titles()), "the failure notification", 30)
    assert target.names in inbox.text()
    after = fingerprint(tmp_path / "backups", ("daily",))
    assert {path: after.get(path) for path in before} == before, "the existing points are byte-identical"

    again = backup(config, target.component)
    assert again.returncode == 0, again.stdout
    assert newest(tmp_path).manifest().status == "complete"
    wait_for(lambda: any("complete again" in t for t in inbox.titles()), "the recovery notification", 30)
    verified = cli(config, "verify", newest(tmp_path).ref)
    assert verified.returncode == 0, verified.stdout


@pytest.mark.fault("MariaDB / Redis / Elasticsearch stopped during a run",
                   "the component fails naming the server (host:port or URL), the point is failed, a failure "
                   "is notified; the next run completes and a recovery is notified")
@pytest.mark.fault("MariaDB / Redis / Elasticsearch hung (SIGSTOP) during a run",
                   "client timeouts end the run (MySQL: connect timeout and a stall timeout on the dump); the "
                   "component fails naming the server, a failure is notified; after SIGCONT the next run completes")
@pytest.mark.parametrize("fault", FAULTS)
def test_a_stopped_or_hung_server_fails_the_run_naming_it_and_the_next_run_completes(tmp_path, target, fault, inbox):
    config = config_for(tmp_path, target, inbox)
    first = backup(config, target.component)
    assert first.returncode == 0, first.stdout
    before = fingerprint(tmp_path / "backups", ("daily",))

    (target.server.stop if fault == "stopped" else target.server.pause)()
    try:
        done = backup(config, target.component)
    finally:
        target.server.resume()
        if target.server.pid() is None:
            target.server.start()
        target.server.wait_ready()
    assert_failed_and_recovers(tmp_path, target, inbox, config, done, before)


@pytest.mark.fault("MariaDB / Redis / Elasticsearch hung (SIGSTOP) in the middle of a run",
                   "MySQL: the dump's stall timeout kills mysqldump; Redis: the socket timeout; Elasticsearch: "
                   "the request timeout; the component fails naming the server, nothing is kept")
@pytest.mark.fault("MariaDB / Redis / Elasticsearch restarted in the middle of a run",
                   "the cut-off dump, scan or snapshot is refused (not kept, not complete), the failure names "
                   "the server; the next run completes")
@pytest.mark.parametrize("fault", ["hung", "restarted"])
def test_a_server_hung_or_restarted_mid_run_never_leaves_a_complete_point(tmp_path, target, fault, inbox):
    config = config_for(tmp_path, target, inbox)
    first = backup(config, target.component)
    assert first.returncode == 0, first.stdout
    before = fingerprint(tmp_path / "backups", ("daily",))
    folders = {p.folder for p in Storage(tmp_path / "backups").points("daily")}

    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault("done", backup(config, target.component)))
    runner.start()
    try:
        def busy():
            fresh = [p for p in Storage(tmp_path / "backups").points("daily") if p.folder not in folders]
            return fresh and target.busy(fresh[0].folder)
        wait_for(busy, "the run to be in the middle of its work", timeout=120, interval=0.01)
        if fault == "hung":
            target.server.pause()
            runner.join(300)
        else:
            target.server.restart()
            runner.join(300)
    finally:
        target.server.resume()
        runner.join(300)
        target.server.wait_ready()
    done = result["done"]
    point = newest(tmp_path)
    if done.returncode == 0:
        # The work was already done when the fault struck (a restart after the last byte): it must verify.
        assert fault == "restarted", done.stdout
        assert cli(config, "verify", point.ref).returncode == 0
        return
    assert_failed_and_recovers(tmp_path, target, inbox, config, done, before)
