"""Untrusted or broken input at the command line: secrets in what is shown, files that are not UTF-8, bad
arguments, and HTTP clients of the metrics port that connect and send nothing."""
from __future__ import annotations

import json
import re
import resource
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from testbed.polling import wait_for
from tests.faults.harness import cli, kill, start_cli, text_of, write_config

NOTHING_ENABLED = {"mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"enabled": False},
                   "config_files": {"enabled": False}}


def everything_written(root: Path) -> str:
    """The text of every log the product keeps under a storage root (audit, history, points' backup.log)."""
    return "\n".join(path.read_text(errors="replace") for path in sorted(Path(root).rglob("*.log")) if path.is_file())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- secrets


@pytest.mark.fault("a YAML syntax error on the line that holds a password",
                   "the error names the file and the line, with the password shown as ***; exit 2, no traceback")
def test_a_yaml_error_on_a_password_line_shows_the_line_with_the_password_masked(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(f"storage_root: {tmp_path / 'backups'}\nmysql:\n  password: Yaml-Secr3t-pw: [x\n")

    listed = cli(config, "list")

    said = listed.stdout + listed.stderr
    assert listed.returncode == 2 and "Traceback" not in said
    assert f"{config} is not valid YAML" in said and "line 3" in said
    assert "Yaml-Secr3t-pw" not in said
    assert "password: ***" in said


@pytest.mark.fault("search.url written as http://user:password@host",
                   "doctor shows the URL as http://user:***@host in its table")
def test_doctor_masks_the_password_of_a_url_in_its_table(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line, so the URL is not folded
    url = f"http://elastic:Url-Secr3t-pw@127.0.0.1:{closed_port()}"
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": f"redis://127.0.0.1:{closed_port()}/0"},
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"url": url}})

    checked = cli(config, "doctor")

    said = checked.stdout + checked.stderr
    assert checked.returncode == 1 and "Traceback" not in said
    assert "Url-Secr3t-pw" not in said
    assert "http://elastic:***@127.0.0.1" in said


@pytest.mark.fault("RAGFlow's .env passwords changed since the last config backup",
                   "restore -C config shows the .env diff with every password as ***; neither value reaches "
                   "stdout, stderr, the audit log, the backup history or a point's backup.log")
def test_a_config_restore_never_shows_the_passwords_of_the_env_it_puts_back(config_point, tmp_path):
    config, point = config_point
    env = tmp_path / "ragflow" / "docker" / ".env"
    env.write_text("MYSQL_PASSWORD=Old-Secr3t-pw\nREDIS_PASSWORD=Redis-Secr3t-pw\n")
    assert cli(config, "backup", "--local", "-C", "config").returncode == 0
    env.write_text("MYSQL_PASSWORD=New-Secr3t-pw\nREDIS_PASSWORD=Redis-Secr3t-pw\n")

    planned = cli(config, "restore", "-C", "config", "--dry-run")
    restored = cli(config, "restore", "-C", "config", "--yes")

    assert planned.returncode == 0 and restored.returncode == 0, planned.stderr + restored.stderr
    assert "MYSQL_PASSWORD=***" in planned.stdout
    assert "Old-Secr3t-pw" in env.read_text(), "the restore itself puts the real value back"
    shown = planned.stdout + planned.stderr + restored.stdout + restored.stderr
    kept = everything_written(tmp_path / "backups")
    assert '"action": "restore"' in kept
    for password in ("Old-Secr3t-pw", "New-Secr3t-pw", "Redis-Secr3t-pw"):
        assert password not in shown and password not in kept


@pytest.mark.fault("an offsite repository URL with a password (rest:http://user:password@host/repo) that fails",
                   "the error on stderr and the audit log's line show the URL as user:***@host")
