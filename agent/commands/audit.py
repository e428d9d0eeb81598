"""`audit`: who did what to the backups, and how it ended (logs/audit.log)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from agent.commands.common import console, fail, state
from core import audit as audit_log

_SPAN = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str) -> datetime:
    """'24h', '7d', '2w', '30m' ago, or an ISO date/time (local time without a zone)."""
    span = _SPAN.match(text.strip())
    if span:
        try:
            return datetime.now(timezone.utc) - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
        except OverflowError:
            fail(f"--since {text!r} reaches back before the year 1: give a smaller span", code=2)
    try:
        moment = datetime.fromisoformat(text.strip())
        return moment if moment.tzinfo else moment.astimezone()  # year 1 has no local time: ValueError
    except (ValueError, OverflowError):
        fail(f"--since {text!r} is neither a span (24h, 7d, 2w) nor a date (2026-11-24 or 2026-11-24T10:30)", code=2)


def audit(
    since: Annotated[Optional[str], typer.Option(help="Only lines since: 24h, 7d, 2w, or a date/time.")] = None,
    action: Annotated[Optional[str], typer.Option(help="Only this action: backup, verify, prune, delete, restore, "
                                                       "rollback, drill, offsite-copy, offsite-forget, offsite-check, ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lines as JSON lines.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many (the newest).")] = 200,
) -> None:
    """Show the audit log: every backup, verify, prune, deletion, restore, rollback and offsite job."""

    settings = state.settings()
    lines = list(audit_log.read(settings.storage_root, parse_since(since) if since else None, action))[-limit:]
    if as_json:
        for line in lines:
            print(json.dumps(line, default=str))
        return
    table = Table(title=f"audit log ({audit_log.audit_path(settings.storage_root)})")
    table.add_column("time", no_wrap=True)
    for column in ("actor", "action", "target", "result"):
        table.add_column(column, overflow="fold")
    table.add_column("details", overflow="ellipsis", max_width=80)
    known = {"time", "actor", "action", "target", "result"}
    for line in lines:
        details = {k: v for k, v in line.items() if k not in known}
        table.add_row(str(line.get("time", ""))[:19].replace("T", " "), str(line.get("actor", line.get("who", ""))),
                      str(line.get("action", "")), str(line.get("target") or ""), str(line.get("result", "")),
                      ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in details.items())[:300])
    console.print(table)
