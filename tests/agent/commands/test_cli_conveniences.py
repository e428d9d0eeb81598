"""--version, shell completion, and -c/--config after the subcommand as well as before it."""
from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import version

from tests.faults.harness import CLI, write_config


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def test_version_prints_the_package_version():
    for args in (("--version",), ("version",)):
        shown = run(*args)
        assert shown.returncode == 0 and shown.stdout.strip() == f"ragflow-backup {version('ragflow-backup')}"


def test_config_is_accepted_after_the_subcommand_and_wins_over_the_environment(tmp_path):
    mine = write_config(tmp_path / "mine.yml", {"storage_root": str(tmp_path / "mine")})
    other = write_config(tmp_path / "other.yml", {"storage_root": str(tmp_path / "other")})

    for args in (("list", "-c", str(mine), "--json"), ("list", "--json", "--config", str(mine)),
                 ("-c", str(mine), "list", "--json")):
        listed = run(*args, RAGFLOW_BACKUP_CONFIG=str(other) if args[0] == "list" else "")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["storage_root"] == str(tmp_path / "mine"), args


def test_config_after_a_nested_subcommand_is_accepted(tmp_path, redis_url):
    config = write_config(tmp_path / "config.yml", {"storage_root": str(tmp_path / "backups"),
                                                    "broker": {"url": redis_url, "namespace": "cli-nested"}})

    shown = run("queue", "show", "-c", str(config), "--json")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["namespace"] == "cli-nested"


def test_a_bad_config_after_the_subcommand_is_reported_like_one_before_it(tmp_path):
    missing = tmp_path / "nope.yml"

    after, before = run("status", "-c", str(missing)), run("-c", str(missing), "status")

    assert after.returncode == before.returncode == 2
    assert after.stderr == before.stderr and str(missing) in after.stderr


def test_shell_completion_is_offered_and_completes_commands_and_options():
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "complete -o default -F _ragflow_backup_completion ragflow-backup" in script.stdout

    commands = run(_RAGFLOW_BACKUP_COMPLETE="complete_bash", COMP_WORDS="ragflow-backup sta", COMP_CWORD="1")
    options = run(_RAGFLOW_BACKUP_COMPLETE="complete_bash", COMP_WORDS="ragflow-backup status --", COMP_CWORD="2")

    assert commands.stdout.split() == ["status"]
    assert {"--json", "--config"} <= set(options.stdout.split())
