"""`ragflow-backup audit`: one line per backup, verify, prune, deletion, restore and offsite job."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent.cli import app
from core import audit


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200)


def config_only(tmp_path: Path) -> Path:
    docker = tmp_path / "ragflow" / "docker"
    docker.mkdir(parents=True)
    (docker / ".env").write_text("A=1\n")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage_root": str(tmp_path / "backups"), "ragflow_dir": str(docker),
                                      "mysql": {"enabled": False}, "minio": {"enabled": False},
                                      "search": {"enabled": False}}))
    return config


def test_a_backup_a_verify_and_a_prune_each_leave_a_line_with_actor_action_target_and_result(tmp_path):
    config = config_only(tmp_path)
    assert cli(config, "backup", "--local").exit_code == 0
    assert cli(config, "verify").exit_code == 0
    assert cli(config, "prune").exit_code == 0

    lines = [json.loads(line) for line in cli(config, "audit", "--json").output.splitlines()]

    assert [(line["action"], line["result"]) for line in lines] == [("backup", "complete"), ("verify", "ok"), ("prune", "done")]
    assert all(line["actor"].startswith("cli:") and line["time"] for line in lines)
    assert lines[0]["target"] == lines[1]["target"] and lines[0]["target"].startswith("daily/")
    only = [json.loads(line) for line in cli(config, "audit", "--json", "--action", "verify").output.splitlines()]
    assert [line["action"] for line in only] == ["verify"]
    assert cli(config, "audit", "--json", "--since", "2099-01-01").output.strip() == ""
    table = cli(config, "audit", "--since", "1h")
    assert table.exit_code == 0 and "backup" in table.output and "prune" in table.output


def test_a_torn_line_is_skipped_and_the_actor_says_which_process_it_was(tmp_path):
    root = tmp_path / "backups"
    audit.set_role("worker")
    try:
        audit.record(root, "offsite-copy", "daily/2026-11-24", "ok", snapshot="abc")
    finally:
        audit.set_role("cli")
    with open(audit.audit_path(root), "a") as handle:
        handle.write('{"time": "2026-11-24T0')  # a crash mid-write
    [line] = list(audit.read(root))
    assert line["actor"].startswith("worker:") and line["snapshot"] == "abc"
    assert (audit.audit_path(root).stat().st_mode & 0o777) == 0o600
