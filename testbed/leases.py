"""Redis DBs of the test bed leased to one test or benchmark at a time (SET NX with an expiry in DB 0),
so concurrent runs never share one. DB 1 is RAGFlow's and never leased."""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from core.clients import redis_client
from testbed import settings as testbed_settings

LEASABLE_DBS = range(3, 64)  # DB 2 is the demo's broker
LEASE_SECONDS = 1800


@contextmanager
def leased_redis_db(env: dict[str, str]) -> Iterator[int]:
    """Yield a flushed Redis DB number of one's own; flush and release it afterwards."""
    leases = redis_client(testbed_settings.redis(env, db=0))
    token = uuid.uuid4().hex
    candidates = list(LEASABLE_DBS)
    random.shuffle(candidates)
    db = next((n for n in candidates if leases.set(f"testbed:lease:db:{n}", token, nx=True, ex=LEASE_SECONDS)), None)
    if db is None:
        raise RuntimeError("every Redis test DB is leased; are other test runs stuck? (keys testbed:lease:db:* in DB 0)")
    client = redis_client(testbed_settings.redis(env, db=db))
    client.flushdb()
    try:
        yield db
    finally:
        client.flushdb()
        if leases.get(f"testbed:lease:db:{db}") == token.encode():
            leases.delete(f"testbed:lease:db:{db}")


def redis_url(env: dict[str, str], db: int) -> str:
    return f"redis://:{env['REDIS_PASSWORD']}@{env['REDIS_HOST']}:{env['REDIS_PORT']}/{db}"
