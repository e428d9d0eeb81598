"""Values for a MySQL client option file (`--defaults-extra-file`), where the local clients of actors/mysql/ and
actors/binlog/ find the account and its password (never in argv)."""
from __future__ import annotations

from core.component import PermanentError


def option_value(value: str, setting: str) -> str:
    """A value for a MySQL option file: quoted so '#' and spaces survive, backslash escapes for the rest."""
    escaped = (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
               .replace("\b", "\\b"))
    quote = '"' if '"' not in value else "'"
    if quote in value and "#" in value:
        # The option-file parser would take what follows '#' for a comment.
        raise PermanentError(f"{setting} holds both kinds of quote and a '#', which a MySQL option file cannot "
                             f"carry safely: change it or use mysql.mode: docker")
    return f"{quote}{escaped}{quote}"
