"""Queue inspection for our Dramatiq Redis broker: depth, delays, dead letters, and putting them right.

This reads dramatiq's own key layout (dramatiq/brokers/redis/dispatch.lua), under `<ns>:`:
  <queue>             list of ready message ids        <queue>.msgs     hash id -> message (ready + in flight)
  <queue>.DQ          list of delayed ids              <queue>.DQ.msgs  hash id -> delayed message
  <queue>.XQ          sorted set of dead ids by time   <queue>.XQ.msgs  hash id -> dead message
  __acks__.<worker>.<queue>  set of ids a worker fetched and has not acked yet (in flight)
  __heartbeats__      sorted set of broker ids by their last command (ms)
Ids are dramatiq's per-enqueue `redis_message_id`, not the message_id (which retries keep).
Nothing here imports the actors: queues are found from the keys, plus the names we always show.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from uuid import uuid4

import redis
from dramatiq import Message, Middleware
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name

# Our actors' queues (actors/tasks.py), shown even while empty.
KNOWN_QUEUES = ("backup", "maintenance", "mirror", "events", "offsite")
DEFAULT_HEARTBEAT_TIMEOUT_MS = 60_000
# How many messages at the head of a queue are read to find the oldest one (requeues go to the tail).
AGE_SAMPLE = 1000

_QUEUE_SUFFIXES = (".DQ.msgs", ".XQ.msgs", ".msgs", ".XQ", ".DQ", ".acks")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

# Atomic per message: only a dead letter that is still there is moved, so two operators retrying
# (or one retrying while another purges) never run a message twice.
_RETRY_SCRIPT = """
local moved = 0
for i = 1, #ARGV, 3 do
    if redis.call('zrem', KEYS[1], ARGV[i]) == 1 then
        redis.call('hdel', KEYS[2], ARGV[i])
        redis.call('hset', KEYS[4], ARGV[i + 1], ARGV[i + 2])
        redis.call('rpush', KEYS[3], ARGV[i + 1])
        moved = moved + 1
    end
end
return moved
"""
_REPLACE_IF_PRESENT = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then
    return redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int  # waiting in the list for a worker
    delayed: int  # waiting for their eta (retry backoff or send delay), held by a worker or not
    in_flight: int  # fetched by a worker, not acked yet
    stalled: int  # of in_flight: held by workers that stopped heart-beating (requeued by maintenance)
    dead: int  # dead letters
    oldest_age_seconds: float | None  # since the oldest ready or delayed message was created
    workers: int  # broker processes heard from within the heartbeat timeout (namespace-wide)


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the key in the dead-letter queue (dramatiq's redis_message_id)
    message_id: str
    queue: str
    actor: str
    args: str  # a short rendering of args and kwargs
    failed_at: datetime
    enqueued_at: datetime | None
    retries: int  # failed attempts counted in the body: all but the last, or all with KeepLastError
    error: str | None  # the traceback kept in the message options, if any

    @property
    def error_line(self) -> str:
        """The last line of the traceback: usually `SomeError: what went wrong`."""
        lines = [line for line in (self.error or "").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


# Functions take a Redis client and a namespace, or a RedisBroker (its client and namespace).
Client = redis.Redis | RedisBroker


def _resolve(client: Client, namespace: str | None) -> tuple[redis.Redis, str]:
    if isinstance(client, RedisBroker):
        return client.client, namespace or client.namespace
    if not namespace:
        raise ValueError("a namespace is needed with a plain Redis client")
    return client, namespace


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now_ms() -> int:
    return int(time.time() * 1000)


def queue_names(client: Client, namespace: str | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Every queue with a key under the namespace, plus `extra`, sorted."""
    client, namespace = _resolve(client, namespace)
    prefix = f"{namespace}:"
    names = set(extra)
    for raw in client.scan_iter(match=_GLOB_SPECIAL.sub(r"\\\1", prefix) + "*", count=1000):
        key = _text(raw)[len(prefix):]
        if key.startswith("__acks__."):
            # __acks__.<worker uuid>.<queue>: uuids have no dots, queue names may.
            key = key[len("__acks__."):].partition(".")[2]
        elif key.startswith("__"):
            continue
        else:
            # Only dramatiq's suffixed keys name a queue (a ready list never exists without its
            # .msgs hash), so other keys someone keeps under the namespace are not taken for queues.
            suffix = next((s for s in _QUEUE_SUFFIXES if key.endswith(s)), None)
            key = key[: -len(suffix)] if suffix else ""
        for suffix in (".DQ", ".XQ"):
            if key.endswith(suffix):
                key = key[: -len(suffix)]
        if key:
            names.add(key)
    return sorted(names)


