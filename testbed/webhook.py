"""A webhook receiver on 127.0.0.1 that records every POST (and GET: ping URLs): where Apprise's json:// and
form:// targets deliver in tests, so notifications are real deliveries without the internet."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Inbox:
    port: int = 0
    posts: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        """An Apprise target that delivers here as JSON."""
        return f"json://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict]:
        """Each POST's fields, whether it came as JSON or as a form."""
        found = []
        for post in list(self.posts):
            if post["type"].startswith("application/json"):
                found.append(json.loads(post["data"]))
            else:
                found.append({k: v[0] for k, v in parse_qs(post["data"].decode()).items()})
        return found

    def titles(self) -> list[str]:
        return [body.get("title", "") for body in self.bodies()]

    def text(self) -> str:
        return "\n".join(f"{body.get('title', '')}\n{body.get('message', '')}" for body in self.bodies())


@contextmanager
def receiving() -> Iterator[Inbox]:
    box = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            box.posts.append({"path": self.path, "type": self.headers.get("Content-Type", ""), "data": data,
                              "auth": self.headers.get("Authorization")})
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 - Uptime Kuma's push URLs are GETs
            box.posts.append({"path": self.path, "type": "", "data": b"", "auth": self.headers.get("Authorization"),
                              "method": "GET"})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
