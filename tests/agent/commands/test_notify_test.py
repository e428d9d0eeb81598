"""`ragflow-backup notify test`: a test message to every target, each result in a row, exit 1 if any failed."""
from __future__ import annotations

import socket
import uuid

from testbed.webhook import receiving
from tests.faults.harness import cli, write_config


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_with(tmp_path, notify: dict):
    return write_config(tmp_path / "config.yml", {"storage_root": str(tmp_path / "backups"), "notify": notify})


def test_every_target_gets_the_test_message_and_the_command_says_ok(tmp_path):
    with receiving() as inbox:
        token = uuid.uuid4().hex
        config = config_with(tmp_path, {"urls": [inbox.url], "ping_url": f"http://127.0.0.1:{inbox.port}/ping/{token}"})

        tested = cli(config, "notify", "test", timeout=120)

        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "ragflow-backup: test message" in inbox.titles()
        assert ("/ping/" + token) in [post["path"] for post in inbox.posts]
    rows = tested.stdout
    assert "target #1 (json://...)" in rows and "ping URL (http://127.0.0.1:" in rows
    assert "failed" not in rows and token not in rows


def test_a_failing_target_is_named_with_its_reason_and_the_exit_code_is_1(tmp_path):
    with receiving() as inbox:
        dead = f"json://127.0.0.1:{closed_port()}/hook?token=Sup3rSecretT0ken"
        config = config_with(tmp_path, {"urls": [inbox.url, dead],
                                        "ping_url": f"http://127.0.0.1:{closed_port()}/ping/PingT0kenSecret"})

        tested = cli(config, "notify", "test", timeout=120)

        assert "ragflow-backup: test message" in inbox.titles()  # the good one still got it
    said = " ".join((tested.stdout + tested.stderr).split())
    assert tested.returncode == 1
    assert "2 target(s) failed: target #2 (json://...), ping URL (http://127.0.0.1:" in said
    assert "Sup3rSecretT0ken" not in said and "PingT0kenSecret" not in said
    assert "Traceback" not in said


def test_with_no_target_configured_it_says_what_to_set_and_exits_1(tmp_path):
    tested = cli(config_with(tmp_path, {}), "notify", "test")

    assert tested.returncode == 1 and "notify.urls" in tested.stderr and "notify.ping_url" in tested.stderr
