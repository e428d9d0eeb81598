"""The mirror's GETs sent and read by libcurl (pycurl), streamed: the transport of actors/minio/object_get.py.

For small objects, urllib3 and `http.client` around each request (sending, the status line, the headers
parsed by the `email` package, the pool's bookkeeping) were the largest part of a reconcile's interpreter
time; a 32 KiB GET cost 410-450 us of thread CPU through urllib3 and 165-175 us through libcurl, with the
same signing (docs/benchmarks.md, "Issue 16: figure 1a, client and server CPU per object"). libcurl does
the HTTP in C with the GIL released; Python sees only the header lines and the body's blocks.

Each thread has its own easy and multi handle (libcurl handles are not shared between threads; the
multi keeps the thread's connection open between requests). The multi is driven step by step, so the
body is streamed as it arrives (`stream`, in blocks of about 1 MiB), never held whole.
A transfer that fails before the server answered returns None (the caller asks again through minio-py,
with its retries and errors, as before); a read that gets no byte for `read_timeout` seconds, or a body
cut short, raises `TransferFailed` naming the endpoint. Answers are untrusted: header lines are read as
ISO-8859-1, as `http.client` reads them, and what they say is checked by the caller.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pycurl
from urllib3 import HTTPHeaderDict

BUFFER = 1 << 20  # libcurl's receive buffer, and the blocks `stream` hands on
LARGE = 64 << 10  # blocks this large are handed on as they are (joining them would copy every byte again)
WAIT = 1.0  # seconds per wait for the socket; libcurl enforces the timeouts itself
TIMED_OUT = (pycurl.E_OPERATION_TIMEDOUT,)


class TransferFailed(ConnectionError):
    """A GET that timed out, or whose body was cut short."""


class CurlGets:
    """GETs of one endpoint (`base`: scheme://host:port)."""

    def __init__(self, base: str, connect_timeout: float, read_timeout: float, ca_file: str | None):
        self.base, self.connect_timeout, self.read_timeout, self.ca_file = base, connect_timeout, read_timeout, ca_file
        self.local = threading.local()
        self.connects = 0  # connections opened, all threads (a kept-alive connection is counted once)

    def _handles(self) -> tuple[pycurl.Curl, pycurl.CurlMulti]:
        handles = getattr(self.local, "handles", None)
        if handles is None:
            easy = pycurl.Curl()
            easy.setopt(pycurl.NOSIGNAL, 1)
            easy.setopt(pycurl.PATH_AS_IS, 1)  # the path is sent as signed
            easy.setopt(pycurl.FOLLOWLOCATION, 0)
            easy.setopt(pycurl.PROXY, "")  # no proxy from the environment: minio-py's urllib3 takes none either
            easy.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            easy.setopt(pycurl.BUFFERSIZE, BUFFER)
            easy.setopt(pycurl.CONNECTTIMEOUT_MS, int(self.connect_timeout * 1000))
            easy.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # fewer bytes a second than this, for as long as...
            easy.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(self.read_timeout)))  # ...this: timed out
            if self.ca_file:
                easy.setopt(pycurl.CAINFO, self.ca_file)
            handles = self.local.handles = (easy, pycurl.CurlMulti())
            self.local.busy = False
        return handles

    def open(self, path: str, headers: dict[str, str], where: str) -> CurlResponse | None:
        """Send the GET and read up to the end of the answer's headers; None if it failed before them
        (refused, reset) and may be asked again; TransferFailed if it timed out. `where`: for messages."""
        easy, multi = self._handles()
        if self.local.busy:
            raise RuntimeError("one GET at a time per thread: the previous response was not closed")
        response = CurlResponse(self, easy, multi, where)
        easy.setopt(pycurl.URL, self.base + path)
        easy.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()] +
                    ["Accept:", "Accept-Encoding: identity"])
        easy.setopt(pycurl.HEADERFUNCTION, response.lines.append)
        easy.setopt(pycurl.WRITEFUNCTION, response.blocks.append)
        multi.add_handle(easy)
        self.local.busy = True
        try:
            while not response.answered() and response.pump():
                pass
        except BaseException:
            response.close()
            raise
        if not response.answered():
            error = response.error
            response.close()
            if error is not None and error[0] in TIMED_OUT:
                raise TransferFailed(f"GET {where} from {self.base} timed out: {error[1]}")
            return None
        response.read_headers()
        return response


