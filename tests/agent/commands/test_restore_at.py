"""`restore --at` on the command line: what is refused before anything is looked at (the end-to-end restore to
a second is in tests/actors/actions/test_restore_at.py)."""
from __future__ import annotations

import os
import subprocess

from tests.faults.harness import CLI, write_config


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_reparse_changed_without_at_is_refused_as_a_usage_error(tmp_path):
    config = write_config(tmp_path / "config.yml", {"storage_root": str(tmp_path / "backups")})
    done = run("-c", str(config), "restore", "--reparse-changed", "--dry-run")
    assert done.returncode == 2
    assert "--reparse-changed goes with --at" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_moment_that_is_not_a_date_is_refused_naming_the_form(tmp_path):
    config = write_config(tmp_path / "config.yml", {"storage_root": str(tmp_path / "backups")})
    done = run("-c", str(config), "restore", "--at", "14:32 yesterday", "--dry-run")
    assert done.returncode == 2
    assert "is not a date and time (e.g. 2026-11-24T10:30" in " ".join((done.stdout + done.stderr).split())
