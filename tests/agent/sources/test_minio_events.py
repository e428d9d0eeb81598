"""MinioEventSource against real MinIO servers: the test bed's, and a private one for restarts."""
from __future__ import annotations

import collections
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from io import BytesIO
from pathlib import Path

import pytest
from minio import Minio

from agent.sources.minio_events import BATCH_KEYS, SPREAD, MinioEventSource
from core.config import MinioSettings
from testbed import settings as testbed_settings

NUDGE = "~nudge/"
KEYS = ["plain.txt", "a b+c ü/ä%20x.txt", "dir/x&y=z?.txt"]


def nudge(client: Minio, bucket: str, prefix: str = "") -> None:
    """Push buffered notifications out to the listeners.

    The test bed's MinIO is built from master after minio/minio#21651, whose trackingResponseWriter hides
    http.Flusher: a listen stream (headers included) reaches its client only once about 4 KiB are
    buffered. Two objects with 1.8 KB of metadata each push everything queued before them through. With
    a MinIO that flushes (any release RAGFlow ships) these are just two extra events, filtered out below.
    """
    for n in range(2):
        client.put_object(bucket, f"{prefix}{NUDGE}{n}", BytesIO(b""), 0, metadata={"pad": "x" * 1800})


def until(condition, what: str, poke=None, timeout: float = 45.0) -> None:
    """Poll `condition` (calling `poke` between polls) until it holds; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        if poke is not None:
            poke()
        time.sleep(0.25)


class Recorder:
    """Collects callbacks from the dispatcher thread; nudge objects are left out."""

    def __init__(self, fail_object=None):
        self.lock = threading.Lock()
        self.objects: list[tuple[str, str, str]] = []
        self.announced: list[str] = []
        self.fail_object = fail_object  # (bucket, key, event) -> raise or not

    def on_object(self, bucket: str, key: str, event: str) -> None:
        if self.fail_object is not None:
            self.fail_object(bucket, key, event)
        if NUDGE not in key:
            with self.lock:
                self.objects.append((bucket, key, event))

    def on_bucket(self, bucket: str) -> None:
        with self.lock:
            self.announced.append(bucket)

    def keys(self, bucket: str) -> list[tuple[str, str]]:
        """(key, 'created'|'removed') in arrival order."""
        with self.lock:
            return [(key, "created" if event.startswith("s3:ObjectCreated:") else "removed")
                    for name, key, event in self.objects if name == bucket]

    def has(self, bucket: str, key: str) -> bool:
        return any(k == key for k, _ in self.keys(bucket))

    def announcements(self, bucket: str) -> int:
        with self.lock:
            return self.announced.count(bucket)


@pytest.fixture
def sources():
    """Build sources with make(...); every one is stopped at the end, whatever happened."""
    made: list[MinioEventSource] = []

    def make(settings: MinioSettings, recorder: Recorder, **kwargs) -> MinioEventSource:
        source = MinioEventSource(settings, recorder.on_object, recorder.on_bucket, **kwargs)
        made.append(source)
        source.start()
        return source

    yield make
    for source in made:
        source.stop(timeout=10)


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("minio-events")]


def test_a_put_an_overwrite_and_a_delete_arrive_with_their_keys_as_stored(testbed_env, minio_client, bucket, sources):
    recorder = Recorder()
    settings = testbed_settings.minio(testbed_env).model_copy(update={"bucket": bucket})
    source = sources(settings, recorder)
    until(lambda: source.connected, "the listener's stream to open", lambda: nudge(minio_client, bucket))

    for key in KEYS:
        minio_client.put_object(bucket, key, BytesIO(b"one"), 3)
        minio_client.put_object(bucket, key, BytesIO(b"two!"), 4)
        minio_client.remove_object(bucket, key)
    expected = [(key, kind) for key in KEYS for kind in ("created", "created", "removed")]
    until(lambda: len(recorder.keys(bucket)) >= len(expected), "9 object events", lambda: nudge(minio_client, bucket))

    assert recorder.keys(bucket) == expected
    assert source.last_event_at is not None
    # Once attached, a bucket is announced: events before the registration may be lost, reconcile it.
    assert recorder.announcements(bucket) == 1


def test_the_listener_and_the_dispatcher_each_charge_their_cpu_after_every_event(testbed_env, minio_client, bucket,
                                                                                  sources):
    recorder, charged, lock = Recorder(), collections.Counter(), threading.Lock()

    def charge() -> None:  # what the agent hands in: the mirror budget's settle(wait=False)
        with lock:
            charged[threading.current_thread().name.split(":")[0]] += 1

    settings = testbed_settings.minio(testbed_env).model_copy(update={"bucket": bucket})
    source = sources(settings, recorder, charge=charge)
    until(lambda: source.connected, "the listener's stream to open", lambda: nudge(minio_client, bucket))
    for key in KEYS:
        minio_client.put_object(bucket, key, BytesIO(b"one"), 3)
    until(lambda: len(recorder.keys(bucket)) >= len(KEYS), "3 object events", lambda: nudge(minio_client, bucket))

    with lock:  # every event (nudges included) is charged once by each thread that handled it
        assert charged["minio-events"] >= len(KEYS) and charged["minio-events-dispatch"] >= len(KEYS)


def test_object_events_that_queue_up_are_handed_over_in_batches_of_their_bucket_each_key_once_spread_over_workers(
        testbed_env, minio_client, bucket, sources):
    recorder, batches, first, lock = Recorder(), [], threading.Event(), threading.Lock()

    def on_objects(name: str, keys: list[str]) -> None:
        first.wait(60)  # the first call holds the dispatcher while the burst queues up
        with lock:
            batches.append((name, [key for key in keys if NUDGE not in key]))

    settings = testbed_settings.minio(testbed_env).model_copy(update={"bucket": bucket})
    source = sources(settings, recorder, on_objects=on_objects)
    until(lambda: source.connected, "the listener's stream to open", lambda: nudge(minio_client, bucket))
    keys = [f"burst/{i:03d}" for i in range(SPREAD * BATCH_KEYS)]  # SPREAD full batches
    again = keys[1:11]
    for key in keys + again:  # two events for some keys
        minio_client.put_object(bucket, key, BytesIO(b"x"), 1)
    until(lambda: source.backlog >= len(keys) + len(again) - 1, "the burst to queue up behind the held call")
    first.set()

    def received() -> list[str]:
        with lock:
            return [key for _, names in batches for key in names]

    until(lambda: set(keys) <= set(received()), "every key of the burst")
    with lock:
        sizes = [len(names) for _, names in batches]
        assert {name for name, _ in batches} == {bucket}
    assert max(sizes) == BATCH_KEYS and all(size <= BATCH_KEYS for size in sizes)
    assert len(sizes) - 1 >= SPREAD  # behind the held call, spread over at least SPREAD calls
    assert list(dict.fromkeys(key for key in received() if key in keys)) == keys  # in arrival order
    with lock:
        assert all(len(names) == len(set(names)) for _, names in batches)  # a key at most once in a call
        later = [key for _, names in batches[1:] for key in names]
    assert len(later) < len(keys) + len(again)  # keys with two events queued: mostly handed over once
    assert recorder.keys(bucket) == []  # on_object is not called when on_objects is given


def test_only_keys_under_prefix_path_arrive_in_single_bucket_mode(testbed_env, minio_client, bucket, sources):
    recorder = Recorder()
    settings = testbed_settings.minio(testbed_env).model_copy(update={"bucket": bucket, "prefix_path": "ragflow"})
    source = sources(settings, recorder)
    assert source.prefix == "ragflow/"
    poke = lambda: nudge(minio_client, bucket, prefix="ragflow/")  # noqa: E731
    until(lambda: source.connected, "the listener's stream to open", poke)

    for key in ("ragflow-other/kb/a.txt", "elsewhere/b.txt", "ragflow/kb/c.txt"):
        minio_client.put_object(bucket, key, BytesIO(b"x"), 1)
    until(lambda: recorder.has(bucket, "ragflow/kb/c.txt"), "the event under the prefix", poke)

    assert recorder.keys(bucket) == [("ragflow/kb/c.txt", "created")]
    assert source.buckets() == {bucket}


@pytest.fixture
def later_bucket(minio_client):
    """The name of a bucket the test creates itself; removed afterwards."""
    name = f"test-later-{uuid.uuid4().hex[:10]}"
    yield name
    if minio_client.bucket_exists(name):
        for item in minio_client.list_objects(name, recursive=True, include_version=True):
            minio_client.remove_object(name, item.object_name, version_id=item.version_id)
        minio_client.remove_bucket(name)


def test_a_bucket_created_after_start_is_announced_and_listened_to(testbed_env, minio_client, bucket, later_bucket,
                                                                   sources):
    recorder = Recorder()
    source = sources(testbed_settings.minio(testbed_env), recorder, discovery_seconds=0.5)
    until(lambda: bucket in source.buckets(), "the first bucket listing")

    minio_client.make_bucket(later_bucket)
    until(lambda: later_bucket in source.buckets(), "discovery of the new bucket")
    # Announced once its listener is attached, so the reconcile it triggers leaves no gap.
    until(lambda: recorder.announcements(later_bucket) >= 1, "on_bucket for the new bucket",
          lambda: nudge(minio_client, later_bucket))
    minio_client.put_object(later_bucket, "after.txt", BytesIO(b"x"), 1)
    until(lambda: recorder.has(later_bucket, "after.txt"), "the new bucket's event",
          lambda: nudge(minio_client, later_bucket))

    assert recorder.announcements(bucket) == 1, "a start-up bucket is announced once, on its first attach"
    for item in minio_client.list_objects(later_bucket, recursive=True):
        minio_client.remove_object(later_bucket, item.object_name)
    minio_client.remove_bucket(later_bucket)
    until(lambda: later_bucket not in source.buckets(), "the removed bucket's listener to stop")
    assert bucket in source.buckets()


def test_a_failing_callback_is_retried_then_given_up_and_never_stops_later_events(testbed_env, minio_client, bucket,
                                                                                  sources):
    failures: dict[str, int] = {}

    def fail(bucket_name: str, key: str, event: str) -> None:
        if key in ("flaky.txt", "poison.txt"):
            failures[key] = failures.get(key, 0) + 1
            if key == "poison.txt" or failures[key] == 1:
                raise ConnectionError("Redis is down (test)")

    recorder = Recorder(fail_object=fail)
    settings = testbed_settings.minio(testbed_env).model_copy(update={"bucket": bucket})
    source = sources(settings, recorder)
    until(lambda: source.connected, "the listener's stream to open", lambda: nudge(minio_client, bucket))

    for key in ("flaky.txt", "poison.txt", "after.txt"):
        minio_client.put_object(bucket, key, BytesIO(b"x"), 1)
    until(lambda: recorder.has(bucket, "after.txt"), "the event after the failing ones",
          lambda: nudge(minio_client, bucket))

    assert recorder.keys(bucket) == [("flaky.txt", "created"), ("after.txt", "created")]
    assert failures == {"flaky.txt": 2, "poison.txt": 4}  # one retry succeeded; three retries, then dropped
    assert source.dropped == 1


def test_stop_returns_promptly_and_leaves_no_thread(testbed_env, minio_client, bucket):
    recorder = Recorder()
    source = MinioEventSource(testbed_settings.minio(testbed_env), recorder.on_object, recorder.on_bucket,
                              discovery_seconds=0.5)
    source.start()
    try:
        until(lambda: bucket in source.buckets(), "the listeners to start")
        # Listeners now block in reads (still awaiting headers on the test bed's MinIO): stop must cut them.
        started = time.monotonic()
        assert source.stop(timeout=10), f"threads left: {[t.name for t in source_threads()]}"
        print(f"stop() of {len(source._threads)} threads took {time.monotonic() - started:.2f} s")
    finally:
        source.stop(timeout=10)
    assert not [t for t in source._threads if t.is_alive()]
    assert source.buckets() == set()


# ---------------------------------------------------------------- a private MinIO we may kill


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateMinio:
    """A MinIO server of this test alone (never the shared test bed's), on a fixed port and data dir."""

    def __init__(self, binary: str, data: Path, log: Path):
        self.binary, self.data, self.log = binary, data, log
        self.port = free_port()
        self.user, self.password = "rbtest", uuid.uuid4().hex
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.data.parent), "MINIO_ROOT_USER": self.user,
               "MINIO_ROOT_PASSWORD": self.password, "MINIO_BROWSER": "off"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.binary, "server", str(self.data), "--address", self.endpoint,
                                             "--quiet"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"private MinIO exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/minio/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"private MinIO not ready within 60 s: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no goodbye to connected clients
            self.process.wait(30)

    def settings(self) -> MinioSettings:
        return MinioSettings(endpoint=self.endpoint, access_key=self.user, secret_key=self.password)

    def client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.user, secret_key=self.password, secure=False)


