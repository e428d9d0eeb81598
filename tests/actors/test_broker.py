"""The broker is explicit: built from our setting by a call at start-up, never on import, never dramatiq's
implicit default."""
from __future__ import annotations

import subprocess
import sys

from dramatiq import Message

from actors.broker import BRISK_SECONDS, MIRROR_POLL_MS, make_broker
from tests.conftest import unique


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


def test_the_final_failure_hook_runs_once_after_the_last_retry_and_at_once_for_a_permanent_error(redis_url):
    import dramatiq
    import redis

    from actors.broker import make_broker, on_final_failure
    from core.component import PermanentError
    from testbed.polling import wait_for
    from tests.conftest import unique
    from tests.core.test_queues import running_worker

    namespace = unique("ff-")
    broker = make_broker(redis_url, namespace=namespace)
    client = redis.Redis.from_url(redis_url)
    attempts, finals = f"test:{namespace}:attempts", f"test:{namespace}:finals"

    @dramatiq.actor(broker=broker, queue_name="maintenance", actor_name=f"flaky_{namespace}", max_retries=2,
                    min_backoff=10, max_backoff=20, throws=(PermanentError,))
    def flaky(name: str, permanent: bool) -> None:
        client.rpush(attempts, name)
        raise (PermanentError if permanent else RuntimeError)(f"{name} failed")

    @on_final_failure(flaky)
    def flaky_failed(name: str, permanent: bool, exc: BaseException) -> None:
        client.rpush(finals, f"{name}: {exc}")

    flaky.send("transient", False)
    flaky.send("permanent", True)
    with running_worker(broker):
        wait_for(lambda: client.llen(finals) == 2, "both messages to fail for good")

    tried = [item.decode() for item in client.lrange(attempts, 0, -1)]
    assert sorted(item.decode() for item in client.lrange(finals, 0, -1)) == [
        "permanent: permanent failed", "transient: transient failed"]
    assert tried.count("transient") == 3 and tried.count("permanent") == 1  # the first try and max_retries=2


def test_a_fresh_mirror_queue_is_polled_often_and_the_other_queues_at_the_workers_timeout(redis_url):
    broker = make_broker(redis_url, namespace=unique("poll-"))
    # The first events of a burst no longer wait out a consumer that slowed down while idle.
    assert broker.consume("mirror", timeout=1000).timeout == MIRROR_POLL_MS
    assert broker.consume("backup", timeout=1000).timeout == 1000


def test_the_mirror_queue_is_polled_often_until_it_has_been_quiet_for_a_while_and_again_once_a_message_comes(redis_url):
    broker = make_broker(redis_url, namespace=unique("brisk-"))
    broker.declare_queue("mirror")
    consumer = broker.consume("mirror", timeout=1000)
    now = [0.0]
    consumer.clock, consumer.last_message = (lambda: now[0]), 0.0

    assert next(consumer) is None and consumer.timeout == MIRROR_POLL_MS  # quiet, but not for long
    now[0] = BRISK_SECONDS + 1
    assert next(consumer) is None and consumer.timeout == 1000  # quiet for a while: the worker's timeout

    broker.enqueue(Message(queue_name="mirror", actor_name="mirror_object", args=("kb", "doc"), kwargs={}, options={}))
    message = None
    while message is None:
        message = next(consumer)
    assert list(message.args) == ["kb", "doc"] and consumer.timeout == MIRROR_POLL_MS
    consumer.ack(message)
    consumer.close()
