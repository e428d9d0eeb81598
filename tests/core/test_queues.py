"""Queue inspection, dead letters, retry and purge against a real Redis and real Dramatiq workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq
import pytest
import redis
import typer
import yaml
from typer.testing import CliRunner

from actors.broker import make_broker
from agent.commands.common import state
from agent.commands.queue import queue_app
from core import queues
from core.config import CONFIG_ENV_VAR
from testbed.polling import wait_for
from tests.conftest import unique


@contextmanager
def running_worker(broker) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)


class Bed:
    """A broker in a namespace of its own, its Redis client, and actors that fail while a flag is set."""

    def __init__(self, redis_url: str) -> None:
        self.namespace = unique("q-")
        self.redis_url = redis_url
        # Our broker, with its KeepLastError middleware.
        self.broker = make_broker(redis_url, namespace=self.namespace)
        self.client = redis.Redis.from_url(redis_url)
        self.fail_flag = f"test:{self.namespace}:fail"
        self.done = f"test:{self.namespace}:done"
        client, fail_flag, done = self.client, self.fail_flag, self.done

        @dramatiq.actor(broker=self.broker, queue_name="backup", actor_name="back_up")
        def back_up(component: str) -> None:
            client.rpush(done, component)

        @dramatiq.actor(broker=self.broker, queue_name="maintenance", actor_name="flaky", max_retries=0)
        def flaky(point: str, component: str = "mysql") -> None:
            if client.exists(fail_flag):
                raise RuntimeError(f"disk full while writing {point}/{component}")
            client.rpush(done, f"{point}/{component}")

        @dramatiq.actor(broker=self.broker, queue_name="maintenance", actor_name="flaky_twice", max_retries=1,
                        min_backoff=10, max_backoff=20)
        def flaky_twice(point: str) -> None:
            attempt = client.incr(f"test:{self.namespace}:attempts")
            raise RuntimeError(f"attempt {attempt} of {point} failed")

        self.back_up, self.flaky, self.flaky_twice = back_up, flaky, flaky_twice

    def stats(self, **kwargs) -> dict[str, queues.QueueStats]:
        return {item.queue: item for item in queues.inspect(self.client, self.namespace, queues.KNOWN_QUEUES, **kwargs)}

    def dead_count(self, queue: str = "maintenance") -> int:
        return self.client.zcard(f"{self.namespace}:{queue}.XQ")

    def make_dead(self, *points: str) -> None:
        """Run `flaky` for each point on a real worker while the flag says fail: each becomes a dead letter."""
        self.client.set(self.fail_flag, 1)
        for point in points:
            self.flaky.send(point)
        with running_worker(self.broker):
            wait_for(lambda: self.dead_count() >= len(points), "the failing messages to be dead-lettered")


@pytest.fixture
def bed(redis_url) -> Bed:
    return Bed(redis_url)


def test_inspect_counts_ready_delayed_and_dead_messages_per_queue(bed):
    bed.make_dead("daily/2024-05-01")
    for component in ("mysql", "minio", "search"):
        bed.back_up.send(component)
    bed.back_up.send_with_options(args=("redis",), delay=60_000)
    bed.flaky.send_with_options(args=("daily/2024-05-02",), delay=60_000)
    time.sleep(0.01)  # ages are counted in milliseconds

    stats = bed.stats()

    assert set(stats) == {"backup", "maintenance", "mirror", "events", "offsite"}
    assert (stats["backup"].ready, stats["backup"].delayed, stats["backup"].dead) == (3, 1, 0)
    assert (stats["maintenance"].ready, stats["maintenance"].delayed, stats["maintenance"].dead) == (0, 1, 1)
    assert stats["backup"].oldest_age_seconds > 0
    assert stats["maintenance"].oldest_age_seconds > 0, "a delayed message counts as waiting"
    empty = stats["events"]
    assert (empty.ready, empty.delayed, empty.in_flight, empty.dead, empty.oldest_age_seconds) == (0, 0, 0, 0, None)


def test_a_queue_nobody_declared_here_is_found_from_its_keys(bed):
    @dramatiq.actor(broker=bed.broker, queue_name="reports.weekly", actor_name="report")
    def report() -> None:
        pass

    report.send()
    bed.client.set(f"{bed.namespace}:scheduler-lock", 1)  # not dramatiq's: not a queue
    stats = bed.stats()
    assert stats["reports.weekly"].ready == 1
    assert queues.queue_names(bed.broker) == ["reports.weekly"], "a broker stands in for client and namespace"


def test_a_message_a_worker_is_running_counts_in_flight_and_the_worker_is_live(bed):
    release = f"test:{bed.namespace}:release"

    @dramatiq.actor(broker=bed.broker, queue_name="mirror", actor_name="slow_mirror")
    def slow_mirror(key: str) -> None:
        bed.client.set(f"test:{bed.namespace}:started", 1)
        bed.client.blpop(release, timeout=20)

    slow_mirror.send("kb-1/doc.pdf")
    with running_worker(bed.broker):
        wait_for(lambda: bed.client.exists(f"test:{bed.namespace}:started"), "the mirror task to start")
        stats = bed.stats()
        bed.client.rpush(release, 1)
        assert (stats["mirror"].ready, stats["mirror"].in_flight, stats["mirror"].stalled) == (0, 1, 0)
        assert stats["mirror"].workers == 1
        assert queues.live_workers(bed.client, bed.namespace) == [bed.broker.broker_id]
        bed.broker.join("mirror", timeout=20_000)
    assert bed.stats()["mirror"].in_flight == 0


WORKER_SCRIPT = """
import sys, time, dramatiq, redis
from actors.broker import make_broker
url, namespace = sys.argv[1], sys.argv[2]
broker = make_broker(url, namespace)
flags = redis.Redis.from_url(url)

