"""Masking secrets in any text the product shows or keeps: messages, tables, logs, notifications, audit lines.

Two layers, both in `redact(text)`:
  - by shape: a URL's userinfo password (`scheme://user:pass@host` -> `scheme://user:***@host`), and the value
    of a `NAME=value` / `name: value` line whose name looks secret (password, secret_key, *_KEY, token, ...);
    this is `mask_secrets(line)`, which the config diff (actors/config/restore.py) uses too;
  - by value: every secret this process knows (the loaded settings' SecretStr values, the secret-named values of
    RAGFlow's .env), wherever it appears, also URL-quoted. Client libraries quote URLs and passwords in their
    exceptions, and a YAML error quotes the line it stopped on: neither comes with a name to recognise.

The values are kept in this module (process-wide): a secret learnt once is masked in every later message.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel

MASK = "***"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|KEY|TOKEN", re.IGNORECASE)
# [indent] [- ] [export ] ["]NAME["] (= | : ) value
ASSIGNMENT = re.compile(r"^(\s*(?:-\s*)?(?:export\s+)?[\"']?)([A-Za-z_][A-Za-z0-9_.-]*)([\"']?\s*(?:=|:\s)\s*)(\S.*)$")
# The same inside one line of flow YAML or a message: `password: x,` `"secret_key": "x"` `MYSQL_PASSWORD=x`
# (MinIO's access_key is its user name, not a secret).
INLINE_ASSIGNMENT = re.compile(
    r"([\"']?[A-Za-z0-9_.-]*(?:password|passwd|secret|token|(?<!access)_key)[\"']?\s*(?:=|:\s)\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,}\]\"']+)", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s/]+@")  # a "/" in a password is %-quoted in a URL
# Shorter values would mask ordinary words ("secret", "admin"): they are still masked by their shape.
MIN_SECRET_LENGTH = 8

_known: set[str] = set()
_lock = threading.Lock()


NOT_SECRET_SUFFIXES = ("access_key", "_file", "_path", "_source")  # a user name; where a secret is kept


def is_secret_name(name: str) -> bool:
    """A variable or option whose value is a secret (offsite.password_file names a file: not one)."""
    return bool(SECRET_NAME.search(name)) and not name.lower().endswith(NOT_SECRET_SUFFIXES)


def mask_secrets(line: str) -> str:
    """Hide the value of a NAME=value / name: value line whose name looks secret, and passwords in URLs."""
    match = ASSIGNMENT.match(line)
    if match and is_secret_name(match.group(2)) and match.group(4).strip("\"', ") != MASK:
        line = f"{match.group(1)}{match.group(2)}{match.group(3)}{MASK}"
    return URL_PASSWORD.sub(rf"\1{MASK}@", line)


def remember(values: Iterable[Any]) -> None:
    """Mask these values from now on (str or SecretStr; None and short values are skipped)."""
    found = set()
    for value in values:
        text = _plain(value)
        if text is None:
            continue
        for variant in (text, quote(text, safe=""), unquote(text)):
            if len(variant) >= MIN_SECRET_LENGTH:
                found.add(variant)
        password = _url_password(text)
        if password:
            found |= {password, unquote(password)}
    with _lock:
        _known.update(v for v in found if len(v) >= MIN_SECRET_LENGTH)


def forget_all() -> None:
    """Forget every remembered value: for a process that starts over with other settings (tests do)."""
    with _lock:
        _known.clear()


def remember_assignments(text: str) -> None:
    """Remember the values of secret-named lines of a text (a config file that may not even parse)."""
    values = []
    for line in text.splitlines():
        match = ASSIGNMENT.match(line)
        if match and is_secret_name(match.group(2)):
            values.append(match.group(4))
        values += [value for _, value in INLINE_ASSIGNMENT.findall(line)]
        values += [m.group(0)[len(m.group(1)):-1] for m in URL_PASSWORD.finditer(line)]
    # A line that does not parse may run on past its value ("password: pw: [x"): its first word counts too.
    words = [value.split()[0].rstrip(":,;") for value in values if value.split()]
    remember(value.strip().strip("\"'") for value in [*values, *words])


def remember_settings(settings: Any) -> None:
    """Every SecretStr of a pydantic model (nested models, lists and dicts included), and URL passwords.

    A secret URL counts by its password (the broker's redis://host:6379/2 stays readable in messages),
    except notification URLs: Apprise keeps their tokens in the host and path."""
    remember(_secrets_of(settings))
    remember(getattr(getattr(settings, "notify", None), "urls", None) or [])
    remember([getattr(getattr(settings, "notify", None), "ping_url", None)])  # its token is in the path


def _secrets_of(value: Any) -> Iterable[Any]:
    if hasattr(value, "get_secret_value"):
        text = _plain(value)
        yield _url_password(text) if text and "://" in text else text
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_of(getattr(value, name, None))
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _secrets_of(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_of(item)
    elif isinstance(value, str) and URL_PASSWORD.search(value):
        yield _url_password(value)


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    if not hasattr(value, "get_secret_value"):
        return str(value)
    try:
        return value.get_secret_value()
    except Exception:  # noqa: BLE001 - core.config.UnreadableSecret: a value nobody could read is no leak
        return None


def _url_password(text: str) -> str | None:
    if "://" not in text:
        return None
    try:
        return urlsplit(text.strip()).password
    except ValueError:
        return None


def redact(text: Any) -> str:
    """The text with every known secret and every secret-shaped value masked."""
    text = str(text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # a longer secret first: it may contain a shorter one
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    # Inline first: it keeps a JSON value quoted, and mask_secrets leaves a masked value as it is.
    lines = [mask_secrets(INLINE_ASSIGNMENT.sub(_masked_value, line)) for line in text.split("\n")]
    return "\n".join(lines)


def _masked_value(match: re.Match) -> str:
    value = match.group(2)
    quote_mark = value[0] if value[0] in "\"'" else ""  # JSON stays JSON
    return f"{match.group(1)}{quote_mark}{MASK}{quote_mark}"


def redact_data(value: Any) -> Any:
    """JSON-like data with every string redacted (keys stay: they are ours)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """On a handler: the record's message is redacted before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback's last line repeats the exception's message: format it here, redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_handlers(handlers: Iterable[logging.Handler]) -> None:
    """Put the filter on these handlers (once each)."""
    for handler in handlers:
        if not any(isinstance(item, RedactingFilter) for item in handler.filters):
            handler.addFilter(RedactingFilter())


def redact_logging() -> None:
    """The root logger's handlers and Python's last-resort handler (warnings logged with no handler set up)."""
    redact_handlers([*logging.getLogger().handlers, *([logging.lastResort] if logging.lastResort else [])])
