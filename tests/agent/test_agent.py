"""The always-on agent with a worker (`ragflow-backup run`) against a real MinIO and a real folder."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.agent import Agent
from core.config import Settings
from core.mirror_store import MirrorStore
from testbed.polling import wait_for

CLI = str(Path(sys.executable).parent / "ragflow-backup")


def ragflow_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ragflow" / "docker"
    (folder / "nginx").mkdir(parents=True)
    (folder / ".env").write_text("MYSQL_PASSWORD=infini_rag_flow\nDOC_ENGINE=elasticsearch\n")
    (folder / "docker-compose.yml").write_text("services: {}\n")
    (folder / "nginx" / "ragflow.conf").write_text("server { listen 80; }\n")
    return folder


class RunningAgent:
    def __init__(self, tmp_path: Path, redis_url: str, minio, ragflow_dir: Path):
        self.config = tmp_path / "config.yml"
        self.log = tmp_path / "agent.log"
        self.config.write_text(yaml.safe_dump({
            "storage_root": str(tmp_path / "backups"),
            "ragflow_dir": str(ragflow_dir),
            "broker": {"url": redis_url, "namespace": f"agent-{tmp_path.name[-12:]}"},
            "minio": {"endpoint": minio.endpoint, "access_key": minio.access_key, "secret_key": minio.secret_key,
                      "bucket_discovery_seconds": 0.5},
            "mysql": {"enabled": False}, "search": {"enabled": False},
            "watch": {"debounce_seconds": 0.5},
            "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": ""},
            "metrics": {"port": 0},
        }))
        self.settings = Settings(**yaml.safe_load(self.config.read_text()))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([CLI, "--config", str(self.config), "run", "--threads", "2"],
                                        stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise

    def store(self) -> MirrorStore:
        return MirrorStore(self.settings.storage_root / self.settings.minio.mirror_dir)

    def mirrored(self, bucket: str, key: str) -> bytes | None:
        root = self.settings.storage_root / self.settings.minio.mirror_dir
        if not (root / ".index.sqlite").exists():
            return None
        store = self.store()  # a fresh reader each time, closed at once, as another process would be
        try:
            entry = store.entry(bucket, key)
            return None if entry is None else entry.path.read_bytes()
        finally:
            store.close()


@pytest.fixture
def running_agent(tmp_path, redis_url, private_minio) -> Iterator[RunningAgent]:
    agent = RunningAgent(tmp_path, redis_url, private_minio, ragflow_folder(tmp_path))
    yield agent
    agent.stop()
    assert agent.process is None or agent.process.returncode == 0, agent.log.read_text()[-3000:]


def put(client, bucket: str, key: str, data: bytes, **kwargs) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data), **kwargs)


def test_a_put_an_overwrite_and_a_delete_each_reach_the_mirror_and_its_versions(running_agent, private_minio):
    minio = private_minio.client()
    minio.make_bucket("kb-first")
    running_agent.start()
    wait_for(lambda: "agent started" in running_agent.log.read_text(), "the agent to start")
    put(minio, "kb-first", "docs/manual.pdf", b"version one", content_type="application/pdf")
    assert wait_for(lambda: running_agent.mirrored("kb-first", "docs/manual.pdf") == b"version one", "the put")

    put(minio, "kb-first", "docs/manual.pdf", b"version two")
    wait_for(lambda: running_agent.mirrored("kb-first", "docs/manual.pdf") == b"version two", "the overwrite")
    versions = running_agent.store().versions("kb-first", "docs/manual.pdf")
    assert [v.reason for v in versions] == ["overwritten"]

    minio.remove_object("kb-first", "docs/manual.pdf")
    wait_for(lambda: running_agent.mirrored("kb-first", "docs/manual.pdf") is None, "the delete")
    versions = running_agent.store().versions("kb-first", "docs/manual.pdf")
    assert sorted(v.reason for v in versions) == ["deleted", "overwritten"]


def test_a_bucket_created_after_start_up_is_mirrored(running_agent, private_minio):
    running_agent.start()
    wait_for(lambda: "agent started" in running_agent.log.read_text(), "the agent to start")
    # The test bed's Redis evicts like RAGFlow's (allkeys-lru): the agent says so as it starts.
    assert "maxmemory-policy allkeys-lru" in running_agent.log.read_text()
    minio = private_minio.client()
    minio.make_bucket("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    put(minio, "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "early.txt", b"written at once")
    put(minio, "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "later.txt", b"written a bit later")
    for key, data in (("early.txt", b"written at once"), ("later.txt", b"written a bit later")):
        wait_for(lambda: running_agent.mirrored("0a1b2c3d4e5f60718293a4b5c6d7e8f9", key) == data, key)


def test_objects_written_while_the_agent_was_stopped_are_mirrored_after_it_starts(running_agent, private_minio):
    minio = private_minio.client()
    minio.make_bucket("kb-offline")
    put(minio, "kb-offline", "before-start.txt", b"nobody was listening")
    running_agent.start()
    wait_for(lambda: running_agent.mirrored("kb-offline", "before-start.txt") == b"nobody was listening", "start-up reconcile")
    running_agent.stop()
    put(minio, "kb-offline", "while-stopped.txt", b"still nobody")
    minio.remove_object("kb-offline", "before-start.txt")
    running_agent.start()
    wait_for(lambda: running_agent.mirrored("kb-offline", "while-stopped.txt") == b"still nobody",
             f"the new object (agent log: {running_agent.log})", timeout=120)
    wait_for(lambda: running_agent.mirrored("kb-offline", "before-start.txt") is None, "the delete while stopped")


def test_the_listener_recovers_when_minio_restarts_mid_stream(running_agent, private_minio):
    minio = private_minio.client()
    minio.make_bucket("kb-restart")
    running_agent.start()
    put(minio, "kb-restart", "one.txt", b"1")
    wait_for(lambda: running_agent.mirrored("kb-restart", "one.txt") == b"1", "the first object")
    private_minio.kill()
    private_minio.start()
    put(minio, "kb-restart", "two.txt", b"2")
    wait_for(lambda: running_agent.mirrored("kb-restart", "two.txt") == b"2", "an object after the restart", timeout=90)


def test_a_config_edit_becomes_exactly_one_commit(running_agent):
    from actors.config.backup import commit_config, history

    assert commit_config(running_agent.settings, "baseline")
    running_agent.start()
    wait_for(lambda: "agent started" in running_agent.log.read_text(), "the agent to start")
    env_file = running_agent.settings.ragflow_dir / ".env"
    for value in ("2", "3", "4"):  # an operator saving three times in a row
        env_file.write_text(f"MYSQL_PASSWORD=infini_rag_flow\nDOC_ENGINE=elasticsearch\nMAX_CONTENT_LENGTH={value}\n")
    wait_for(lambda: len(history(running_agent.settings)) == 2, "the commit")
    time.sleep(3)  # let any straggling event through: there must still be exactly one new commit
    commits = history(running_agent.settings)
    assert len(commits) == 2
    assert ".env" in commits[0]["message"] and commits[0]["files"] == [".env"]


def test_with_minio_events_off_the_agent_listens_for_nothing_and_reconcile_alone_mirrors(tmp_path, redis_url):
    settings = Settings(
        storage_root=tmp_path / "backups", broker={"url": redis_url, "namespace": f"agent-{tmp_path.name[-12:]}"},
        minio={"endpoint": "127.0.0.1:1", "events": False},  # an S3 store without notifications: never listened to
        mysql={"enabled": False}, search={"enabled": False}, watch={"enabled": False}, metrics={"enabled": False},
        schedule={"backup": "", "verify": "", "versions_prune": "", "drill": "", "reconcile": "*/5 * * * *"},
    )
    sent: list[tuple[str, tuple]] = []
    agent = Agent(settings, send=lambda actor, args: sent.append((actor, args)))
    agent.start()
    try:
        assert agent.minio_source is None and agent.source_health() == {} and agent.source_alerts() == []
        assert [(actor.actor_name, args) for actor, args in sent] == [("reconcile", ())]  # at start, then on the schedule
        assert agent.scheduler.next_ticks()["reconcile"]
    finally:
        agent.stop()