@dramatiq.actor(broker=broker, queue_name="mirror", actor_name="hang")
def hang():
    flags.set("test:" + namespace + ":started", 1)
    time.sleep(600)

dramatiq.Worker(broker, worker_threads=1, worker_timeout=100).start()
time.sleep(600)
"""


def test_a_message_held_by_a_killed_worker_shows_as_stalled(bed, redis_url):
    @dramatiq.actor(broker=bed.broker, queue_name="mirror", actor_name="hang")
    def hang() -> None:
        pass

    hang.send()
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, redis_url, bed.namespace],
                              cwd=Path(__file__).parents[2], start_new_session=True)
    try:
        wait_for(lambda: bed.client.exists(f"test:{bed.namespace}:started"), "the worker process to start the task")
        assert bed.stats()["mirror"].stalled == 0, "its worker is alive"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    time.sleep(1.0)

    mirror = bed.stats(heartbeat_timeout_ms=500)["mirror"]

    assert (mirror.in_flight, mirror.stalled, mirror.ready) == (1, 1, 0)


def test_dead_letters_show_actor_arguments_and_when_they_failed(bed):
    before = time.time()
    bed.make_dead("daily/2024-05-01", "daily/2024-05-02")

    letters = queues.dead_letters(bed.client, bed.namespace, "maintenance", limit=10)

    assert sorted(letter.args for letter in letters) == ["'daily/2024-05-01'", "'daily/2024-05-02'"]
    assert letters[0].failed_at >= letters[1].failed_at, "most recent first"
    assert {letter.actor for letter in letters} == {"flaky"}
    assert all(letter.failed_at.timestamp() >= before - 1 for letter in letters)
    assert len(queues.dead_letters(bed.client, bed.namespace, "maintenance", limit=1)) == 1


def test_a_dead_letter_keeps_the_error_of_the_last_attempt(bed):
    bed.flaky_twice.send("daily/2024-05-03")
    with running_worker(bed.broker):
        wait_for(lambda: bed.dead_count() == 1, "two attempts and a dead letter")

    [letter] = queues.dead_letters(bed.client, bed.namespace, "maintenance", limit=10)

    assert letter.retries == 2
    assert letter.error_line == "RuntimeError: attempt 2 of daily/2024-05-03 failed"
    assert "Traceback" in letter.error


def test_a_dead_letter_keeps_the_final_error_even_without_retries(redis_url):
    bed = Bed(redis_url)
    bed.make_dead("daily/2024-05-04")

    [letter] = queues.dead_letters(bed.client, bed.namespace, "maintenance", limit=10)

    assert letter.error_line == "RuntimeError: disk full while writing daily/2024-05-04/mysql"
    assert letter.retries == 1


def test_a_retried_dead_letter_runs_again_on_a_worker_with_a_full_set_of_retries(redis_url):
    bed = Bed(redis_url)
    bed.make_dead("daily/2024-05-05", "daily/2024-05-06")
    letters = {letter.args: letter for letter in queues.dead_letters(bed.client, bed.namespace, "maintenance", None)}
    chosen, other = letters["'daily/2024-05-05'"], letters["'daily/2024-05-06'"]
    bed.client.delete(bed.fail_flag)  # the disk has room again

    assert queues.retry_dead(bed.client, bed.namespace, "maintenance", [chosen.id]) == 1
    assert queues.retry_dead(bed.client, bed.namespace, "maintenance", [chosen.id]) == 0, "already moved"

    stats = bed.stats()["maintenance"]
    assert (stats.ready, stats.dead) == (1, 1)
    [queued_id] = bed.client.lrange(f"{bed.namespace}:maintenance", 0, -1)
    body = json.loads(bed.client.hget(f"{bed.namespace}:maintenance.msgs", queued_id))
    assert body["message_id"] == chosen.message_id
    assert body["options"]["redis_message_id"] == queued_id.decode()
    assert not {"retries", "traceback"} & set(body["options"])

    with running_worker(bed.broker):
        wait_for(lambda: bed.client.lrange(bed.done, 0, -1), "the retried message to run")
        bed.broker.join("maintenance", timeout=20_000)
    assert bed.client.lrange(bed.done, 0, -1) == [b"daily/2024-05-05/mysql"]
    assert [letter.id for letter in queues.dead_letters(bed.client, bed.namespace, "maintenance", None)] == [other.id]


def test_retry_accepts_the_message_id_the_logs_show_and_all(bed):
    bed.make_dead("daily/2024-05-07", "daily/2024-05-08", "daily/2024-05-09")
    letters = queues.dead_letters(bed.broker, None, "maintenance", None)

    assert queues.retry_dead(bed.broker, None, "maintenance", [letters[0].message_id]) == 1
    assert queues.retry_dead(bed.broker, None, "maintenance", "all") == 2
    assert (bed.stats()["maintenance"].ready, bed.dead_count()) == (3, 0)
    assert not bed.client.exists(f"{bed.namespace}:maintenance.XQ.msgs")


def test_purge_dead_deletes_the_named_dead_letters_then_all(bed):
    bed.make_dead("daily/2024-05-10", "daily/2024-05-11", "daily/2024-05-12")
    first, *rest = queues.dead_letters(bed.client, bed.namespace, "maintenance", None)

    assert queues.purge_dead(bed.client, bed.namespace, "maintenance", [first.id, "no-such-id"]) == 1
    assert [letter.id for letter in queues.dead_letters(bed.client, bed.namespace, "maintenance", None)] == [
        letter.id for letter in rest]
    assert queues.purge_dead(bed.client, bed.namespace, "maintenance", "all") == 2
    assert bed.dead_count() == 0
    assert not bed.client.exists(f"{bed.namespace}:maintenance.XQ.msgs")
    assert bed.client.lrange(bed.done, 0, -1) == [], "nothing purged ever ran"


# ---------------------------------------------------------------- the `queue` command


def cli_app() -> typer.Typer:
    """What agent/cli.py does: a --config option in front of the queue sub-app."""
    app = typer.Typer(add_completion=False)

    @app.callback()
    def options(config: Path = typer.Option(..., "--config")) -> None:
        state.config_path = config

    app.add_typer(queue_app, name="queue")
    return app


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)  # state.settings() sets it; undone after the test

    def run(bed: Bed | str, *args: str):
        """Run `queue ARGS` against a Bed's broker, or a broker URL of its own."""
        url, namespace = (bed, "unused") if isinstance(bed, str) else (bed.redis_url, bed.namespace)
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump({"storage_root": str(tmp_path / "backups"),
                                          "broker": {"url": url, "namespace": namespace}}))
        return CliRunner().invoke(cli_app(), ["--config", str(config), "queue", *args], env={"COLUMNS": "200"})

    return run