def live_workers(client: Client, namespace: str | None = None,
                 heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS) -> list[str]:
    """Broker ids heard from within the timeout. Every broker command heart-beats, so a process
    that only enqueued shows up here too until the timeout passes."""
    client, namespace = _resolve(client, namespace)
    members = client.zrangebyscore(f"{namespace}:__heartbeats__", _now_ms() - heartbeat_timeout_ms, "+inf")
    return [_text(member) for member in members]


def _decode(data: bytes | None) -> Message | None:
    if data is None:
        return None
    try:
        return Message.decode(data)
    except Exception:  # noqa: BLE001 - a foreign or corrupt entry must not break inspection
        return None


def _oldest_timestamp(client: redis.Redis, ns: str, queue: str, sample: int) -> int | None:
    stamps: list[int] = []
    ready_ids = client.lrange(f"{ns}:{queue}", 0, sample - 1)
    if ready_ids:
        for data in client.hmget(f"{ns}:{queue}.msgs", ready_ids):
            if (message := _decode(data)) is not None:
                stamps.append(message.message_timestamp)
    for count, (_, data) in enumerate(client.hscan_iter(f"{ns}:{queue}.DQ.msgs", count=sample)):
        if count >= sample:
            break
        if (message := _decode(data)) is not None:
            stamps.append(message.message_timestamp)
    return min(stamps) if stamps else None


def inspect(client: Client, namespace: str | None = None, queues: Iterable[str] = (),
            heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS, sample: int = AGE_SAMPLE) -> list[QueueStats]:
    """Numbers for every queue found under the namespace and every name in `queues`."""
    client, ns = _resolve(client, namespace)
    names = queue_names(client, ns, queues)
    live = set(live_workers(client, ns, heartbeat_timeout_ms))
    # One scan for every worker's ack sets: key -> (worker, queue).
    acks_prefix = f"{ns}:__acks__."
    held: dict[str, list[tuple[str, str]]] = {}
    for raw in client.scan_iter(match=_GLOB_SPECIAL.sub(r"\\\1", acks_prefix) + "*", count=1000):
        key = _text(raw)
        worker, _, queue = key[len(acks_prefix):].partition(".")
        held.setdefault(queue, []).append((worker, key))
    now = _now_ms()
    stats = []
    for queue in names:
        pipe = client.pipeline(transaction=False)
        pipe.llen(f"{ns}:{queue}")
        pipe.hlen(f"{ns}:{queue}.DQ.msgs")
        pipe.zcard(f"{ns}:{queue}.XQ")
        for _, key in held.get(queue, []):
            pipe.scard(key)
        ready, delayed, dead, *held_counts = pipe.execute()
        in_flight = sum(held_counts)
        stalled = sum(n for (worker, _), n in zip(held.get(queue, []), held_counts) if worker not in live)
        oldest = _oldest_timestamp(client, ns, queue, sample)
        stats.append(QueueStats(
            queue=queue, ready=ready, delayed=delayed, in_flight=in_flight, stalled=stalled, dead=dead,
            oldest_age_seconds=None if oldest is None else max(now - oldest, 0) / 1000, workers=len(live),
        ))
    return stats


