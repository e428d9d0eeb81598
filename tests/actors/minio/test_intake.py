"""Dramatiq's work around a mirror message is charged to the mirror's CPU budget; other messages are not.

The budget runs on a simulated CPU clock that the actors move, so what is charged is known exactly and
nothing really sleeps; the broker, its Redis and the worker are real."""
from __future__ import annotations

import dramatiq
import redis

from actors.broker import make_broker
from actors.minio.intake import MIRROR_QUEUE, IntakeMeter
from core.cpu_budget import WINDOW_SECONDS, CpuBudget
from testbed.polling import wait_for
from tests.conftest import unique
from tests.core.test_cpu_budget import Machine
from tests.core.test_queues import running_worker


def test_cpu_spent_around_a_mirror_message_makes_the_worker_pay_it_back_and_a_backup_message_does_not(redis_url):
    machine = Machine()
    budget = CpuBudget(10, 50, cores=2, clock=lambda: machine.wall, cpu=lambda: machine.cpu, sleep=machine.sleep)
    broker = make_broker(redis_url, namespace=unique("intake-"))
    broker.add_middleware(IntakeMeter(budget))
    done = redis.Redis.from_url(redis_url)
    seen = f"test:{broker.namespace}:done"

    def busy(queue: str):
        @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"busy_{queue}_{broker.namespace}", max_retries=0)
        def actor() -> None:
            machine.work(13.0)  # CPU outside any metered block, as Dramatiq's own is
            done.rpush(seen, queue)
        return actor

    mirror, backup = busy(MIRROR_QUEUE), busy("backup")
    with running_worker(broker):
        backup.send()
        wait_for(lambda: done.llen(seen) == 1, "the backup message to be processed")
        assert machine.slept == 0  # not the mirror's: forgotten
        mirror.send()
        wait_for(lambda: done.llen(seen) == 2, "the mirror message to be processed")
        wait_for(lambda: machine.slept > 0, "the worker to pay the mirror message's CPU back")
    # 13 CPU s against a minute's 12 (10 % of 2 cores): the worker waits until they leave the minute's window.
    assert WINDOW_SECONDS - 1 < machine.slept <= WINDOW_SECONDS + 1