def table_rows(output: str) -> dict[str, list[str]]:
    """A rich table's body rows, keyed by their first cell."""
    cells = [[cell.strip() for cell in line.strip("│ ").split("│")] for line in output.splitlines() if line.startswith("│")]
    return {row[0]: row[1:] for row in cells}


def test_the_queue_command_prints_a_table_of_every_queue(bed, run_cli):
    bed.make_dead("daily/2024-05-13")
    bed.back_up.send("mysql")
    bed.back_up.send_with_options(args=("minio",), delay=60_000)

    result = run_cli(bed)

    assert result.exit_code == 0, result.output
    for header in ("queue", "ready", "delayed", "in flight", "dead", "oldest", "workers"):
        assert header in result.output
    rows = table_rows(result.output)
    assert set(rows) == set(queues.KNOWN_QUEUES)
    assert rows["backup"][:4] == ["1", "1", "0", "0"], result.output
    assert rows["maintenance"][:5] == ["0", "0", "0", "1", "-"], result.output
    assert "queue dead QUEUE" in result.output
    without_age = {queue: row[:4] + row[5:] for queue, row in rows.items()}
    assert {queue: row[:4] + row[5:] for queue, row in table_rows(run_cli(bed, "show").output).items()} == without_age, (
        "`queue` alone is `queue show`")
    shown = json.loads(run_cli(bed, "show", "--json").output)
    assert shown["schema_version"] == 1  # docs/json.md
    assert {item["queue"]: item["dead"] for item in shown["queues"]}["maintenance"] == 1