def _summary(args: Sequence[Any], kwargs: dict[str, Any], width: int = 120) -> str:
    parts = [repr(arg) for arg in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(ms: float | int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)


def dead_letters(client: Client, namespace: str | None, queue: str, limit: int | None = 50) -> list[DeadLetter]:
    """The queue's dead letters, most recent failure first."""
    client, ns = _resolve(client, namespace)
    if limit is not None and limit <= 0:
        return []
    end = -1 if limit is None else limit - 1
    entries = client.zrevrange(f"{ns}:{queue}.XQ", 0, end, withscores=True)
    if not entries:
        return []
    datas = client.hmget(f"{ns}:{queue}.XQ.msgs", [member for member, _ in entries])
    letters = []
    for (member, score), data in zip(entries, datas):
        message = _decode(data)
        options = message.options if message else {}
        letters.append(DeadLetter(
            id=_text(member),
            message_id=message.message_id if message else "",
            queue=queue,
            actor=message.actor_name if message else "(undecodable message)",
            args=_summary(message.args, message.kwargs) if message else "",
            failed_at=_when(score),  # type: ignore[arg-type]
            enqueued_at=_when(message.message_timestamp) if message else None,
            retries=int(options.get("retries", 0)),
            error=options.get("traceback"),
        ))
    return letters


def _select(client: redis.Redis, ns: str, queue: str, ids: Sequence[str] | Literal["all"]) -> list[str]:
    """Dead-letter keys for `ids`, which may name keys or dramatiq message ids; 'all' = every one."""
    if ids == "all":
        return [_text(m) for m in client.zrange(f"{ns}:{queue}.XQ", 0, -1)]
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    pipe = client.pipeline(transaction=False)
    for one in wanted:
        pipe.zscore(f"{ns}:{queue}.XQ", one)
    chosen = [one for one, score in zip(wanted, pipe.execute()) if score is not None]
    rest = set(wanted) - set(chosen)
    if rest:  # maybe dramatiq message ids (what the logs show): match them against the bodies
        for member, data in client.hscan_iter(f"{ns}:{queue}.XQ.msgs", count=1000):
            message = _decode(data)
            if message is not None and message.message_id in rest and _text(member) not in chosen:
                chosen.append(_text(member))
    return chosen


def retry_dead(client: Client, namespace: str | None, queue: str, ids: Sequence[str] | Literal["all"]) -> int:
    """Move dead letters back to the ready queue, with a fresh set of retries; returns how many moved.

    Each goes back the way dramatiq enqueues (body in `<queue>.msgs`, a new id pushed on `<queue>`),
    created now, so age limits and the oldest-age figure count from the retry.
    """
    client, ns = _resolve(client, namespace)
    chosen = _select(client, ns, queue, ids)
    if not chosen:
        return 0
    script = client.register_script(_RETRY_SCRIPT)
    moved = 0
    for start in range(0, len(chosen), 200):
        batch = chosen[start:start + 200]
        argv: list[str | bytes] = []
        for member, data in zip(batch, client.hmget(f"{ns}:{queue}.XQ.msgs", batch)):
            message = _decode(data)
            if message is None:
                continue  # left where it is: we cannot tell a worker what it is
            new_id = str(uuid4())
            options = {k: v for k, v in message.options.items()
                       if k not in ("retries", "traceback", "requeue_timestamp", "eta")}
            options["redis_message_id"] = new_id
            fresh = Message(queue_name=q_name(message.queue_name), actor_name=message.actor_name, args=message.args,
                            kwargs=message.kwargs, options=options, message_id=message.message_id,
                            message_timestamp=_now_ms())
            argv += [member, new_id, fresh.encode()]
        if argv:
            moved += int(script(keys=[f"{ns}:{queue}.XQ", f"{ns}:{queue}.XQ.msgs", f"{ns}:{queue}",
                                      f"{ns}:{queue}.msgs"], args=argv))
    return moved


def purge_dead(client: Client, namespace: str | None, queue: str, ids: Sequence[str] | Literal["all"]) -> int:
    """Delete dead letters for good; returns how many were deleted."""
    client, ns = _resolve(client, namespace)
    chosen = _select(client, ns, queue, ids)
    removed = 0
    for start in range(0, len(chosen), 500):
        batch = chosen[start:start + 500]
        pipe = client.pipeline(transaction=True)
        pipe.zrem(f"{ns}:{queue}.XQ", *batch)
        pipe.hdel(f"{ns}:{queue}.XQ.msgs", *batch)
        removed += pipe.execute()[0]
    return removed


class KeepLastError(Middleware):
    """Keep the final attempt's traceback and retry count in the dead letter.

    Dramatiq dead-letters the body as it was enqueued, so the error of the last attempt is lost
    (an actor with max_retries=0 keeps none). After the nack this writes the failed message, with
    the options the Retries middleware just set, over the dead letter, if it is still there.
    """

    def after_nack(self, broker: Any, message: Any) -> None:
        redis_id = message.options.get("redis_message_id")
        if not redis_id or not isinstance(broker, RedisBroker):
            return
        key = f"{broker.namespace}:{q_name(message.queue_name)}.XQ.msgs"
        broker.client.register_script(_REPLACE_IF_PRESENT)(keys=[key], args=[redis_id, message.encode()])
