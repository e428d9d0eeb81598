"""A real headless Chromium driven over its DevTools protocol (a websocket, websocket-client): pages are
loaded, every console message, exception and browser log entry (a CSP violation, a failed load) is
collected, the DOM is queried with JavaScript, and screenshots are taken.

Debian's `chromium` package (scripts/testbed installs it); a missing one fails the test naming it.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
WAIT = 120  # seconds: a guard against a hung browser, not a speed assertion


class Chromium:
    def __init__(self, width: int = 1280, height: int = 2000):
        binary = shutil.which("chromium")
        assert binary, "Debian's chromium package is missing: apt-get install -y chromium (scripts/testbed installs it)"
        # Chromium's helpers (crashpad, renderers) can outlive the browser by a moment and still write here.
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True)
        # --no-sandbox: the test bed runs as root, where Chromium's sandbox cannot start.
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        browser_url = self._listening_url()
        port = int(browser_url.split(":")[2].split("/")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=WAIT) as answer:
            targets = json.load(answer)
        page = next(target for target in targets if target["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=WAIT, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _listening_url(self) -> str:
        """From Chromium's stderr, which a thread then keeps draining (a full pipe would block the browser)."""
        self.stderr_lines: list[str] = []
        found: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.stderr_lines.append(line)
                if match := LISTENING.search(line):
                    found.put(match.group(1))
            found.put(None)

        threading.Thread(target=drain, name="chromium-stderr", daemon=True).start()
        url = found.get(timeout=WAIT)
        assert url, "chromium exited before listening for DevTools:\n" + "".join(self.stderr_lines[-20:])
        return url

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def _wait_for(self, event: str) -> dict[str, Any]:
        while True:
            message = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event."""
        self.events.clear()
        answer = self.call("Page.navigate", url=url)
        assert not answer.get("errorText"), f"{url}: {answer.get('errorText')}"
        if not any(message.get("method") == "Page.loadEventFired" for message in self.events):
            self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors (CSP, failed loads) so far."""
        self.call("Runtime.evaluate", expression="1")  # flushes the events sent before this answer
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                found.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        return found

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Stop the browser and every helper process it started (its own session), then drop the profile."""
        try:
            self.socket.close()
        finally:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            deadline = time.monotonic() + 10
            while self._signal_group(0) and time.monotonic() < deadline:
                time.sleep(0.1)
            self._signal_group(signal.SIGKILL)
            self.profile.cleanup()

    def _signal_group(self, signum: int) -> bool:
        """Send `signum` to the browser's process group; False once no process of it is left."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            return False
        return True
