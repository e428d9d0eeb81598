"""Processes SIGKILLed in the middle of their work: an Elasticsearch snapshot, a mirror copy, the agent
during a burst of MinIO writes. (A worker killed mid MySQL dump: tests/actors/test_worker_crash.py.)"""
from __future__ import annotations

import io
import os
import threading

import pytest

from core import clients
from core.mirror_store import MirrorStore
from core.points import Storage
from testbed import settings as testbed_settings
from testbed.polling import wait_for
from tests.conftest import unique
from tests.faults.harness import cli, fingerprint, kill, start_cli, text_of, write_config


def base_config(tmp_path, redis_url: str, inbox, **sections) -> dict:
    return {
        "storage_root": str(tmp_path / "backups"),
        # A dead worker's messages are requeued after 2 s of silence; check on every broker command.
        "broker": {"url": redis_url, "namespace": f"fault-{tmp_path.name[-12:]}", "heartbeat_timeout_ms": 2000,
                   "maintenance_chance": 1_000_000},
        "mysql": {"enabled": False}, "search": {"enabled": False}, "minio": {"enabled": False},
        "config_files": {"enabled": False}, "notify": {"urls": [inbox.url], "min_interval_seconds": 0},
        **sections,
    }


@pytest.fixture
def slow_es_repository(testbed_env):
    """A repository of the shared Elasticsearch throttled to 100 kB/s, and a 2 MB index: a snapshot
    lasts long enough to be caught in the middle. Removed afterwards (snapshots, index, repository)."""
    settings = testbed_settings.search("elasticsearch", testbed_env, repository=unique("repo_"))
    settings = settings.model_copy(update={"indices": [unique("fault_es_") + "*"]})
    client = clients.search_client(settings)
    index = settings.indices[0].rstrip("*") + "chunks"
    client.snapshot.create_repository(name=settings.repository, body={
        "type": "fs", "settings": {"location": settings.repository_path, "max_snapshot_bytes_per_sec": "100kb"}})
    client.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 0})
    body = []
    for _n in range(2000):
        body += [{"index": {"_index": index}}, {"kb_id": "kb", "content": os.urandom(512).hex()}]
    client.bulk(operations=body, refresh=True)
    yield settings
    for snapshot in client.snapshot.get(repository=settings.repository, snapshot="_all")["snapshots"]:
        client.snapshot.delete(repository=settings.repository, snapshot=snapshot["snapshot"])
    client.snapshot.delete_repository(name=settings.repository)
    client.indices.delete(index=index)


@pytest.mark.fault("worker SIGKILLed during an Elasticsearch snapshot",
                   "the point stays running, then shows as interrupted; no record is written; the requeued "
                   "message takes a new snapshot and completes the point, which verifies")
def test_a_worker_killed_mid_snapshot_leaves_no_record_and_the_requeued_run_completes(
    tmp_path, redis_url, inbox, slow_es_repository
):
    search = slow_es_repository.model_dump(mode="json")
    search["password"] = slow_es_repository.password.get_secret_value()
    config = write_config(tmp_path / "config.yml", base_config(tmp_path, redis_url, inbox, search=search))
    queued = cli(config, "backup", "--component", "search")
    assert queued.returncode == 0, queued.stderr
    [point] = Storage(tmp_path / "backups").points("daily")

    log = tmp_path / "worker.log"
    worker = start_cli(config, log, "worker", "--threads", "1")
    try:
        wait_for(lambda: "into repository" in text_of(point.folder / "backup.log"), "the snapshot to start", 120)
        kill(worker)
    finally:
        kill(worker)
    assert point.manifest().status == "running"
    assert point.status() == "interrupted"
    assert not (point.folder / "search_snapshot.json").exists()

    worker = start_cli(config, log, "worker", "--threads", "1")
    try:
        wait_for(lambda: point.manifest().status != "running", f"the requeued run (log {log})", timeout=240)
    finally:
        kill(worker, signal_term())
    manifest = point.manifest()
    assert manifest.status == "complete", manifest.components
    assert manifest.components["search"].details["state"] == "SUCCESS"
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 0, verified.stdout


def signal_term() -> int:
    import signal

    return signal.SIGTERM


@pytest.mark.fault("worker SIGKILLed during a mirror copy",
                   "the mirror keeps the previous copy (or nothing) under the key's name, never a part; the "
                   "requeued message copies the object whole; the half-written part file is cleaned up")
