"""Redis: every key of RAGFlow's DB (1 by default) saved with DUMP + PTTL, restorable with RESTORE.

RAGFlow keeps its JWT secret (`ragflow:system:secret_key`), its task streams (`rag_flow_svr_queue`
with the consumer group `rag_flow_svr_task_broker`) and caches there. DUMP payloads are the server's
own RDB encoding of a value, so a stream comes back with its consumer groups and pending entries.

The artifact `redis_dump.rdb.gz` is gzipped JSON lines:

    {"format": 1, "kind": "...", "redis_version": "7.2.4", "db": 1, "keys": 3, "created_at": "..."}
    {"key": <base64>, "ttl_ms": 5000 | -1, "type": "stream", "dump": <base64>}
    ...

Values never reach a log; key names may (they are not secret).
"""
from __future__ import annotations

import base64
import fnmatch
import gzip
import itertools
import json
import logging
import shutil
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from core import clients
from core.atomic import atomic_file
from core.checks import CorruptArtifact, verify_artifacts
from core.component import ComponentResult, PermanentError
from core.config import RedisSettings, Settings
from core.manifest import Artifact, ComponentRecord, now
from core.points import Point

NAME = "redis"
ARTIFACT = "redis_dump.rdb.gz"
FORMAT = 1
KIND = "ragflow-backup redis dump"
SECRET_KEY = b"ragflow:system:secret_key"
SCAN_BATCH = 500
RECORD_FIELDS = {"key", "ttl_ms", "type", "dump"}
# One key's line at most (base64 of its DUMP payload): RAGFlow's keys are small; a longer line is refused
# rather than read whole (restore and verify read the dump, untrusted, as a stream).
MAX_LINE = 64 << 20


@contextmanager
def classified(settings: RedisSettings) -> Iterator[None]:
    """Turn what retrying cannot fix into PermanentError; connection refused / timeouts pass through."""

    where = f"Redis at {settings.host}:{settings.port} (db {settings.db})"
    try:
        yield
    except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise PermanentError(
            f"{where} refused our credentials ({exc}): set redis.password in the config, or REDIS_PASSWORD "
            f"in RAGFlow's docker/.env"
        ) from None
    except redis.exceptions.NoPermissionError as exc:
        raise PermanentError(f"{where}: the user lacks a permission we need ({exc}); allow SCAN, TYPE, PTTL, "
                             f"DUMP and RESTORE for it") from None
    except redis.ResponseError as exc:
        text = str(exc)
        if "WRONGPASS" in text or "NOAUTH" in text:
            raise PermanentError(f"{where} refused our credentials: set redis.password in the config") from None
        if "DB index is out of range" in text:
            raise PermanentError(f"{where}: no such database on this server; fix redis.db in the config") from None
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Transient (retried), but the message must say which server is away, and that it may be hung.
        raise type(exc)(f"cannot reach {where}: {exc}") from None


def redis_client(settings: RedisSettings):
    return clients.redis_client(settings)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class Scanned:
    types: Counter[str] = field(default_factory=Counter)
    streams: list[str] = field(default_factory=list)
    has_secret_key: bool = False

    @property
    def total(self) -> int:
        return sum(self.types.values())


def _scan(client, spool: IO[bytes]) -> Scanned:
    """Write one JSON line per key into `spool`. Keys gone between SCAN and DUMP (expired caches) are skipped."""
    seen = Scanned()
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=SCAN_BATCH)
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
                pipe.pttl(key)
                pipe.dump(key)
            replies = pipe.execute()
            for index, key in enumerate(keys):
                kind, ttl, payload = replies[3 * index: 3 * index + 3]
                if payload is None or ttl == -2:
                    continue
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                # PTTL 0 means "expires now"; saving it as 0 would restore the key without expiry.
                ttl_ms = max(int(ttl), 1) if ttl >= 0 else -1
                line = {"key": _b64(key), "ttl_ms": ttl_ms, "type": kind, "dump": _b64(payload)}
                spool.write(json.dumps(line).encode() + b"\n")
                seen.types[kind] += 1
                if kind == "stream":
                    seen.streams.append(key.decode(errors="backslashreplace"))
                seen.has_secret_key |= key == SECRET_KEY
        if cursor == 0:
            seen.streams.sort()
            return seen