@pytest.fixture
def private_minio(testbed_env, tmp_path):
    data = tmp_path / "minio-data"
    data.mkdir()
    server = PrivateMinio(testbed_env["MINIO_BIN"], data, tmp_path / "minio.log")
    try:
        server.start()
        yield server
    finally:
        server.kill()


def test_a_minio_restart_is_survived_and_the_bucket_is_announced_again(private_minio, sources):
    client = private_minio.client()
    client.make_bucket("restart")
    recorder = Recorder()
    source = sources(private_minio.settings(), recorder, discovery_seconds=0.5)
    poke = lambda: nudge(client, "restart")  # noqa: E731
    until(lambda: source.connected, "the listener's stream to open", poke)
    client.put_object("restart", "before.txt", BytesIO(b"x"), 1)
    until(lambda: recorder.has("restart", "before.txt"), "the event before the restart", poke)
    assert recorder.announcements("restart") == 1
    reconnects = source.reconnects

    private_minio.kill()
    until(lambda: not source.connected and source.reconnects > reconnects, "the source to notice MinIO is gone")
    assert source.last_error

    private_minio.start()  # same port, same data
    # Events of the outage are lost: the bucket is announced again (for a reconcile) once re-attached.
    until(lambda: recorder.announcements("restart") >= 2, "on_bucket after the reconnect", poke)
    client.put_object("restart", "after.txt", BytesIO(b"x"), 1)
    until(lambda: recorder.has("restart", "after.txt"), "the event after the restart", poke)
    assert source.connected
    assert source.stop(timeout=10)


def test_stop_is_prompt_while_minio_is_down(private_minio):
    private_minio.client().make_bucket("down")
    recorder = Recorder()
    source = MinioEventSource(private_minio.settings(), recorder.on_object, recorder.on_bucket, discovery_seconds=0.5)
    source.start()
    try:
        until(lambda: "down" in source.buckets(), "the listener to start")
        private_minio.kill()
        until(lambda: not source.connected and source.reconnects >= 3, "retries against the dead server")
        assert source.stop(timeout=10), f"threads left: {[t.name for t in source_threads()]}"
    finally:
        source.stop(timeout=10)
    assert source.buckets() == set()