def test_a_worker_killed_mid_copy_leaves_the_old_copy_and_the_requeued_copy_completes(
    tmp_path, redis_url, inbox, private_minio
):
    minio = private_minio.client()
    minio.make_bucket("kb-big")
    old = b"the previous version"
    minio.put_object("kb-big", "big.bin", io.BytesIO(old), len(old))
    m = private_minio.settings()
    config = write_config(tmp_path / "config.yml", base_config(
        tmp_path, redis_url, inbox,
        minio={"endpoint": m.endpoint, "access_key": m.access_key, "secret_key": m.secret_key.get_secret_value()}))
    mirror_root = tmp_path / "backups" / "minio_mirror"
    import yaml

    from actors.minio.mirror import mirror_object
    from core.config import Settings

    settings = Settings(**yaml.safe_load(config.read_text()))
    assert mirror_object(settings, "kb-big", "big.bin") == "copied"
    big = os.urandom(96 << 20)
    minio.put_object("kb-big", "big.bin", io.BytesIO(big), len(big), part_size=96 << 20)

    # One message for the key, then a worker that is killed as soon as its part file grows.
    sent = cli_send_mirror(config, "kb-big", "big.bin")
    assert sent.returncode == 0, sent.stderr
    log = tmp_path / "worker.log"
    worker = start_cli(config, log, "worker", "--threads", "1")
    try:
        part = wait_for(lambda: [p for p in (mirror_root / ".tmp").glob("*.part") if p.stat().st_size > 0],
                        f"the copy to start (log {log})", timeout=60, interval=0.005)
        kill(worker)
    finally:
        kill(worker)
    assert part
    store = MirrorStore(mirror_root)
    try:
        entry = store.entry("kb-big", "big.bin")
        assert entry.path.read_bytes() == old, "the mirror still holds the previous version, whole"
    finally:
        store.close()

    worker = start_cli(config, log, "worker", "--threads", "1")
    try:
        def copied():
            reader = MirrorStore(mirror_root)
            try:
                entry = reader.entry("kb-big", "big.bin")
                return entry is not None and entry.size == len(big) and entry.path.read_bytes() == big
            finally:
                reader.close()
        wait_for(copied, f"the requeued copy (log {log})", timeout=120, interval=0.5)
    finally:
        kill(worker, signal_term())
    store = MirrorStore(mirror_root)
    try:
        assert [v.reason for v in store.versions("kb-big", "big.bin")] == ["overwritten"]
    finally:
        store.close()
    outside_tmp = [p for p in mirror_root.rglob("*.part") if p.parent != mirror_root / ".tmp"]
    assert not outside_tmp, "a part file only ever lives in .tmp (removed there once stale)"


def cli_send_mirror(config, bucket: str, key: str):
    """Queue one mirror_object message the way the agent does, from a separate process."""
    import subprocess
    import sys

    code = ("import os, sys; os.environ['RAGFLOW_BACKUP_CONFIG'] = sys.argv[1]\n"
            "from actors import broker, tasks\nbroker.configure()\ntasks.mirror_object.send(sys.argv[2], sys.argv[3])")
    return subprocess.run([sys.executable, "-c", code, str(config), bucket, key], capture_output=True, text=True)


@pytest.mark.fault("agent SIGKILLed during a burst of MinIO writes",
                   "events not yet queued are lost with the process; the start-up reconcile of the restarted "
                   "agent mirrors every object written before, during and after the kill")
def test_an_agent_killed_during_a_burst_of_writes_mirrors_every_object_after_it_restarts(
    tmp_path, redis_url, inbox, private_minio
):
    minio = private_minio.client()
    minio.make_bucket("kb-burst")
    m = private_minio.settings()
    config = write_config(tmp_path / "config.yml", base_config(
        tmp_path, redis_url, inbox,
        minio={"endpoint": m.endpoint, "access_key": m.access_key, "secret_key": m.secret_key.get_secret_value(),
               "bucket_discovery_seconds": 0.5},
        schedule={"backup": "", "verify": "", "reconcile": "", "versions_prune": "", "drill": ""},
        metrics={"port": 0}))
    before = fingerprint(tmp_path / "backups")
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "run", "--threads", "2")
    written: dict[str, bytes] = {}
    try:
        wait_for(lambda: "agent started" in text_of(log), "the agent to start")

        def burst(first: int, count: int) -> None:
            for n in range(first, first + count):
                data = f"object {n} ".encode() * 50
                minio.put_object("kb-burst", f"docs/{n:04d}.txt", io.BytesIO(data), len(data))
                written[f"docs/{n:04d}.txt"] = data

        writer = threading.Thread(target=burst, args=(0, 300))
        writer.start()
        wait_for(lambda: len(written) >= 60, "the burst to be under way")
        kill(agent)
        writer.join(120)
        burst(300, 20)  # written while no agent runs
    finally:
        kill(agent)

    agent = start_cli(config, log, "run", "--threads", "2")
    try:
        def all_mirrored() -> bool:
            store = MirrorStore(tmp_path / "backups" / "minio_mirror")
            try:
                return all((e := store.entry("kb-burst", key)) is not None and e.path.read_bytes() == data
                           for key, data in written.items())
            finally:
                store.close()
        wait_for(all_mirrored, f"every object in the mirror (log {log})", timeout=180, interval=1)
    finally:
        kill(agent, signal_term())
    assert agent.returncode == 0, log.read_text()[-2000:]
    assert len(written) == 320
    assert fingerprint(tmp_path / "backups") == before