def test_a_failing_offsite_repository_url_is_masked_in_the_error_and_the_audit_log(tmp_path):
    password_file = tmp_path / "restic-password"
    password_file.write_text("restic-repository-password\n")
    password_file.chmod(0o600)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), **NOTHING_ENABLED,
        "offsite": {"enabled": True, "password_file": str(password_file),
                    "repository": f"rest:http://backup:Offsite-Secr3t-pw@127.0.0.1:{closed_port()}/repo"}})

    checked = cli(config, "offsite", "check")

    said = checked.stdout + checked.stderr
    audit = (tmp_path / "backups" / "logs" / "audit.log").read_text()
    assert checked.returncode != 0 and "Traceback" not in said
    assert '"action": "offsite-check"' in audit
    for text in (said, audit, everything_written(tmp_path / "backups")):
        assert "Offsite-Secr3t-pw" not in text and "restic-repository-password" not in text
        assert "backup:***@127.0.0.1" in text


# ---------------------------------------------------------------- not UTF-8


@pytest.mark.fault("a config file that is not UTF-8 (a Latin-1 byte)",
                   "every command refuses it naming the file, the byte offset and the line; exit 2, no traceback")
def test_a_config_file_that_is_not_utf8_is_refused_naming_the_byte_and_line(tmp_path):
    config = tmp_path / "config.yml"
    content = b"mysql: {enabled: false}\nstorage_root: /srv/caf\xe9\n"
    config.write_bytes(content)

    listed = cli(config, "list")

    said = " ".join((listed.stdout + listed.stderr).split())
    assert listed.returncode == 2 and "Traceback" not in said
    assert f"{config} is not UTF-8" in said and f"offset {content.index(bytes([0xe9]))}" in said and "line 2" in said


@pytest.mark.fault("RAGFlow's .env with a line that is not UTF-8",
                   "commands that do not need that line go on; doctor names the line and variable, the check "
                   "that needs the value fails saying how to fix it; `restore -C config` repairs the file")
def test_an_env_that_is_not_utf8_stops_only_what_needs_the_value_and_restore_repairs_it(config_point, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    config, point = config_point
    env = tmp_path / "ragflow" / "docker" / ".env"
    good = env.read_bytes()
    env.write_bytes(b"# edited on a Latin-1 terminal\nMYSQL_PASSWORD=caf\xe9-Secr3t\n")
    needs_mysql = write_config(tmp_path / "mysql.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(env.parent), "minio": {"enabled": False},
        "search": {"enabled": False}, "mysql": {"port": closed_port()},
        "broker": {"url": f"redis://127.0.0.1:{closed_port()}/0"}})

    listed = cli(config, "list")
    checked = cli(needs_mysql, "doctor")
    restored = cli(config, "restore", "-C", "config", "--yes")

    assert listed.returncode == 0 and point.name in listed.stdout, listed.stderr
    said = " ".join((checked.stdout + checked.stderr).split())
    assert "Traceback" not in said
    assert "line 2 of" in said and "(MYSQL_PASSWORD)" in said and "save the file as UTF-8" in said
    mysql_row = next(line for line in checked.stdout.splitlines() if line.startswith("│ mysql"))
    assert "FAIL" in mysql_row
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert env.read_bytes() == good
    assert "RAGFlow .env" not in cli(needs_mysql, "doctor").stdout


# ---------------------------------------------------------------- bad input


BAD_INPUTS = {
    "a config that is a YAML list": ("list.yml", b"- storage_root: /srv\n", ["list"], "must hold a mapping"),
    "a config nested too deeply": ("deep.yml", b"x: " + b"[" * 100_000 + b"\n", ["list"], "nests too deeply"),
    "an environment override that is not JSON": ("ok.yml", None, ["list"], "must hold JSON"),
    "a MinIO endpoint written as user:password@host": (
        "endpoint.yml", b"minio: {endpoint: 'rag_flow:Endpoint-Secr3t@127.0.0.1:9000'}\n", ["list"],
        "minio.endpoint is host:port only"),
    "a config path that is a directory": (None, None, ["list"], "is a directory"),
    "an --at before the year 1": ("ok.yml", None, ["restore", "--dry-run", "--at", "0001-01-01"],
                                  "is not a date and time"),
    "a --since span reaching before the year 1": ("ok.yml", None, ["audit", "--since", "99999999d"],
                                                  "before the year 1"),
    "an unknown component": ("ok.yml", None, ["backup", "--local", "-C", "nosuch"], "unknown component"),
}


