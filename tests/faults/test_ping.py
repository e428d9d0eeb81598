"""Faults of the dead-man's-switch ping (notify.ping_url): its service down or hanging never fails a backup,
and the URL, a secret, never shows."""
from __future__ import annotations

import socket
import uuid

import pytest

from tests.core.test_ping import closed_port, config_backup
from tests.faults.harness import cli


def said_and_kept(tmp_path, taken) -> str:
    kept = "".join(path.read_text(errors="replace") for path in (tmp_path / "backups").rglob("*.log"))
    return taken.stdout + taken.stderr + kept


@pytest.mark.fault("the ping URL's service is down (connection refused)",
                   "the backup completes (exit 0); each ping's failure is logged with the URL masked "
                   "(scheme and host, the token never)")
def test_an_unreachable_ping_url_is_logged_masked_and_the_backup_still_succeeds(tmp_path):
    token = uuid.uuid4().hex
    config = config_backup(tmp_path, f"http://127.0.0.1:{closed_port()}/ping/{token}")

    taken = cli(config, "backup", "--local")

    said = taken.stdout + taken.stderr
    assert taken.returncode == 0, said
    assert "ping start to http://127.0.0.1:" in said and "ping success to" in said and "/***" in said
    assert token not in said_and_kept(tmp_path, taken)


@pytest.mark.fault("the ping URL's service accepts the connection and never answers",
                   "each ping gives up after notify.ping_timeout_seconds and is logged; the backup completes (exit 0)")
def test_a_ping_service_that_never_answers_costs_the_timeout_and_not_the_backup(tmp_path):
    token = uuid.uuid4().hex
    with socket.socket() as silent:  # the kernel accepts connections into the backlog; nobody reads them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = config_backup(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/ping/{token}")
        config.write_text(config.read_text().replace("ping_timeout_seconds: 5", "ping_timeout_seconds: 1"))

        taken = cli(config, "backup", "--local")

    said = taken.stdout + taken.stderr
    assert taken.returncode == 0, said
    assert "ping start to" in said and "timed out" in said
    assert token not in said_and_kept(tmp_path, taken)
