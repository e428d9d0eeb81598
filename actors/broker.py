"""The one Dramatiq broker, configured explicitly on Redis. Import this before any actor module.

Dramatiq falls back to an implicit default broker when none is set; we never want that. The broker
is built from the config file named by RAGFLOW_BACKUP_CONFIG (the CLI sets it from --config), or,
without one, from RAGFLOW_BACKUP_BROKER_URL. Building it does not connect: Redis is reached on use.
"""
from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Prometheus, default_middleware

from core.config import CONFIG_ENV_VAR, load_settings
from core.queues import KeepLastError

BROKER_URL_ENV = "RAGFLOW_BACKUP_BROKER_URL"
NAMESPACE_ENV = "RAGFLOW_BACKUP_BROKER_NAMESPACE"
# RAGFlow keeps its own data in Redis DB 1; our queues live in another DB.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/2"
DEFAULT_NAMESPACE = "ragflow-backup"


def make_broker(url: str, namespace: str = DEFAULT_NAMESPACE, heartbeat_timeout_ms: int = 60_000,
                maintenance_chance: int = 1_000) -> RedisBroker:
    # Dramatiq's defaults minus its Prometheus middleware, which only works under dramatiq's own
    # launcher; our metrics are served by the agent.
    middleware = [cls() for cls in default_middleware if cls is not Prometheus]
    broker = RedisBroker(url=url, namespace=namespace, heartbeat_timeout=heartbeat_timeout_ms,
                         maintenance_chance=maintenance_chance, middleware=middleware)
    # Actors read their retry count from the current message to know their last attempt.
    broker.add_middleware(CurrentMessage())
    # Dead letters keep the last attempt's error, for `ragflow-backup queue dead`.
    broker.add_middleware(KeepLastError())
    return broker


def _from_environment() -> RedisBroker:
    if os.environ.get(CONFIG_ENV_VAR):
        cfg = load_settings(os.environ[CONFIG_ENV_VAR]).broker
        return make_broker(cfg.url.get_secret_value(), cfg.namespace, cfg.heartbeat_timeout_ms, cfg.maintenance_chance)
    return make_broker(os.environ.get(BROKER_URL_ENV, DEFAULT_BROKER_URL), os.environ.get(NAMESPACE_ENV, DEFAULT_NAMESPACE))


broker: RedisBroker = _from_environment()
dramatiq.set_broker(broker)