def test_queue_dead_lists_the_error_and_retry_puts_it_back(redis_url, run_cli):
    bed = Bed(redis_url)
    bed.make_dead("daily/2024-05-14")
    [letter] = queues.dead_letters(bed.client, bed.namespace, "maintenance", None)

    listed = run_cli(bed, "dead", "maintenance", "--traceback")
    assert listed.exit_code == 0, listed.output
    assert "RuntimeError: disk full while writing daily/2024-05-14/mysql" in listed.output
    assert letter.id in listed.output and "flaky" in listed.output

    refused = run_cli(bed, "retry", "maintenance")
    assert refused.exit_code == 2 and "--all" in refused.output

    retried = run_cli(bed, "retry", "maintenance", letter.id, "missing-id")
    assert retried.exit_code == 1, "one id was not a dead letter"
    assert "requeued 1 dead letter(s)" in retried.output
    assert (bed.stats()["maintenance"].ready, bed.dead_count()) == (1, 0)
    assert "no dead letters in maintenance" in run_cli(bed, "dead", "maintenance").output


def test_queue_purge_needs_yes_and_is_audited(bed, run_cli, tmp_path):
    bed.make_dead("daily/2024-05-15", "daily/2024-05-16")

    refused = run_cli(bed, "purge", "maintenance", "--all")
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert bed.dead_count() == 2

    purged = run_cli(bed, "purge", "maintenance", "--all", "--yes")
    assert purged.exit_code == 0, purged.output
    assert "purged 2 dead letter(s)" in purged.output
    assert bed.dead_count() == 0
    [audit] = (tmp_path / "backups" / "logs" / "audit.log").read_text().splitlines()
    assert json.loads(audit) | {"time": None, "actor": None} == {
        "time": None, "actor": None, "action": "purge-dead-letters", "target": "maintenance", "result": "done",
        "count": 2, "ids": "all"}


@pytest.mark.fault('wrong broker (Redis) password',
                   'the CLI fails naming Redis, without the password')
def test_a_wrong_broker_password_fails_naming_redis_without_the_password(testbed_env, redis_db, run_cli):
    url = f"redis://:not-the-password-42@{testbed_env['REDIS_HOST']}:{testbed_env['REDIS_PORT']}/{redis_db}"

    result = run_cli(url)

    assert result.exit_code == 1
    assert "refused our credentials" in result.output and "broker.url" in result.output
    assert "not-the-password-42" not in result.output
