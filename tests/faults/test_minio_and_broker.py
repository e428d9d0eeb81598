"""MinIO stopped, hung and restarted during a reconcile and while the agent listens; the Redis broker
flushed, restarted, stopped and hung with messages queued. Private servers only."""
from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from actors.minio.mirror import reconcile
from core.config import Settings
from core.mirror_status import record_reconcile
from core.mirror_store import MirrorStore
from testbed.polling import wait_for
from tests.faults.harness import alert_round, fingerprint, kill, start_cli, text_of, write_config


def put(client, bucket: str, key: str, data: bytes) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def mirror_files(root: Path) -> dict[str, str]:
    """Every mirrored object and version file (not the index, not part files), hashed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".index.sqlite") and p.parent.name != ".tmp"}


def minio_section(server, **extra) -> dict:
    m = server.settings()
    return {"endpoint": m.endpoint, "access_key": m.access_key, "secret_key": m.secret_key.get_secret_value(), **extra}


@pytest.mark.fault("MinIO stopped during a reconcile",
                   "the reconcile is incomplete, names the endpoint, removes nothing from the mirror; an alert "
                   "is sent; the next reconcile completes")
@pytest.mark.fault("MinIO hung (SIGSTOP) during a reconcile",
                   "requests time out after minio.timeout_seconds (2 retries, not minio's 5 x 5 minutes); "
                   "the reconcile is incomplete and removes nothing; an alert is sent")
@pytest.mark.fault("a source unreachable or returning errors during reconcile",
                   "nothing is deleted from the mirror: deletion needs a complete listing and a positive "
                   "'no such key' for the key")
@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_a_reconcile_against_a_stopped_or_hung_minio_removes_nothing_and_alerts(tmp_path, private_minio, inbox, fault):
    minio = private_minio.client()
    minio.make_bucket("kb-one")
    for n in range(5):
        put(minio, "kb-one", f"doc-{n}.txt", f"document {n}".encode())
    settings = Settings(storage_root=tmp_path / "backups", minio=minio_section(private_minio, timeout_seconds=2),
                        mysql={"enabled": False}, search={"enabled": False},
                        notify={"urls": [inbox.url], "min_interval_seconds": 0, "storage_threshold": 1.0})
    assert reconcile(settings).complete
    mirror_root = tmp_path / "backups" / "minio_mirror"
    before = mirror_files(mirror_root)

    (private_minio.stop if fault == "stopped" else private_minio.pause)()
    try:
        report = reconcile(settings)
        record_reconcile(settings, report, None)
        sent = alert_round(settings)
    finally:
        private_minio.resume()
        if private_minio.pid() is None:
            private_minio.start()
        private_minio.wait_ready()
    assert not report.complete and report.removed == 0
    assert private_minio.endpoint in " ".join(report.errors)
    assert mirror_files(mirror_root) == before, "not a byte of the mirror changed"
    assert "ragflow-backup: the MinIO mirror's reconcile is incomplete" in sent
    assert private_minio.endpoint in inbox.text()

    again = reconcile(settings)
    assert again.complete and again.removed == 0
    record_reconcile(settings, again, None)
    assert alert_round(settings) == []


@pytest.mark.fault("MinIO restarted during a reconcile",
                   "keys whose copy was cut off fail the reconcile (retried); nothing present at the source "
                   "is removed; the next reconcile leaves the mirror equal to the source")
def test_a_minio_restarted_mid_reconcile_removes_nothing_and_the_next_reconcile_completes(tmp_path, private_minio, inbox):
    minio = private_minio.client()
    minio.make_bucket("kb-many")
    expected = {f"doc-{n:03d}.txt": f"document {n}".encode() * 200 for n in range(300)}
    for key, data in expected.items():
        put(minio, "kb-many", key, data)
    settings = Settings(storage_root=tmp_path / "backups", minio=minio_section(private_minio, timeout_seconds=5))
    store = MirrorStore(tmp_path / "backups" / "minio_mirror")
    restarter = threading.Thread(target=lambda: (wait_for(lambda: len(list(store.keys("kb-many"))) >= 30, "copies", 60,
                                                          interval=0.01), private_minio.restart()))
    restarter.start()
    try:
        first = reconcile(settings, store=store)
    finally:
        restarter.join(120)
        private_minio.wait_ready()
    assert first.removed == 0
    second = reconcile(settings, store=store)
    assert second.complete and second.removed == 0, second.errors
    assert {key: store.entry("kb-many", key).path.read_bytes() for key in store.keys("kb-many")} == expected
    store.close()


# ---------------------------------------------------------------- while the agent listens


def agent_config(tmp_path: Path, minio_server, broker_url: str, inbox, reconcile_every: str = "") -> Path:
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"),
        "broker": {"url": broker_url, "namespace": "faults", "heartbeat_timeout_ms": 2000},
        "minio": minio_section(minio_server, bucket_discovery_seconds=0.5, timeout_seconds=5),
        "mysql": {"enabled": False}, "search": {"enabled": False}, "config_files": {"enabled": False},
        "schedule": {"backup": "", "verify": "", "reconcile": reconcile_every, "versions_prune": "", "drill": ""},
        "metrics": {"port": 0},
        "notify": {"urls": [inbox.url], "min_interval_seconds": 0, "check_interval_seconds": 1},
    })


def mirrored(tmp_path: Path, bucket: str, key: str) -> bytes | None:
    root = tmp_path / "backups" / "minio_mirror"
    if not (root / ".index.sqlite").exists():
        return None
    store = MirrorStore(root)
    try:
        entry = store.entry(bucket, key)
        return entry.path.read_bytes() if entry and entry.path.is_file() else None
    finally:
        store.close()


@pytest.mark.fault("MinIO stopped, hung (SIGSTOP) or restarted while the agent listens",
                   "the listener notices (refused, or no keep-alive for 60 s), an alert 'minio_events is not "
                   "listening' is sent, it reconnects with backoff, a reconcile of the bucket follows, a "
                   "recovery is sent, and objects written afterwards are mirrored")
@pytest.mark.parametrize("fault", ["stopped", "hung", "restarted"])
def test_minio_stopped_hung_or_restarted_while_listening_is_alerted_and_healed(
    tmp_path, private_minio, private_redis, inbox, fault
):
    minio = private_minio.client()
    minio.make_bucket("kb-listen")
    config = agent_config(tmp_path, private_minio, private_redis.url(2), inbox)
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "run", "--threads", "2")
    try:
        wait_for(lambda: "agent started" in text_of(log), "the agent to start")
        put(minio, "kb-listen", "before.txt", b"before the fault")
        wait_for(lambda: mirrored(tmp_path, "kb-listen", "before.txt"), "the first object")
        if fault == "restarted":
            private_minio.restart()
        else:
            (private_minio.stop if fault == "stopped" else private_minio.pause)()
            try:
                wait_for(lambda: any("minio_events is not listening" in t for t in inbox.titles()),
                         f"the alert (log {log})", timeout=150)
            finally:
                private_minio.resume()
                if private_minio.pid() is None:
                    private_minio.start()
        private_minio.wait_ready()
        put(minio, "kb-listen", "after.txt", b"after the fault")
        wait_for(lambda: mirrored(tmp_path, "kb-listen", "after.txt") == b"after the fault",
                 f"the object written after the fault (log {log})", timeout=150)
        if fault != "restarted":
            wait_for(lambda: any("back to normal" in t for t in inbox.titles()), "the recovery", timeout=60)
        assert mirrored(tmp_path, "kb-listen", "before.txt") == b"before the fault"
    finally:
        kill(agent, 15)
    assert agent.returncode == 0, text_of(log)[-3000:]


@pytest.mark.fault("Redis broker flushed with messages queued",
                   "the queued mirror messages are lost; the scheduled reconcile (schedule.reconcile) finds "
                   "the objects missing from the mirror and copies them")
@pytest.mark.fault("Redis broker restarted with messages queued",
                   "with Redis persistence the messages survive and are processed; without it they are lost "
                   "like a flush and healed by the scheduled reconcile")
@pytest.mark.fault("Redis broker stopped or hung (SIGSTOP) while the agent listens",
                   "enqueueing fails (stopped: retried, then dropped and left to reconcile) or waits (hung); a "
                   "stopped broker raises 'health checks are failing' naming it; once Redis is back every "
                   "object written meanwhile is mirrored and the recovery is notified")
@pytest.mark.parametrize("fault", ["flushed", "restarted", "stopped", "hung"])
def test_a_broker_fault_with_messages_queued_is_healed_by_reconcile_and_the_scheduler(
    tmp_path, private_minio, private_redis, inbox, fault
):
    minio = private_minio.client()
    minio.make_bucket("kb-queue")
    config = agent_config(tmp_path, private_minio, private_redis.url(2), inbox, reconcile_every="* * * * *")
    before = fingerprint(tmp_path / "backups")
    agent_log, worker_log = tmp_path / "agent.log", tmp_path / "worker.log"
    agent = start_cli(config, agent_log, "agent")  # no worker yet: messages stay queued
    worker = None
    written = {f"doc-{n}.txt": f"queued {n}".encode() for n in range(10)}
    try:
        wait_for(lambda: "agent started" in text_of(agent_log), "the agent to start")
        broker = private_redis.client(2)
        probes = iter(range(10_000))

        def listening() -> bool:
            # "agent started" comes before the listener is attached: a put made before is never an event
            # (the start-up reconcile would copy it, but no worker runs yet). Probe until one is queued.
            put(minio, "kb-queue", f"probe-{next(probes)}.txt", b"is the listener attached?")
            return bool(threading.Event().wait(0.5) or broker.hlen("faults:mirror.msgs"))

        wait_for(listening, f"the listener (log {agent_log})", timeout=120)
        threading.Event().wait(1)  # the events of the last probes
        queued = broker.hlen("faults:mirror.msgs")
        if fault in ("stopped", "hung"):
            (private_redis.stop if fault == "stopped" else private_redis.pause)()
        for key, data in written.items():
            put(minio, "kb-queue", key, data)
        if fault == "flushed":
            wait_for(lambda: broker.hlen("faults:mirror.msgs") >= queued + 10, "the messages to be queued", 120)
            broker.flushdb()
        elif fault == "restarted":
            wait_for(lambda: broker.hlen("faults:mirror.msgs") >= queued + 10, "the messages to be queued", 120)
            private_redis.restart()
        else:
            if fault == "stopped":  # (a hung Redis blocks the agent's health check until it answers again)
                wait_for(lambda: any("health checks are failing" in t for t in inbox.titles()),
                         f"the alert (log {agent_log})", timeout=60)
                assert f"127.0.0.1:{private_redis.port}" in inbox.text()
            threading.Event().wait(3)
            private_redis.resume()
            if private_redis.pid() is None:
                private_redis.start()
        private_redis.wait_ready()
        worker = start_cli(config, worker_log, "worker", "--threads", "2")
        for key, data in written.items():
            wait_for(lambda: mirrored(tmp_path, "kb-queue", key) == data,
                     f"{key} in the mirror (agent log {agent_log}, worker log {worker_log})", timeout=200, interval=0.5)
        if fault == "stopped":  # the agent sends it: wait while it runs (the keys can be mirrored first)
            wait_for(lambda: any("back to normal" in t for t in inbox.titles()), "the recovery", timeout=60)
    finally:
        if worker is not None:
            kill(worker, 15)
        kill(agent, 15)
    assert fingerprint(tmp_path / "backups") == before
