"""doctor's checks of the binlog archive: the server reachable by the streamer's client, the replication grant,
log_bin on, binlog_format ROW, an expiry long enough for the agent to catch up after time away; and `verify`'s
check of the archived files against the index."""
from __future__ import annotations

import re

from actors.binlog.index import ArchiveIndex, load_index
from actors.binlog.source import BinlogSource, open_source
from core.atomic import sha256_of
from core.component import Check, failed_check, off_check
from core.config import Settings
from core.layout import Layout
from core.safe_paths import entry_problem

NAME = "binlog"
CATCH_UP_SECONDS = 24 * 3600  # an agent away for a day (a host reboot, a weekend's Monday) must find its files


def granted(grants: list[str], privilege: str) -> bool:
    for line in grants:
        on_all = re.search(r"\bON \*\.\* TO\b", line, re.IGNORECASE)
        if on_all and (re.search(r"\bALL PRIVILEGES\b", line, re.IGNORECASE)
                       or re.search(rf"\b{privilege}\b", line, re.IGNORECASE)):
            return True
    return False


def server_checks(source: BinlogSource, user: str) -> list[Check]:
    [(version, log_bin, binlog_format)] = source.query("SELECT @@version, @@log_bin, @@binlog_format")
    mariadb = "mariadb" in version.lower()
    checks = [Check(NAME, "ok", f"{source.tool_version.split(',')[0]} reaches {version} at {source.where}")]
    grants = [row[0] for row in source.query("SHOW GRANTS")]
    needed = ("REPLICATION SLAVE", "BINLOG MONITOR" if mariadb else "REPLICATION CLIENT")
    if mariadb:  # REPLICATION CLIENT is BINLOG MONITOR's old name in MariaDB 10.5+
        grants = [line.replace("REPLICATION CLIENT", "BINLOG MONITOR") for line in grants]
    missing = [privilege for privilege in needed if not granted(grants, privilege)]
    if missing:
        checks.append(Check(f"{NAME} grant", "fail", f"user '{user}' lacks {' and '.join(missing)}",
                            f"on the server: GRANT {', '.join(needed)} ON *.* TO '{user}'@'<host>'"))
    else:
        checks.append(Check(f"{NAME} grant", "ok", f"user '{user}' has {' and '.join(needed)}"))
    if log_bin not in ("1", "ON"):
        checks.append(Check(f"{NAME} log_bin", "warn", "log_bin is off: MySQL restores reach only the points' dumps",
                            "start MySQL with --log-bin and --binlog-format=ROW (RAGFlow's compose: the mysql "
                            "service's command), or set binlog.enabled: false"))
        return checks
    if binlog_format.upper() == "ROW":
        checks.append(Check(f"{NAME} format", "ok", "binlog_format=ROW"))
    else:
        checks.append(Check(f"{NAME} format", "warn", f"binlog_format={binlog_format}: statements replayed later may "
                            f"not give the same rows", "set binlog_format=ROW on the server (--binlog-format=ROW)"))
    checks.append(expiry_check(source, mariadb))
    return checks


def expiry_check(source: BinlogSource, mariadb: bool) -> Check:
    try:
        [(seconds,)] = source.query("SELECT @@binlog_expire_logs_seconds")
    except Exception:  # noqa: BLE001 - MariaDB before 10.6 knows expire_logs_days only
        seconds = "0"
    expiry = float(seconds or 0)
    if not expiry and mariadb:
        [(days,)] = source.query("SELECT @@expire_logs_days")
        expiry = float(days or 0) * 86400
    if not expiry:
        return Check(f"{NAME} expiry", "ok", "the server never purges its binary log by itself")
    hours = expiry / 3600
    if expiry < CATCH_UP_SECONDS:
        return Check(f"{NAME} expiry", "warn", f"the server purges its binary log after {hours:g} h: an agent away "
                     f"longer leaves a gap", "raise binlog_expire_logs_seconds to 604800 (RAGFlow's 7 days)")
    return Check(f"{NAME} expiry", "ok", f"the server keeps its binary log {hours:g} h")


def check_binlog(settings: Settings) -> list[Check]:
    if not settings.mysql.enabled or not settings.binlog.enabled:
        return [off_check(NAME, "" if settings.binlog.enabled else "disabled in the config (binlog.enabled)")]
    try:
        with open_source(settings) as source:
            return server_checks(source, settings.mysql.user)
    except Exception as exc:  # noqa: BLE001 - doctor reports, never raises
        return [failed_check(NAME, exc, "check the mysql section (the binlog archive uses its connection) and that "
                                        "mariadb-binlog or mysqlbinlog runs where the client runs")]


def archive_problems(layout: Layout, index: ArchiveIndex | None = None) -> list[str]:
    """What is wrong with the archived files: missing, not a plain file, or not matching the index."""
    index = index if index is not None else load_index(layout)
    problems = []
    for entry in index.files:
        path = layout.binlog_archive / entry.name
        problem = entry_problem(path, want_dir=False)
        if problem:
            problems.append(f"{path} {problem}")
            continue
        if entry.complete and path.stat().st_size != entry.size:
            problems.append(f"{path} is {path.stat().st_size} bytes, the index says {entry.size}")
        elif entry.complete and sha256_of(path) != entry.sha256:
            problems.append(f"{path} does not match its checksum in the index")
    return problems
