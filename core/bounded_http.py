"""A small HTTP/1.0 GET server whose cost is bounded whatever its clients do (the metrics/health port).

One thread runs an asyncio loop that reads every request (a connection waiting for its request costs a
socket, not a thread); the answers are computed on a fixed pool of `workers` threads. A client must send
its request head within `read_timeout` seconds and `max_request_bytes`; at most `max_connections` are
open: a new one beyond that closes the oldest still sending its request, or is closed at once when every
open one is being answered. So 1,500 half-open connections hold no thread and never lock a scraper out.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

log = logging.getLogger("ragflow_backup.http")

# (status, content type, body) for a path (query string removed); run on the worker pool.
Route = Callable[[], tuple[int, str, bytes]]
# Whether a request's headers (names lower-cased) authenticate it; a refused one gets 401, or its open route.
Authorize = Callable[[Mapping[str, str]], bool]


class BoundedHttpServer:
    def __init__(self, host: str, port: int, routes: dict[str, Route], *, name: str = "http", workers: int = 2,
                 max_connections: int = 64, read_timeout: float = 10.0, write_timeout: float = 30.0,
                 max_request_bytes: int = 8192, not_found: bytes = b"not found\n", authorize: Authorize | None = None,
                 open_routes: dict[str, Route] | None = None, headers: Mapping[str, str] | None = None,
                 challenge: str = "Bearer"):
        self.host, self.port = host, port  # port 0: a free port is picked at start(); read it back from here
        self.routes = routes
        self.name = name
        self.workers = workers
        self.max_connections = max_connections
        self.read_timeout, self.write_timeout = read_timeout, write_timeout
        self.max_request_bytes = max_request_bytes
        self.not_found = not_found
        self.authorize = authorize
        self.open_routes = open_routes or {}  # answered without authentication (e.g. a bare health status)
        self.headers = dict(headers or {})  # sent with every answer (security headers)
        self.challenge = challenge
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reading: dict[asyncio.Task, asyncio.StreamWriter] = {}  # oldest first (dicts keep order)
        self._open = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        listener = socket.create_server((self.host, self.port), backlog=128)
        self.port = listener.getsockname()[1]
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self.name}-worker")
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(listener, started), name=self.name, daemon=True)
        self._thread.start()
        started.wait(30)

    def _run(self, listener: socket.socket, started: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._connection, sock=listener,
                                                              limit=self.max_request_bytes))
        started.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread = self._loop = self._pool = None

    # ------------------------------------------------------------ connections

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections and not self._evict_oldest_reader():
            writer.transport.abort()  # every slot is busy answering: refused at once
            return
        task = asyncio.current_task()
        assert task is not None
        self._open += 1
        self._reading[task] = writer
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                    asyncio.CancelledError):
                return  # too slow, too big, gone, or evicted: nothing is answered
            finally:
                self._reading.pop(task, None)
            status, content_type, body = await self._answer(head)
            extra = {**self.headers, **({"WWW-Authenticate": self.challenge} if status == 401 else {})}
            writer.write(_response(status, content_type, body, extra))
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except (asyncio.TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open -= 1
            writer.close()

    def _evict_oldest_reader(self) -> bool:
        for task, writer in self._reading.items():
            self._reading.pop(task)
            writer.transport.abort()
            task.cancel()
            return True
        return False

    async def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, "text/plain; charset=utf-8", b"bad request\n"
        method, target = parts[0], parts[1].decode("latin-1").split("?", 1)[0]
        if method != b"GET":
            return 405, "text/plain; charset=utf-8", b"only GET\n"
        route = self.routes.get(target)
        if self.authorize is not None and not self.authorize(_headers(head)):
            route = self.open_routes.get(target)
            if route is None:
                return 401, "text/plain; charset=utf-8", b"authentication required\n"
        if route is None:
            return 404, "text/plain; charset=utf-8", self.not_found
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, route)
        except Exception:  # noqa: BLE001 - a route's bug is a 500 for that request, logged with its traceback
            log.exception("%s: answering %s failed", self.name, target)
            return 500, "text/plain; charset=utf-8", b"internal error\n"


def _headers(head: bytes) -> dict[str, str]:
    found = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _response(status: int, content_type: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{lines}Connection: close\r\n\r\n")
    return head.encode("latin-1") + body
