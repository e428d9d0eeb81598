"""MinIO bucket notifications turned into on_object(bucket, key, event) and on_bucket(bucket) calls.

Threads: one listener per source bucket holding a ListenBucketNotification stream, one discovery thread
(buckets created or removed later: RAGFlow makes one per knowledge base) and one dispatcher that calls
the callbacks. Listeners only queue, so a callback that raises (Redis down) never stops a listener.

Events are the fast path, not a guarantee: MinIO drops them for slow readers, while it is down, and in
the moment between a listen request and its registration. Whenever a bucket's events may have been
missed (the bucket is new, or its stream was re-opened) on_bucket(bucket) is called once the stream is
open again, i.e. once MinIO has registered the listener, so the reconcile it triggers leaves no gap.

Keys: the listen API sends `s3.object.key` as stored, NOT URL-encoded (MinIO escapes keys only for its
configured notification targets: eventArgs.ToEvent(escape) in cmd/event-notification.go), so keys are
passed on untouched; unquoting would corrupt keys holding '+' or '%'.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from core.clients import secret
from core.config import MinioSettings

log = logging.getLogger("ragflow_backup.sources.minio")

EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 10.0  # seconds between attempts to reach MinIO again
CONNECT_TIMEOUT = 10.0
# MinIO writes a keep-alive byte every 0.5 s on a listen stream: this long a silence is a dead connection.
READ_TIMEOUT = 60.0
CALLBACK_RETRY_DELAYS = (0.5, 1.0, 2.0)  # then the event is dropped: the next reconcile covers it
# With on_objects, object events that queued up meanwhile are handed over together: at most BATCH_KEYS
# keys of a bucket per call (a burst costs one message per batch), and in at least SPREAD calls when there
# are enough keys, so the batches still spread over the worker threads (`run --threads`) instead of one
# thread fetching them all in turn while the others wait.
BATCH_KEYS = 16
SPREAD = 8
BATCH_DRAIN = 256  # queued items taken at once
_STOP = object()

# The listener that owns the current thread, so its connections can record their sockets.
_current = threading.local()


class _Tracked:
    """Records the socket in the listener that owns the thread, so stop() can shut it down from outside."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        listener = getattr(_current, "listener", None)
        if listener is not None:
            listener.sock = self.sock  # type: ignore[attr-defined]
            if listener.stopping.is_set():  # stop() came while we connected: it could not see this socket
                listener.cut()


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = type("TrackedHTTPConnection", (_Tracked, HTTPConnection), {})


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = type("TrackedHTTPSConnection", (_Tracked, HTTPSConnection), {})


def _http(**kwargs: Any) -> dict[str, Any]:
    """PoolManager options: no urllib3 retries (we back off ourselves, and stop() must not wait on its
    sleeps), bounded timeouts, and the CA handling the minio library uses by default."""
    return dict(timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT), retries=False,
                cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(), **kwargs)


class _StreamHTTP(urllib3.PoolManager):
    """A listener's HTTP client. Its socket can be shut down from another thread, which ends a blocked read
    at once (even one still waiting for response headers); and it reports each event stream that opens."""

    def __init__(self, on_stream: Callable[[], None]):
        super().__init__(**_http(maxsize=1))
        self.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}
        self._on_stream = on_stream

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any):  # type: ignore[override]
        response = super().urlopen(method, url, redirect=redirect, **kw)
        # MinIO sends the headers after it has subscribed the listener: from here on nothing is missed.
        if response.status == 200 and response.headers.get("Content-Type", "").startswith("text/event-stream"):
            response.readline = _LineReader(response)  # what minio's EventIterable reads events with
            self._on_stream()
        return response


class _LineReader:
    """readline() for an event stream, in whole reads: the one urllib3's response inherits reads one byte
    at a time, a few ms of CPU per event, so a burst of uploads queued up in the listener."""

    def __init__(self, response: Any):
        self.response, self.pending = response, b""

    def __call__(self, limit: int = -1) -> bytes:
        while b"\n" not in self.pending:
            piece = self.response.read1(65536)  # what has arrived (one chunk), without waiting for more
            if not piece:
                line, self.pending = self.pending, b""
                return line
            self.pending += piece
        line, _, self.pending = self.pending.partition(b"\n")
        return line + b"\n"


def _client(settings: MinioSettings, http: urllib3.PoolManager) -> Minio:
    return Minio(settings.endpoint, access_key=settings.access_key, secret_key=secret(settings.secret_key),
                 secure=settings.secure, http_client=http)


class _Listener:
    def __init__(self, bucket: str):
        self.bucket = bucket
        self.opens = 0
        self.failing = False
        self.connected = False
        self.stopping = threading.Event()
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def cut(self) -> None:
        """Ask the thread to end and shut its socket down, so a read blocked in it returns now."""
        self.stopping.set()
        if self.sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self.sock.shutdown(socket.SHUT_RDWR)