@pytest.mark.fault("bad input at the command line: a config that is a list, a directory or nested too deeply, an "
                   "environment override that is not JSON, a MinIO endpoint with credentials in it, dates out of "
                   "range, unknown components",
                   "a message naming what is wrong; exit 2, no traceback")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_with_a_message_and_exit_2(tmp_path, case, monkeypatch):
    name, content, args, message = BAD_INPUTS[case]
    if "environment" in case:
        monkeypatch.setenv("RAGFLOW_BACKUP_NOTIFY__URLS", "ntfy://not-a-json-list")
    if name is None:
        config = tmp_path
    else:
        config = tmp_path / name
        if content is None:
            write_config(config, {"storage_root": str(tmp_path / "backups"), **NOTHING_ENABLED})
        else:
            config.write_bytes(content)

    refused = cli(config, *args)

    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 2, said
    assert message in said and "Traceback" not in said and "Secr3t" not in said


@pytest.mark.fault("a storage_root in the config that is a file, not a folder",
                   "list, status, verify, prune, restore --dry-run and backup refuse it naming storage_root, the path "
                   "and the config file; exit 2, no traceback, the file unchanged")
def test_a_storage_root_that_is_a_file_is_refused_naming_the_setting(tmp_path):
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"kept")
    config = write_config(tmp_path / "config.yml", {"storage_root": str(root), **NOTHING_ENABLED})

    for args in (["list"], ["status"], ["verify"], ["prune"], ["restore", "--dry-run"], ["backup", "--local"]):
        refused = cli(config, *args)

        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 2, said
        assert f"storage_root {root} is not a folder" in said and str(config) in said, said
        assert "Traceback" not in said
    assert root.read_bytes() == b"kept"


# ---------------------------------------------------------------- the metrics port


def threads_of(pid: int) -> int:
    return int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.fault("1,500 connections to the metrics port that send half a request and wait",
                   "the agent's thread count stays bounded (one loop thread, two workers); /healthz and /metrics "
                   "still answer; scrapes within metrics.cache_seconds share one health report")
def test_half_open_connections_leave_the_agents_threads_bounded_and_the_endpoints_answering(tmp_path, redis_url):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": redis_url, "namespace": "half-open"},
        **NOTHING_ENABLED, "metrics": {"port": 0, "cache_seconds": 3600, "max_connections": 64},
        "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": "", "drill": ""}})
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "agent")
    held: list[socket.socket] = []
    try:
        wait_for(lambda: "agent started" in text_of(log), f"the agent (log {log})")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", text_of(log)).group(1))
        assert get(port, "/healthz")[0] in (200, 503)
        assert get(port, "/metrics")[0] == 200
        before = threads_of(agent.pid)

        for _ in range(1500):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            try:
                connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            except OSError:
                pass  # closed already: the agent evicted it
            held.append(connection)

        assert threads_of(agent.pid) <= before + 1
        status, body = get(port, "/healthz")
        assert status in (200, 503) and json.loads(body)["status"] in ("ok", "unhealthy")
        scrapes = [get(port, "/metrics") for _ in range(5)]
        assert {status for status, _ in scrapes} == {200}
        stamps = {re.search(r"^ragflow_backup_report_timestamp_seconds (\S+)$", text, re.M).group(1)
                  for _, text in scrapes}
        assert len(stamps) == 1, "five scrapes within cache_seconds, one collection"
        assert threads_of(agent.pid) <= before + 1
    finally:
        for connection in held:
            connection.close()
        kill(agent, signal.SIGTERM)


@pytest.mark.fault("the agent started while the broker's Redis is down",
                   "it says the broker's Redis cannot be reached and to check broker.url; exit 1, no traceback")
def test_an_agent_started_without_its_broker_says_so_without_a_traceback(tmp_path):
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": f"redis://127.0.0.1:{closed_port()}/0"},
        "minio": {"endpoint": f"127.0.0.1:{closed_port()}"}, "mysql": {"enabled": False},
        "search": {"enabled": False}, "config_files": {"enabled": False}, "metrics": {"port": 0}})

    started = cli(config, "agent", timeout=120)

    said = " ".join((started.stdout + started.stderr).split())
    assert started.returncode == 1 and "Traceback" not in said
    assert "the broker's Redis cannot be reached" in said and "broker.url" in said