class CurlResponse:
    """What `_download` reads of a urllib3 response: `status`, `headers` (case-insensitive, `getlist`),
    `stream(n)`, `read()`, `close()` and `release_conn()`."""

    def __init__(self, gets: CurlGets, easy: pycurl.Curl, multi: pycurl.CurlMulti, where: str):
        self.gets, self.easy, self.multi, self.where = gets, easy, multi, where
        self.lines: list[bytes] = []
        self.blocks: list[bytes] = []
        self.running, self.error = True, None
        self.status, self.headers = 0, HTTPHeaderDict()

    def answered(self) -> bool:
        return bool(self.lines) and self.lines[-1] in (b"\r\n", b"\n") and len(self.lines) > 1

    def pump(self) -> bool:
        """Let libcurl move the transfer on (waiting for the socket if it has nothing to do); False once
        it ended (`error`: libcurl's (code, message) if it failed)."""
        if not self.running:
            return False
        before = len(self.blocks)
        while True:
            code, active = self.multi.perform()
            if code != pycurl.E_CALL_MULTI_PERFORM:
                break
        if active:
            if len(self.blocks) == before:
                self.multi.select(WAIT)  # nothing came: wait for the socket
            return True
        _, _, failed = self.multi.info_read()
        self.error = (failed[0][1], failed[0][2]) if failed else None
        self._finish()
        return False

    def _finish(self) -> None:
        if self.running:
            self.running = False
            self.gets.connects += self.easy.getinfo(pycurl.NUM_CONNECTS)
            self.multi.remove_handle(self.easy)  # the connection stays open for the thread's next GET
            self.gets.local.busy = False

    def read_headers(self) -> None:
        self.status = self.easy.getinfo(pycurl.RESPONSE_CODE)
        for line in self.lines[1:]:
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if colon:
                self.headers.add(name.strip(), value.strip())

    def stream(self, amount: int = BUFFER, decode_content: bool = False) -> Iterator[bytes]:
        """The body as stored (libcurl decodes no Content-Encoding unless asked, and is not: decode_content
        is urllib3's argument, accepted only as False) in blocks of `amount` bytes or more (the last one
        may be shorter), as it arrives:
        libcurl hands over what each read of the socket got (often 16-64 KiB), and hashing and writing
        large blocks costs less per byte (hashlib lets go of the GIL only for 2 KiB and more)."""
        if decode_content:
            raise ValueError("libcurl's GETs hand on the body as stored: decode_content=True is not supported")
        while True:
            if self.blocks and (not self.running or sum(map(len, self.blocks)) >= amount):
                if len(self.blocks) == 1 or len(self.blocks[0]) >= LARGE:
                    yield from self.blocks  # large already: each is hashed without the GIL
                else:
                    yield b"".join(self.blocks)
                self.blocks.clear()
            elif not self.pump() and not self.blocks:
                break
        if self.error is not None:
            raise TransferFailed(f"GET {self.where} from {self.gets.base} was cut short: {self.error[1]}")

    def read(self) -> bytes:
        return b"".join(self.stream())

    def close(self) -> None:
        """End the transfer; one still running is abandoned (libcurl closes its connection)."""
        self._finish()
        self.blocks.clear()

    def release_conn(self) -> None:
        """Nothing to do: `close` handed the connection back."""


__all__ = ["CurlGets", "CurlResponse", "TransferFailed"]