class MinioEventSource:
    """Listens to every source bucket (or settings.bucket alone) and calls back from one dispatcher thread.

    Health: `connected` (the bucket listing works and every listener has its stream open), `reconnects`
    (attempts after losing MinIO), `last_error`, `last_event_at` (time.time() of the last record),
    `dropped` (events given up after their callback kept failing).

    `on_objects(bucket, keys)`, when given, replaces on_object for events that queued up while the
    dispatcher was busy (a burst): their keys, in order and each once, per bucket (the mirror is
    level-triggered, so the event's kind does not matter).

    `charge`, when given, is called by the listener and dispatcher threads after each event, so the CPU
    of taking events in can be charged to the mirror's budget (core/cpu_budget.py settle(wait=False): it
    must never make them wait).
    """

    def __init__(self, settings: MinioSettings, on_object: Callable[[str, str, str], None],
                 on_bucket: Callable[[str], None], discovery_seconds: float | None = None,
                 events: Iterable[str] = EVENTS, charge: Callable[[], object] | None = None,
                 on_objects: Callable[[str, list[str]], None] | None = None):
        self.settings, self.on_object, self.on_bucket = settings, on_object, on_bucket
        self.on_objects = on_objects
        self.charge = charge or (lambda: None)
        self.discovery_seconds = settings.bucket_discovery_seconds if discovery_seconds is None else discovery_seconds
        self.events = tuple(events)
        # RAGFlow's single-bucket mode keeps everything under "<prefix_path>/": listen below exactly that.
        prefix = (settings.prefix_path or "").strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.last_event_at: float | None = None
        self.last_error: str | None = None
        self.reconnects = self.dropped = 0
        self._listing_ok = False
        self._listeners: dict[str, _Listener] = {}
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self._discovery: threading.Thread | None = None  # both set by start()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._stopping = threading.Event()

    # ------------------------------------------------------------ public face

    @property
    def connected(self) -> bool:
        with self._lock:
            listeners = list(self._listeners.values())
        return self._listing_ok and all(listener.connected for listener in listeners)

    @property
    def backlog(self) -> int:
        """Events received and not yet handed over (a burst queues up while the dispatcher is busy)."""
        return self._queue.qsize()

    def buckets(self) -> set[str]:
        """The buckets being listened to now."""
        with self._lock:
            return {name for name, item in self._listeners.items() if item.thread and item.thread.is_alive()}

    def start(self) -> None:
        if self._dispatcher is not None:
            raise RuntimeError("MinioEventSource.start() called twice")
        self._dispatcher = self._spawn(self._dispatch, "minio-events-dispatch")
        self._discovery = self._spawn(self._discover, "minio-events-discovery")

    def stop(self, timeout: float = 10.0) -> bool:
        """End every thread; events already received are still handed to the callbacks (one attempt each).
        True when all threads ended within `timeout`."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self._stopping.set()
        self._cut_listeners()
        if self._discovery is not None:
            self._discovery.join(left())
        self._cut_listeners()  # any that a last discovery pass started
        for thread in list(self._threads):
            if thread is not self._dispatcher and thread is not self._discovery:
                thread.join(left())
        if self._dispatcher is not None:
            self._queue.put(_STOP)
            self._dispatcher.join(left())
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("minio events: threads still running after stop(): %s", ", ".join(alive))
        return not alive

    def _cut_listeners(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            listener.cut()

    # ------------------------------------------------------------ threads

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        # Daemon threads only as a last resort: stop() cuts and joins them.
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _failed(self, what: str, exc: BaseException, again: bool) -> None:
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        with self._lock:
            self.reconnects += 1
        # A warning when a loop starts failing, not at every attempt: an outage would flood the log.
        (log.debug if again else log.warning)("minio events: %s (retrying with backoff)", self.last_error)

    def _discover(self) -> None:
        client = _client(self.settings, urllib3.PoolManager(**_http()))
        delay, failing = BACKOFF_FIRST, False
        while not self._stopping.is_set():
            try:
                names = self._source_buckets(client)
            except Exception as exc:  # noqa: BLE001 - any failure to list: MinIO away, retry
                if self._stopping.is_set():
                    break
                self._listing_ok = False
                self._failed("listing buckets", exc, again=failing)
                failing = True
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            if failing:
                log.info("minio events: listing buckets works again")
            self._listing_ok, delay, failing = True, BACKOFF_FIRST, False
            self._sync(names)
            self._stopping.wait(self.discovery_seconds)

    def _source_buckets(self, client: Minio) -> set[str]:
        if self.settings.bucket:  # single-bucket mode; a key may lack the right to list all buckets
            return {self.settings.bucket} if client.bucket_exists(self.settings.bucket) else set()
        return {item.name for item in client.list_buckets()}

    def _sync(self, names: set[str]) -> None:
        """Start listeners for buckets without a live one; stop those of buckets that are gone."""
        with self._lock:
            if self._stopping.is_set():
                return
            fresh = []
            for name in sorted(names):
                current = self._listeners.get(name)
                if current is not None and current.thread is not None and current.thread.is_alive():
                    continue
                self._listeners[name] = _Listener(name)
                fresh.append(self._listeners[name])
            gone = [self._listeners.pop(name) for name in sorted(set(self._listeners) - names)]
        for listener in gone:
            log.info("minio events: bucket %s is gone; its listener stops", listener.bucket)
            listener.cut()
        for listener in fresh:
            listener.thread = self._spawn(lambda item=listener: self._listen(item), f"minio-events:{listener.bucket}")

    def _listen(self, listener: _Listener) -> None:
        _current.listener = listener
        http = _StreamHTTP(lambda: self._stream_opened(listener))
        client = _client(self.settings, http)
        delay = BACKOFF_FIRST
        try:
            while not listener.stopping.is_set():
                opens = listener.opens
                try:
                    # EventIterable re-opens a stream MinIO closed cleanly; connection errors come out here.
                    with client.listen_bucket_notification(listener.bucket, prefix=self.prefix,
                                                           events=self.events) as stream:
                        for event in stream:
                            self._queue_records(listener.bucket, event)
                            self.charge()
                except Exception as exc:  # noqa: BLE001 - refused, reset, timeout, 5xx: retry
                    listener.connected = False
                    if listener.stopping.is_set():
                        break
                    if isinstance(exc, S3Error) and exc.code == "NoSuchBucket":
                        log.info("minio events: bucket %s no longer exists; its listener ends", listener.bucket)
                        break
                    if listener.opens > opens:  # it had worked: try again soon, and say so
                        delay = BACKOFF_FIRST
                    self._failed(f"listening to bucket {listener.bucket}", exc, again=listener.failing)
                    listener.failing = True
                    listener.stopping.wait(delay)
                    delay = min(delay * 2, BACKOFF_CAP)
        finally:
            listener.connected = False
            http.clear()

    def _stream_opened(self, listener: _Listener) -> None:
        listener.connected = True
        if listener.failing:
            log.info("minio events: listening to bucket %s again", listener.bucket)
            listener.failing = False
        # Every open follows a gap in which events may have been lost: before a first open, the
        # start-up reconcile may have run before MinIO registered this listener, or the first
        # attempt may have failed (MinIO restarting). A reconcile of one bucket is cheap; a gap is not.
        self._queue.put(("bucket", listener.bucket))
        listener.opens += 1

    def _queue_records(self, bucket: str, event: dict) -> None:
        for record in event.get("Records") or []:
            try:
                key = record["s3"]["object"]["key"]
                name = record["s3"]["bucket"].get("name") or bucket
            except (KeyError, TypeError, AttributeError):
                log.warning("minio events: a record without s3.object.key from bucket %s: skipped", bucket)
                continue
            self._queue.put(("object", name, key, str(record.get("eventName", ""))))
        self.last_event_at = time.time()

    def _dispatch(self) -> None:
        while True:
            items, stop = self._take()
            for item in items:
                self._deliver(item)
                self.charge()
            if stop:
                return

    def _take(self) -> tuple[list[tuple], bool]:
        """The next item, and with on_objects whatever else is queued, object events grouped by bucket.
        True when _STOP was met (what came before it is still delivered)."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        if self.on_objects is None:
            return [first], False
        taken, stop = [first], False
        while len(taken) < BATCH_DRAIN:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            taken.append(item)
        keys: dict[str, dict[str, None]] = {}  # bucket -> keys in arrival order, each once
        others = []
        for item in taken:
            if item[0] == "object":
                keys.setdefault(item[1], {})[item[2]] = None
            else:
                others.append(item)
        batches = []
        for bucket, ordered in keys.items():
            names = list(ordered)
            size = max(1, min(BATCH_KEYS, -(-len(names) // SPREAD)))
            batches += [("objects", bucket, names[i:i + size]) for i in range(0, len(names), size)]
        return others + batches, stop

    def _deliver(self, item: tuple) -> None:
        kind, *args = item
        callbacks: dict[str, Callable[..., None]] = {"object": self.on_object, "bucket": self.on_bucket}
        callback = self.on_objects if kind == "objects" else callbacks[kind]
        for attempt, delay in enumerate((0.0, *CALLBACK_RETRY_DELAYS)):
            if delay and self._stopping.wait(delay):  # stopping: one attempt only
                break
            try:
                callback(*args)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. Redis down while enqueueing: retry, never die
                log.warning("minio events: on_%s%r failed (attempt %d): %s: %s", kind, tuple(args), attempt + 1,
                            type(exc).__name__, exc)
        self.dropped += 1
        log.error("minio events: gave up on_%s%r; the next reconcile of bucket %s covers it", kind, tuple(args),
                  args[0])
