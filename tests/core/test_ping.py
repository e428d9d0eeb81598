"""The dead-man's-switch ping (notify.ping_url): start, success and fail reach a real HTTP receiver; a ping
that cannot be sent never fails the backup, and the URL (a secret) never shows in the output."""
from __future__ import annotations

import signal
import socket
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.config import NotifySettings
from core.ping import masked, ping
from testbed.polling import wait_for
from testbed.webhook import Inbox, receiving
from tests.faults.harness import cli, kill, start_cli, text_of, write_config


@pytest.fixture
def inbox():
    with receiving() as box:
        yield box


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_backup(tmp_path: Path, ping_url: str, **extra) -> Path:
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / "docker-compose.yml").write_text("services: {}\n")
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(folder), "minio": {"enabled": False},
        "mysql": {"enabled": False}, "search": {"enabled": False}, "redis": {"enabled": False},
        "notify": {"ping_url": ping_url, "ping_timeout_seconds": 5}, **extra})


def paths(box: Inbox) -> list[tuple[str, str]]:
    return [(post.get("method", "POST"), post["path"]) for post in box.posts]


def test_a_complete_backup_pings_start_then_success(tmp_path, inbox):
    token = uuid.uuid4()
    config = config_backup(tmp_path, f"http://127.0.0.1:{inbox.port}/ping/{token}")

    taken = cli(config, "backup", "--local")

    assert taken.returncode == 0, taken.stderr
    assert paths(inbox) == [("POST", f"/ping/{token}/start"), ("POST", f"/ping/{token}")]
    assert b"is complete" in inbox.posts[1]["data"]


def test_a_failed_backup_pings_start_then_fail(tmp_path, inbox):
    token = uuid.uuid4()
    config = config_backup(tmp_path, f"http://127.0.0.1:{inbox.port}/ping/{token}/",
                           mysql={"enabled": True, "host": "127.0.0.1", "port": closed_port(), "user": "root",
                                  "password": "x", "database": "rag_flow"})

    taken = cli(config, "backup", "--local", "-C", "mysql")

    assert taken.returncode == 1
    assert paths(inbox) == [("POST", f"/ping/{token}/start"), ("POST", f"/ping/{token}/fail")]


def test_an_uptime_kuma_push_url_gets_up_or_down_and_no_start(inbox):
    settings = NotifySettings(ping_url=SecretStr(f"http://127.0.0.1:{inbox.port}/api/push/Kuma7oken?status=up"))

    assert ping(settings, "start", "daily/x") is None
    assert ping(settings, "success", "daily/x is complete") is None
    assert ping(settings, "fail", "daily/x is failed") is None

    assert [post["method"] for post in inbox.posts] == ["GET", "GET"]
    assert inbox.posts[0]["path"].startswith("/api/push/Kuma7oken?status=up&msg=daily%2Fx+is+complete")
    assert inbox.posts[1]["path"].startswith("/api/push/Kuma7oken?status=down&msg=daily%2Fx+is+failed")


def test_a_ping_that_cannot_connect_returns_the_reason_without_the_url():
    settings = NotifySettings(ping_url=SecretStr(f"http://127.0.0.1:{closed_port()}/ping/abc-secret-token"))

    reason = ping(settings, "success")

    assert reason and "abc-secret-token" not in reason
    assert masked(settings.ping_url.get_secret_value()).endswith("/***")


def test_a_queued_backup_pings_start_when_queued_and_success_when_the_worker_finishes_it(tmp_path, inbox, redis_url):
    import redis

    token = uuid.uuid4()
    namespace = f"ping-{uuid.uuid4().hex[:8]}"
    config = config_backup(tmp_path, f"http://127.0.0.1:{inbox.port}/ping/{token}",
                           broker={"url": redis_url, "namespace": namespace})
    log = tmp_path / "worker.log"
    worker = start_cli(config, log, "worker", "--threads", "1")
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: client.zcard(f"{namespace}:__heartbeats__") > 0, "the worker's first heartbeat", timeout=60)
        done = cli(config, "backup", "--wait", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr + text_of(log)
        wait_for(lambda: len(inbox.posts) >= 2, f"the worker's success ping (log {log})", timeout=60)
    finally:
        kill(worker, signal.SIGTERM)
        client.delete(*client.keys(f"{namespace}:*"))

    assert paths(inbox) == [("POST", f"/ping/{token}/start"), ("POST", f"/ping/{token}")]
