"""The broker is explicit: built from our setting, never dramatiq's implicit default."""
from __future__ import annotations

import subprocess
import sys


def test_the_broker_module_sets_a_redis_broker_from_the_environment(redis_url):
    code = (
        "import dramatiq, actors.broker as b;"
        "from dramatiq.brokers.redis import RedisBroker;"
        "assert dramatiq.get_broker() is b.broker and isinstance(b.broker, RedisBroker);"
        "print(b.broker.client.connection_pool.connection_kwargs['db'], b.broker.namespace)"
    )
    env = {"RAGFLOW_BACKUP_BROKER_URL": redis_url, "RAGFLOW_BACKUP_BROKER_NAMESPACE": "rb-test", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [redis_url.rsplit("/", 1)[1], "rb-test"]
