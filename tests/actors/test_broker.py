"""The broker is explicit: built from our setting by a call at start-up, never on import, never dramatiq's
implicit default."""
from __future__ import annotations

import subprocess
import sys


def test_importing_the_actors_builds_no_broker_and_configure_sets_a_redis_broker_from_the_environment(redis_url):
    code = (
        "import dramatiq, dramatiq.broker as db, actors.tasks as t;"
        "from actors.broker import PENDING, configure;"
        "from dramatiq.brokers.redis import RedisBroker;"
        "assert db.global_broker is None and t.backup_component.broker is PENDING;"
        "b = configure();"
        "assert dramatiq.get_broker() is b and isinstance(b, RedisBroker) and t.backup_component.broker is b;"
        "print(b.client.connection_pool.connection_kwargs['db'], b.namespace, ' '.join(sorted(b.get_declared_queues())))"
    )
    env = {"RAGFLOW_BACKUP_BROKER_URL": redis_url, "RAGFLOW_BACKUP_BROKER_NAMESPACE": "rb-test", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [redis_url.rsplit("/", 1)[1], "rb-test", "backup", "events", "maintenance", "mirror", "offsite"]


def test_the_broker_is_built_from_the_settings_the_command_loaded(tmp_path, redis_url):
    code = (
        "import sys; from actors.broker import configure; from core.config import Settings;"
        "b = configure(Settings(storage_root=sys.argv[1], broker={'url': sys.argv[2], 'namespace': 'rb-settings'}));"
        "print(b.namespace)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), redis_url], env={"PATH": ""}, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["rb-settings"]
