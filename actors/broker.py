"""The one Dramatiq broker, on Redis, configured by an explicit call at start-up (`configure`), never on import.

Importing the actors (actors/tasks.py) declares them on `PENDING`, a stand-in that nothing is ever sent
through; `configure` builds the Redis broker from the settings the command loaded (or, without any, from
the config file named by RAGFLOW_BACKUP_CONFIG, else RAGFLOW_BACKUP_BROKER_URL), moves every actor to it
and makes it Dramatiq's broker, so Dramatiq's implicit default broker is never used. Building it does not
connect: Redis is reached on use.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq import Actor
from dramatiq.broker import Consumer
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Prometheus, Retries, default_middleware

from actors.minio.intake import MIRROR_QUEUE, IntakeMeter
from actors.minio.mirror import cpu_budget
from core.config import CONFIG_ENV_VAR, Settings, load_settings
from core.queues import KeepLastError

BROKER_URL_ENV = "RAGFLOW_BACKUP_BROKER_URL"
NAMESPACE_ENV = "RAGFLOW_BACKUP_BROKER_NAMESPACE"
# RAGFlow keeps its own data in Redis DB 1; our queues live in another DB.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/2"
DEFAULT_NAMESPACE = "ragflow-backup"
log = logging.getLogger("ragflow_backup.broker")


# actor name -> what to do once a message of it has failed for good (retries exhausted, or a `throws` error)
FINAL_FAILURE: dict[str, Callable[..., None]] = {}


def on_final_failure(actor: Actor) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `hook(*message.args, exception)` to run when a message of `actor` fails for good."""
    def register(hook: Callable[..., None]) -> Callable[..., None]:
        FINAL_FAILURE[actor.actor_name] = hook
        return hook
    return register


class FinalFailure(Middleware):
    """Dramatiq's Retries decides when a message has failed for good; this runs the actor's hook then
    (the failure record, the notification), so no actor counts its own attempts."""

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        hook = FINAL_FAILURE.get(message.actor_name)
        if exception is None or hook is None or not message.failed:
            return
        try:
            hook(*message.args, exception)
        except Exception:  # noqa: BLE001 - a hook's own failure must not take the worker down
            log.exception("the final-failure hook of %s failed", message.actor_name)


# An idle consumer polls Redis less and less often, up to the worker's timeout (1 s in `run`): the first
# events of a burst waited up to that long before a worker saw them. The mirror queue's consumer polls at
# least every MIRROR_POLL_MS while work comes in, and for BRISK_SECONDS after its last message (events
# come in bursts); a queue quiet for longer goes back to the worker's timeout, so an idle agent does not
# make 20 Redis calls a second per worker process (figure 7's idle row, docs/benchmarks.md). The other
# queues keep the timeout.
MIRROR_POLL_MS = 50
BRISK_SECONDS = 30.0


class BriskAfterActivity(Consumer):
    """A consumer (Dramatiq's Redis one, whose `timeout` caps its idle backoff) that polls every
    `brisk_ms` until `brisk_seconds` have passed without a message, then at most every `idle_ms`."""

    def __init__(self, consumer: Any, brisk_ms: int, idle_ms: int, brisk_seconds: float = BRISK_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.consumer, self.brisk_ms, self.idle_ms = consumer, brisk_ms, idle_ms
        self.brisk_seconds, self.clock = brisk_seconds, clock
        self.last_message = clock()  # a worker that just started is brisk (a backlog may be waiting)
        consumer.timeout = brisk_ms

    @property
    def timeout(self) -> int:
        return self.consumer.timeout

    def __next__(self) -> Any:
        message = next(self.consumer)
        now = self.clock()
        if message is not None:
            self.last_message = now
        self.consumer.timeout = self.brisk_ms if now - self.last_message < self.brisk_seconds else self.idle_ms
        return message

    def ack(self, message: Any) -> None:
        self.consumer.ack(message)

    def nack(self, message: Any) -> None:
        self.consumer.nack(message)

    def requeue(self, messages: Any) -> None:
        self.consumer.requeue(messages)

    def close(self) -> None:
        self.consumer.close()

    def __getattr__(self, name: str) -> Any:  # anything else Dramatiq reads of its consumer
        return getattr(self.consumer, name)


class _RedisBroker(RedisBroker):
    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        consumer = super().consume(queue_name, prefetch, timeout)
        if queue_name == MIRROR_QUEUE and timeout > MIRROR_POLL_MS:
            return BriskAfterActivity(consumer, MIRROR_POLL_MS, timeout)
        return consumer


def make_broker(url: str, namespace: str = DEFAULT_NAMESPACE, heartbeat_timeout_ms: int = 60_000,
                maintenance_chance: int = 1_000) -> RedisBroker:
    # Dramatiq's defaults minus its Prometheus middleware, which only works under dramatiq's own
    # launcher; our metrics are served by the agent.
    middleware = [cls() for cls in default_middleware if cls is not Prometheus]
    broker = _RedisBroker(url=url, namespace=namespace, heartbeat_timeout=heartbeat_timeout_ms,
                         maintenance_chance=maintenance_chance, middleware=middleware)
    # Before Retries in the list, so after it when a message is processed: it sees the message failed.
    broker.add_middleware(FinalFailure(), before=Retries)
    # Dead letters keep the last attempt's error, for `ragflow-backup queue dead`.
    broker.add_middleware(KeepLastError())
    return broker


# Where the actors are declared on import; `configure` moves them to the real broker.
PENDING = StubBroker()


def configure(settings: Settings | None = None) -> RedisBroker:
    """Build the broker from `settings` (or the environment, see above), move every declared actor to it
    and make it Dramatiq's broker. Called once by each command that sends or works messages."""
    if settings is None and os.environ.get(CONFIG_ENV_VAR):
        settings = load_settings(os.environ[CONFIG_ENV_VAR])
    if settings is not None:
        cfg = settings.broker
        broker = make_broker(cfg.url.get_secret_value(), cfg.namespace, cfg.heartbeat_timeout_ms, cfg.maintenance_chance)
        # Dramatiq's work around each mirror message is charged to the mirror's CPU budget (actors/minio/intake.py).
        broker.add_middleware(IntakeMeter(cpu_budget(settings)))
    else:
        broker = make_broker(os.environ.get(BROKER_URL_ENV, DEFAULT_BROKER_URL), os.environ.get(NAMESPACE_ENV, DEFAULT_NAMESPACE))
    for name in PENDING.get_declared_actors():
        actor = PENDING.get_actor(name)
        actor.broker = broker
        broker.declare_actor(actor)
    dramatiq.set_broker(broker)
    return broker
