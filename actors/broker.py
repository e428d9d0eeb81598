"""The one Dramatiq broker, configured explicitly on Redis. Import this before any actor module.

Dramatiq falls back to an implicit default broker when none is set; we never want that, so the broker
is built here from RAGFLOW_BACKUP_BROKER_URL (the CLI sets it from the config before importing actors).
Building it does not connect: the Redis connection pool connects on first use.
"""
from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

BROKER_URL_ENV = "RAGFLOW_BACKUP_BROKER_URL"
NAMESPACE_ENV = "RAGFLOW_BACKUP_BROKER_NAMESPACE"
# RAGFlow keeps its own data in Redis DB 1; our queues live in another DB.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/2"
DEFAULT_NAMESPACE = "ragflow-backup"


def make_broker(url: str, namespace: str = DEFAULT_NAMESPACE) -> RedisBroker:
    return RedisBroker(url=url, namespace=namespace)


broker: RedisBroker = make_broker(
    os.environ.get(BROKER_URL_ENV, DEFAULT_BROKER_URL), os.environ.get(NAMESPACE_ENV, DEFAULT_NAMESPACE)
)
dramatiq.set_broker(broker)