def _lines(stream: IO[bytes], name: str) -> Iterator[tuple[int, bytes]]:
    """(number, line) of a dump read as a stream, refusing a line longer than MAX_LINE before it is kept
    whole: the file is untrusted (a tampered or corrupt dump can claim anything) and memory stays bounded."""
    for number in itertools.count(1):
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            raise CorruptArtifact(f"{name}: line {number} is longer than {MAX_LINE >> 20} MiB; no key of ours is "
                                  "that big: the dump is corrupt or was tampered with")
        yield number, line


def read_dump(path: Path) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The header and an iterator over the key records of a dump file; raise CorruptArtifact if unsound."""
    stream = gzip.open(path, "rb")
    lines = _lines(stream, path.name)
    try:
        _, first = next(lines, (1, b"null"))
        header = json.loads(first)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        stream.close()
        raise CorruptArtifact(f"{path.name}: unreadable header ({exc})") from None
    except CorruptArtifact:
        stream.close()
        raise
    if not isinstance(header, dict) or header.get("kind") != KIND or header.get("format") != FORMAT:
        stream.close()
        raise CorruptArtifact(f"{path.name}: not a redis dump of format {FORMAT} (header {str(header)[:80]!r})")

    def records() -> Iterator[dict[str, Any]]:
        with stream:
            try:
                for number, line in lines:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        raise CorruptArtifact(f"{path.name}: line {number} is not JSON") from None
                    if not isinstance(record, dict) or set(record) != RECORD_FIELDS or not _sound(record):
                        raise CorruptArtifact(f"{path.name}: line {number} is not a key record")
                    yield record
            except (OSError, EOFError, zlib.error) as exc:
                raise CorruptArtifact(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from None

    return header, records()


def _sound(record: dict[str, Any]) -> bool:
    return (isinstance(record["key"], str) and isinstance(record["dump"], str) and isinstance(record["type"], str)
            and isinstance(record["ttl_ms"], int) and not isinstance(record["ttl_ms"], bool))


def _check(expected_keys: int):
    def check(path: Path) -> None:
        header, records = read_dump(path)
        found = sum(1 for _ in records)
        if header.get("keys") != expected_keys or found != expected_keys:
            raise CorruptArtifact(f"{path.name}: {found} key lines, header says {header.get('keys')}, "
                                  f"we wrote {expected_keys}")
    return check


def backup(settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
    config = settings.redis
    client = redis_client(config)
    final = point.path(ARTIFACT)
    with classified(config):
        version = client.info("server")["redis_version"]
        # Key lines go to an unlinked, private temp file first so that the header can carry the count.
        with tempfile.TemporaryFile(dir=point.folder) as spool:
            seen = _scan(client, spool)
            header = {"format": FORMAT, "kind": KIND, "redis_version": version, "db": config.db,
                      "keys": seen.total, "created_at": now().isoformat()}
            spool.seek(0)
            with atomic_file(final, check=_check(seen.total)) as out:
                packed = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)  # type: ignore[arg-type]
                with packed:
                    packed.write(json.dumps(header).encode() + b"\n")
                    shutil.copyfileobj(spool, packed, 1 << 20)
    written = out.result  # type: ignore[attr-defined]
    log.info("redis db %d: %d keys (%s) saved to %s", config.db, seen.total,
             ", ".join(f"{n} {kind}" for kind, n in sorted(seen.types.items())) or "empty", ARTIFACT)
    if not seen.has_secret_key:
        log.warning("redis db %d holds no %s: is this RAGFlow's DB?", config.db, SECRET_KEY.decode())
    counts = {"keys": seen.total, **{f"type:{kind}": n for kind, n in sorted(seen.types.items())}}
    return ComponentResult(
        artifacts=[Artifact(name=ARTIFACT, bytes=written.bytes, sha256=written.sha256, kind="gzip")],
        counts=counts,
        details={"redis_version": version, "db": config.db, "has_secret_key": seen.has_secret_key,
                 "streams": seen.streams},
    )


def verify(settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
    problems = verify_artifacts(point, record)
    if problems:
        return problems
    path = point.folder / ARTIFACT
    expected = record.counts.get("keys")
    try:
        header, records = read_dump(path)
        found = 0
        for item in records:
            base64.b64decode(item["key"], validate=True)
            base64.b64decode(item["dump"], validate=True)
            found += 1
    except (CorruptArtifact, ValueError, TypeError) as exc:
        return [str(exc)]
    if header.get("keys") != found:
        problems.append(f"{ARTIFACT}: {found} keys, its header says {header.get('keys')}")
    if expected != found:
        problems.append(f"{ARTIFACT}: {found} keys, the manifest says {expected}")
    return problems


def restore_keys(settings: Settings, path: Path, db: int | None = None, replace: bool = False,
                 patterns: list[str] | None = None) -> int:
    """RESTORE the keys of a dump into `db` (default: settings.redis.db) with their saved TTL; return how many.

    `patterns` (Redis-style globs such as "ragflow:system:*") select keys. Without `replace`, keys that
    already exist make the restore refuse before anything is written.
    """
    config = settings.redis if db is None else settings.redis.model_copy(update={"db": db})
    client = redis_client(config)
    wanted = [p.encode() for p in patterns] if patterns else None

    def selected() -> Iterator[tuple[bytes, dict[str, Any]]]:
        _, records = read_dump(path)
        for item in records:
            key = base64.b64decode(item["key"])
            if wanted is None or any(fnmatch.fnmatchcase(key, p) for p in wanted):
                yield key, item

    check_readable(path)  # the whole dump, before a key is written: never half a restore from a bad file
    with classified(config):
        if not replace:
            existing = _existing(client, (key for key, _ in selected()))
            if existing:
                sample = ", ".join(k.decode(errors="backslashreplace") for k in existing[:5])
                raise PermanentError(f"{len(existing)} keys of {path.name} already exist in Redis db {config.db} "
                                     f"(e.g. {sample}); restore with replace to overwrite them")
        restored = 0
        batch: list[tuple[bytes, dict[str, Any]]] = []
        for pair in selected():
            batch.append(pair)
            if len(batch) >= SCAN_BATCH:
                restored += _restore_batch(client, batch, replace, path)
                batch = []
        restored += _restore_batch(client, batch, replace, path)
    return restored


def check_readable(path: Path) -> None:
    """Read the whole dump as a stream (bounded memory); PermanentError naming the file and line if unsound."""
    try:
        header, records = read_dump(path)
        found = 0
        for found, item in enumerate(records, start=1):  # noqa: B007 - the count is read after the loop
            base64.b64decode(item["key"], validate=True)
            base64.b64decode(item["dump"], validate=True)
    except CorruptArtifact as exc:
        raise PermanentError(f"{exc}; nothing was restored") from None
    except ValueError as exc:
        raise PermanentError(f"{path.name}: key record {found} (line {found + 1}) is not base64 ({exc}); nothing was restored") \
            from None
    if header.get("keys") != found:
        raise PermanentError(f"{path.name}: {found} key lines, its header says {header.get('keys')}; the dump is "
                             "incomplete or was tampered with, nothing was restored")


def _existing(client, keys: Iterator[bytes]) -> list[bytes]:
    """The keys among `keys` that the server already holds (EXISTS, pipelined in batches)."""
    found: list[bytes] = []
    while batch := list(itertools.islice(keys, SCAN_BATCH)):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.exists(key)
        found += [key for key, there in zip(batch, pipe.execute()) if there]
    return found


def _restore_batch(client, batch: list[tuple[bytes, dict[str, Any]]], replace: bool, path: Path) -> int:

    if not batch:
        return 0
    pipe = client.pipeline(transaction=False)
    for key, item in batch:
        ttl = item["ttl_ms"] if item["ttl_ms"] > 0 else 0  # 0: no expiry
        pipe.restore(key, ttl, base64.b64decode(item["dump"]), replace=replace)
    try:
        pipe.execute()
    except redis.ResponseError as exc:
        if "payload version" in str(exc) or "checksum" in str(exc):
            raise PermanentError(f"{path.name}: the server refused a DUMP payload ({exc}); restore into a Redis "
                                 f"of the same or a newer version than the one backed up") from None
        raise
    return len(batch)
