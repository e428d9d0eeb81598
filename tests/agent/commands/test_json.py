"""`--json`: each command prints one JSON document (docs/json.md) and nothing else on stdout; errors stay on
stderr with the exit codes of the tables."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.faults.harness import cli, write_config


def ragflow_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text("MYSQL_PASSWORD=Secr3tPassw0rd\n")
    (folder / "docker-compose.yml").write_text("services: {}\n")
    (folder / "service_conf.yaml.template").write_text("ragflow:\n  host: 0.0.0.0\n")
    return folder


@pytest.fixture
def config_with_a_point(tmp_path, redis_url) -> Path:
    """Only RAGFlow's config files enabled, the broker on the test bed's Redis, and one complete point."""
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(ragflow_folder(tmp_path)),
        "broker": {"url": redis_url, "namespace": "json-test"}, "minio": {"enabled": False},
        "mysql": {"enabled": False}, "search": {"enabled": False}, "redis": {"enabled": False}})
    taken = cli(config, "backup", "--local")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    return config


def document(result: subprocess.CompletedProcess, command: str) -> dict:
    """The whole of stdout parsed as JSON (anything else there fails the parse)."""
    parsed = json.loads(result.stdout)
    assert parsed["schema_version"] == 1 and parsed["command"] == command
    return parsed


def test_list_json_names_each_point_with_its_status_size_and_components(config_with_a_point):
    listed = cli(config_with_a_point, "list", "--json")

    assert listed.returncode == 0, listed.stderr
    body = document(listed, "list")
    [point] = [point for point in body["points"] if point["tier"] == "daily"]
    assert point["ref"] == f"daily/{point['name']}"
    assert {item["tier"] for item in body["points"]} == {"daily", "weekly", "monthly"}  # the first is promoted
    assert point["status"] == "complete" and point["components"] == {"config": "ok"}
    assert isinstance(point["bytes"], int) and point["bytes"] > 0
    assert point["created_at"] and point["problem"] is None and body["unsafe"] == []


def test_verify_json_reports_each_component_and_exits_0_when_sound(config_with_a_point):
    verified = cli(config_with_a_point, "verify", "--json")

    assert verified.returncode == 0, verified.stderr
    body = document(verified, "verify")
    assert body["ok"] is True and body["status"] == "complete" and body["content_checked"] is True
    assert [(item["component"], item["ok"], item["problems"]) for item in body["components"]] == [("config", True, [])]


def test_verify_json_of_a_damaged_point_is_still_json_and_exits_1(config_with_a_point, tmp_path):
    [archive] = [path for path in (tmp_path / "backups" / "daily").rglob("*.tar*") if path.is_file()]
    archive.write_bytes(archive.read_bytes()[:-10])

    verified = cli(config_with_a_point, "verify", "--json")

    assert verified.returncode == 1
    body = document(verified, "verify")
    assert body["ok"] is False and body["components"][0]["problems"]


def test_with_no_point_verify_json_says_so_on_stderr_and_prints_nothing(tmp_path):
    config = write_config(tmp_path / "config.yml", {"storage_root": str(tmp_path / "empty")})

    verified = cli(config, "verify", "--json")

    assert verified.returncode == 1 and verified.stdout == ""
    assert "no backup point" in verified.stderr


def test_status_json_has_each_component_the_queues_and_the_next_runs(config_with_a_point):
    shown = cli(config_with_a_point, "status", "--json")

    assert shown.returncode == 0, shown.stderr
    body = document(shown, "status")
    [config] = [item for item in body["components"] if item["component"] == "config"]
    assert config["last_success"] and config["age_seconds"] >= 0 and config["point"].startswith("daily/")
    assert body["newest_point"]["status"] == "complete"
    assert body["storage"]["used_bytes"] > 0 and 0 < body["storage"]["used_ratio"] <= 1
    assert isinstance(body["queues"], dict) and body["problems"] == []
    assert "backup" in body["next_runs"] and isinstance(body["alerts"], list)


def test_queue_json_lists_every_queue_with_or_without_show(config_with_a_point):
    for args in (("queue", "--json"), ("queue", "show", "--json")):
        shown = cli(config_with_a_point, *args)
        assert shown.returncode == 0, shown.stderr
        body = document(shown, "queue")
        assert body["namespace"] == "json-test"
        backup = next(item for item in body["queues"] if item["queue"] == "backup")
        assert {"ready", "delayed", "in_flight", "stalled", "dead", "oldest_age_seconds", "workers"} <= set(backup)


def test_doctor_json_has_a_row_per_check_and_the_exit_code_of_the_table(config_with_a_point):
    checked = cli(config_with_a_point, "doctor", "--json")

    body = document(checked, "doctor")
    assert body["checks"] and all({"name", "status", "detail", "fix"} <= set(check) for check in body["checks"])
    assert body["ok"] == (checked.returncode == 0)
    assert body["ok"] == all(check["status"] != "fail" for check in body["checks"])
    assert "Secr3tPassw0rd" not in checked.stdout


def test_restore_dry_run_json_is_the_plan_and_changes_nothing(config_with_a_point, tmp_path):
    env = tmp_path / "ragflow" / "docker" / ".env"
    env.write_text("MYSQL_PASSWORD=Other0therPassw0rd\n")

    planned = cli(config_with_a_point, "restore", "--dry-run", "--json")

    assert planned.returncode == 0, planned.stderr
    body = document(planned, "restore")
    assert body["dry_run"] is True and body["point"].startswith("daily/")
    assert [item["component"] for item in body["components"]] == ["config"]
    assert ".env" in body["config_diff"]
    assert "Secr3tPassw0rd" not in planned.stdout and "Other0therPassw0rd" not in planned.stdout
    assert env.read_text() == "MYSQL_PASSWORD=Other0therPassw0rd\n"


def test_restore_json_without_dry_run_is_refused_with_exit_2(config_with_a_point):
    refused = cli(config_with_a_point, "restore", "--yes", "--json")

    assert refused.returncode == 2 and refused.stdout == ""
    assert "--dry-run" in refused.stderr


def test_drill_json_reports_each_component_and_the_objective(config_with_a_point):
    drilled = cli(config_with_a_point, "drill", "--json")

    body = document(drilled, "drill")
    assert drilled.returncode == (0 if body["ok"] else 1)
    assert body["ok"] is True, body
    assert [item["component"] for item in body["components"]] == ["config"]
    assert body["seconds"] >= 0 and body["objective_seconds"] > 0


def test_offsite_status_json_shows_the_last_copy_per_component(config_with_a_point, tmp_path):
    import yaml

    password = tmp_path / "offsite.pass"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    raw = yaml.safe_load(config_with_a_point.read_text())
    raw["offsite"] = {"enabled": True, "repository": str(tmp_path / "usb"), "password_file": str(password)}
    config = write_config(config_with_a_point, raw)
    copied = cli(config, "offsite", "copy", "--no-mirror")
    assert copied.returncode == 0, copied.stdout + copied.stderr

    shown = cli(config, "offsite", "status", "--json")

    assert shown.returncode == 0, shown.stderr
    body = document(shown, "offsite status")
    assert body["repository"] == str(tmp_path / "usb") and body["snapshots"] >= 1 and body["total_size_bytes"] > 0
    [row] = [row for row in body["components"] if row["component"] == "config"]
    assert row["last_copy"] and row["point"].startswith("daily/") and 0 <= row["lag_seconds"] < 3600
