"""The dead-man's switch: `notify.ping_url` hears from every backup run, so silence itself raises an alarm.

Healthchecks' convention (healthchecks.io, self-hosted Healthchecks, and services that copy it):
    POST <url>/start   a run began        POST <url>   it ended complete        POST <url>/fail   it did not
Uptime Kuma's push monitors are recognised by their path (`/api/push/<token>`): a run's end is
    GET <url>?status=up&msg=...   or   GET <url>?status=down&msg=...   (Kuma has no start signal).

A ping never fails a backup: a short timeout, one try, the failure logged. The URL is a secret (it lets anyone
mark the job healthy), so logs and messages show its scheme and host only.
"""
from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from core.config import NotifySettings
from core.redact import redact

log = logging.getLogger("ragflow_backup.ping")

Stage = Literal["start", "success", "fail"]
HEALTHCHECKS_SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}
MAX_BODY = 10_000  # Healthchecks keeps the first 10 KB of a ping's body as its log


def masked(url: str) -> str:
    """The URL as logs may show it: scheme and host, the path (the token) hidden."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/***"


def is_uptime_kuma(url: str) -> bool:
    return "/api/push/" in urlsplit(url).path


def request_for(url: str, stage: Stage, message: str) -> urllib.request.Request | None:
    """The request a stage sends; None when the service has no such signal (Kuma's start)."""
    parts = urlsplit(url)
    if is_uptime_kuma(url):
        if stage == "start":
            return None
        query = urlencode({"status": "up" if stage == "success" else "down", "msg": message[:200], "ping": ""})
        return urllib.request.Request(urlunsplit(parts._replace(query=query)), method="GET")
    path = parts.path.rstrip("/") + HEALTHCHECKS_SUFFIX[stage]
    return urllib.request.Request(urlunsplit(parts._replace(path=path)), data=message.encode()[:MAX_BODY],
                                  method="POST", headers={"Content-Type": "text/plain; charset=utf-8"})


def ping(settings: NotifySettings, stage: Stage, message: str = "") -> str | None:
    """Send one stage's ping if a ping URL is configured. None when it went through (or there is nothing
    to send), else why not, in words fit for a log (the URL masked). Never raises."""
    if settings.ping_url is None:
        return None
    url = settings.ping_url.get_secret_value()
    try:
        request = request_for(url, stage, redact(message))
        if request is None:
            return None
        with urllib.request.urlopen(request, timeout=settings.ping_timeout_seconds) as response:
            response.read(1024)
        log.info("ping %s sent to %s", stage, masked(url))
        return None
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        reason = str(exc.reason)
    except Exception as exc:  # noqa: BLE001 - a bad URL or a timeout must never fail a backup
        reason = f"{type(exc).__name__}: {exc}"
    reason = redact(reason).replace(url, masked(url))
    log.warning("ping %s to %s failed: %s (the backup itself is not affected)", stage, masked(url), reason)
    return reason
