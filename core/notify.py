"""Notifications on failure, recovery and warnings: Apprise URLs (mail, ntfy, Slack, ...) and the desktop.

Rules that keep a flapping service from flooding anyone:
- the same key+level is sent at most once per `min_interval_seconds` (state in a JSON file, so a
  restarted agent remembers);
- a recovery is sent only when a failure (or warning) for that key was sent before, and it clears it
  (so a service flapping all day costs at most one failure and one recovery per interval);
- a send counts only when at least one target took it: a failed delivery is logged, returns False and
  is tried again next time.
Titles and bodies have URL passwords (`://user:pass@`) masked: error texts may quote a connection URL.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import apprise

from core.atomic import private_dir, write_bytes_atomic
from core.config import NotifySettings
from core.redact import redact  # URL passwords and every secret the process knows

log = logging.getLogger("ragflow_backup.notify")

Level = Literal["failure", "recovery", "warning"]
APPRISE_TYPES = {"failure": apprise.NotifyType.FAILURE, "recovery": apprise.NotifyType.SUCCESS,
                 "warning": apprise.NotifyType.WARNING}
APP_NAME = "ragflow-backup"
def describe_target(url: str) -> str:
    """A URL fit for a log line: its scheme only (Apprise URLs carry tokens even as host: tgram://TOKEN)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    return f"{scheme}://..." if scheme.replace("+", "").isalnum() else "an unparsable URL"


def _drop(record: logging.LogRecord) -> bool:
    return False


def _no_debug(record: logging.LogRecord) -> bool:
    # Apprise's debug lines print request URLs with their tokens (api.telegram.org/bot<TOKEN>/...).
    return record.levelno > logging.DEBUG


def _quietly_add(service: apprise.Apprise, url: str) -> bool:
    """Add a URL with Apprise's own logger muted: its parse errors quote the URL, tokens and all."""
    apprise_log = logging.getLogger("apprise")
    apprise_log.addFilter(_drop)
    try:
        return bool(service.add(url))
    finally:
        apprise_log.removeFilter(_drop)


class _ReasonsOf(logging.Handler):
    """Apprise's warnings while a message is sent: the last one says why it failed ("... 404 - Not Found")."""

    def __init__(self, logger: str):
        super().__init__(logging.WARNING)
        self.logger = logging.getLogger(logger)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def last(self) -> str | None:
        return self.messages[-1] if self.messages else None

    def __enter__(self) -> "_ReasonsOf":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Notifier:
    def __init__(self, settings: NotifySettings, state_file: Path, clock: Callable[[], datetime] = utc_now):
        self.settings = settings
        self.state_file = Path(state_file)
        self.clock = clock
        self._lock = threading.Lock()
        logging.getLogger("apprise").addFilter(_no_debug)  # idempotent: a filter is added once

    # --- state: {"sent": {"key|level": iso time}, "failing": {key: iso time of the failure or warning sent}}

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            raw: Any = json.loads(self.state_file.read_text())
            return {"sent": dict(raw.get("sent", {})), "failing": dict(raw.get("failing", {}))}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.warning("notification state %s is unreadable (%s); starting afresh", self.state_file, type(exc).__name__)
        return {"sent": {}, "failing": {}}

    def _save(self, state: dict[str, dict[str, str]]) -> None:
        private_dir(self.state_file.parent)
        write_bytes_atomic(self.state_file, json.dumps(state, indent=2, sort_keys=True).encode() + b"\n")

    def open_failures(self) -> list[str]:
        """Keys whose failure or warning was sent and not yet followed by a recovery."""
        with self._lock:
            return sorted(self._load()["failing"])

    # --- sending ------------------------------------------------------------------------------

    def notify(self, key: str, level: Level, title: str, body: str) -> bool:
        """Send unless rate-limited (or, for a recovery, unless no failure was sent). True if sent."""
        if level not in APPRISE_TYPES:
            raise ValueError(f"unknown notification level {level!r}; choose from {', '.join(APPRISE_TYPES)}")
        with self._lock:
            state = self._load()
            now = self.clock()
            if level == "recovery" and key not in state["failing"]:
                log.debug("notify: recovery of %s not sent: no failure was sent for it", key)
                return False
            stamp = state["sent"].get(f"{key}|{level}")
            if stamp is not None:
                age = (now - datetime.fromisoformat(stamp)).total_seconds()
                # A clock moved back a little still suppresses; a stamp far in the future came from
                # a wrong clock and must not silence this key for years.
                if abs(age) < self.settings.min_interval_seconds:
                    log.info("notify: %s %s suppressed (sent %.0f s ago)", level, key, age)
                    return False
            if not self._deliver(level, redact(title), redact(body)):
                return False
            state["sent"][f"{key}|{level}"] = now.isoformat()
            if level in ("failure", "warning"):
                state["failing"][key] = now.isoformat()
            elif level == "recovery":
                state["failing"].pop(key, None)
            self._save(state)
            return True

    def failure(self, key: str, title: str, body: str) -> bool:
        return self.notify(key, "failure", title, body)

    def warning(self, key: str, title: str, body: str) -> bool:
        return self.notify(key, "warning", title, body)

    def recovered(self, key: str, title: str, body: str = "") -> bool:
        return self.notify(key, "recovery", title, body or title)

    def _deliver(self, level: Level, title: str, body: str) -> bool:
        """Send to every target; True when at least one took it. Never raises."""
        results = self.send_each(level, title, body)
        if not results:
            log.debug("notify: no targets configured; %r not sent", title)
        return any(error is None for _, error in results)

    def send_each(self, level: Level, title: str, body: str) -> list[tuple[str, str | None]]:
        """Send to every target, unconditionally (no rate limit, no state): (target as logs may name it, None
        when it took the message or why not). `notify test` shows these; never raises."""
        results: list[tuple[str, str | None]] = []
        for index, secret in enumerate(self.settings.urls, start=1):
            url = secret.get_secret_value()
            target = f"target #{index} ({describe_target(url)})"
            results.append((target, self._send_apprise(url, target, level, title, body)))
        if self.settings.desktop:
            results.append(("desktop", None if self._desktop(title, body) else "not shown (no desktop session?)"))
        return results

    def _send_apprise(self, url: str, target: str, level: Level, title: str, body: str) -> str | None:
        reasons = _ReasonsOf("apprise")
        try:
            service = apprise.Apprise()
            if not _quietly_add(service, url):
                log.error("notify: %s is not a valid Apprise URL; fix notify.urls in the config", target)
                return "not a valid Apprise URL (fix notify.urls in the config)"
            with reasons:
                sent = service.notify(body=body, title=title, notify_type=APPRISE_TYPES[level])
            if sent:
                return None
            log.error("notify: sending %r to %s failed (see apprise's log lines)", title, target)
            return redact(reasons.last() or "not delivered")
        except Exception as exc:  # noqa: BLE001 - a broken notifier must not break the agent
            log.error("notify: sending to %s raised %s", target, type(exc).__name__)
            return type(exc).__name__

    def _desktop(self, title: str, body: str) -> bool:
        try:
            from notifypy import Notify  # lazy: optional desktop notifications: only when asked for

            note = Notify(default_notification_application_name=APP_NAME)
            note.title, note.message = title, body
            if note.send(block=True):
                return True
            log.warning("notify: the desktop notification was not shown (no desktop session?)")
        except Exception as exc:  # noqa: BLE001 - no D-Bus / notify-send on servers
            log.warning("notify: desktop notification failed: %s", type(exc).__name__)
        return False
