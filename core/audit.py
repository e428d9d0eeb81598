"""The audit log: one JSON line per backup, verify, prune, deletion, restore, rollback and offsite job.

    <storage_root>/logs/audit.log
    {"time": ..., "actor": "cli:alice" | "worker:ragflow-backup" | "agent:ragflow-backup",
     "action": "backup", "target": "daily/2026-11-24", "result": "complete", ...details}

`actor` says who or what started it: a person at the command line, or the agent's workers (which run
what the scheduler, the event sources or a queued command asked for). Lines are appended with O_APPEND
and fsynced (core.atomic.append_line), so concurrent writers never interleave and a line survives a crash.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.atomic import append_line, private_dir
from core.layout import Layout
from core.redact import redact_data

AUDIT_LOG = "audit.log"
log = logging.getLogger("ragflow_backup.audit")

_role = "cli"  # "worker" in worker processes, "agent" in the agent: set once at start-up


def set_role(role: str) -> None:
    global _role
    _role = role


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def actor() -> str:
    return f"{_role}:{_user()}"


def audit_path(storage_root: Path) -> Path:
    return Layout(storage_root).log(AUDIT_LOG)


def record(storage_root: Path, action: str, target: str | None, result: str, **details: Any) -> None:
    """Append one line. A log that cannot be written is reported, never fatal to the job it describes."""
    line = {"time": datetime.now(timezone.utc).isoformat(), "actor": actor(), "action": action,
            "target": target, "result": result, **details}
    try:
        private_dir(Layout(storage_root).logs)
        # Details carry client errors and targets (URLs): masked, like every message (core/redact.py).
        append_line(audit_path(storage_root), json.dumps(redact_data(json.loads(json.dumps(line, default=str)))))
    except OSError as exc:
        log.error("could not write the audit log under %s: %s (%s %s %s)", storage_root, exc.strerror, action,
                  target, result)


def read(storage_root: Path, since: datetime | None = None, action: str | None = None) -> Iterator[dict[str, Any]]:
    """The lines, oldest first; a line that is not JSON (a torn write) is skipped."""
    path = audit_path(storage_root)
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for text in handle:
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if action and line.get("action") != action:
                continue
            if since:
                try:
                    when = datetime.fromisoformat(line.get("time", ""))
                except ValueError:
                    continue
                if when < since:
                    continue
            yield line
