"""The status page at / on the metrics port: rendered by Jinja2 (autoescape on) from agent/console/view.py.

The page has no script; its stylesheet is inline and allowed by its hash, the plots are data: images:
so the Content-Security-Policy allows nothing else (no request leaves the page, nothing from a CDN).
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from agent.console.history import HistoryStore
from agent.console.view import build
from agent.health import HealthReport
from core.config import Settings
from core.points import Storage

ENVIRONMENT = Environment(loader=PackageLoader("agent.console", "templates"), autoescape=select_autoescape(default=True),
                          trim_blocks=True, lstrip_blocks=True)
STYLESHEET = ENVIRONMENT.loader.get_source(ENVIRONMENT, "console.css")[0]  # type: ignore[union-attr]
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode()

SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class StatusPage:
    """Rendered at most once per `cache_seconds` (metrics.cache_seconds) however often it is asked for:
    a page reads every manifest, the history and the end of the audit log."""

    def __init__(self, settings: Settings, storage: Storage, store: HistoryStore | None = None,
                 cache_seconds: float = 0.0):
        self.settings, self.storage = settings, storage
        self.store = store or HistoryStore(storage.root)
        self.template = ENVIRONMENT.get_template("page.html")
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, bytes] | None = None
        self._lock = threading.Lock()

    def render(self, report: Callable[[], HealthReport]) -> str:
        page = build(self.settings, self.storage, report, self.store)
        return self.template.render(page=page, stylesheet=Markup(STYLESHEET))  # ours, and hashed in the CSP

    def body(self, report: Callable[[], HealthReport]) -> bytes:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds:
                self._cached = (now, self.render(report).encode())
            return self._cached[1]

    def route(self, report: Callable[[], HealthReport]) -> Callable[[], tuple[int, str, bytes]]:
        return lambda: (200, "text/html; charset=utf-8", self.body(report))
