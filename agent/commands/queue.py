"""`queue`: what is waiting in the broker, what died, and putting dead letters back to work (or away)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import redis
import typer
from rich.table import Table

from agent.commands.common import console, fail, human_age, state
from agent.commands.json_views import JsonOption, emit, queue_view
from core import audit, queues

queue_app = typer.Typer(add_completion=False, help="Queue depth, delayed and dead messages; retry or purge dead letters.")

QueueArg = Annotated[str, typer.Argument(help="Queue name: backup, maintenance, mirror or events.", show_default=False)]
IdsArg = Annotated[Optional[list[str]], typer.Argument(help="Dead-letter ids (or message ids) as `queue dead` shows them.",
                                                       show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every dead letter of the queue.")]


class Broker:
    """The broker's Redis client and namespace, from the config."""

    def __init__(self) -> None:

        settings = state.settings()
        self.settings = settings
        self.namespace = settings.broker.namespace
        self.heartbeat_timeout_ms = settings.broker.heartbeat_timeout_ms
        self.client = redis.Redis.from_url(settings.broker.url.get_secret_value(), socket_timeout=10,
                                           socket_connect_timeout=10)

    def where(self) -> str:
        # Built from the parsed URL, so the password never reaches a message.
        kwargs = self.client.connection_pool.connection_kwargs
        place = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"{place} DB {kwargs.get('db', 0)}"


@contextmanager
def broker() -> Iterator[Broker]:

    try:
        target = Broker()
    except ValueError as exc:  # from_url: never echo the URL, it holds the password
        fail(f"broker.url in the config is not a Redis URL (redis://:PASSWORD@host:port/db): {type(exc).__name__}")
    try:
        yield target
    except redis.AuthenticationError as exc:
        fail(f"the broker's Redis at {target.where()} refused our credentials ({exc}); check broker.url in the config "
             f"(redis://:PASSWORD@host:port/db) or REDIS_PASSWORD in RAGFlow's .env")
    except redis.RedisError as exc:
        fail(f"cannot reach the broker's Redis at {target.where()} ({type(exc).__name__}: {exc}); "
             f"check broker.url in the config and that Redis is running")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return human_age(datetime.now(timezone.utc) - timedelta(seconds=seconds))


@queue_app.callback(invoke_without_command=True)
def queue_main(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Without a subcommand: the table of `queue show` (`queue --json`: its JSON)."""
    if ctx.invoked_subcommand is None:
        show(as_json)


@queue_app.command()
def show(as_json: JsonOption = False) -> None:
    """Per queue: ready, delayed, in flight, dead, the oldest waiting message and live workers."""
    with broker() as target:
        stats = queues.inspect(target.client, target.namespace, queues.KNOWN_QUEUES, target.heartbeat_timeout_ms)
    if as_json:
        emit("queue", queue_view(target.namespace, stats))
        return
    table = Table(title=f"queues in {target.namespace} ({target.where()})")
    for column in ("queue", "ready", "delayed", "in flight", "dead", "oldest", "workers"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for item in stats:
        in_flight = f"{item.in_flight} ({item.stalled} stalled)" if item.stalled else str(item.in_flight)
        dead = f"[red]{item.dead}[/red]" if item.dead else "0"
        table.add_row(item.queue, str(item.ready), str(item.delayed), in_flight, dead, _age(item.oldest_age_seconds),
                      str(item.workers))
    console.print(table)
    if any(item.stalled for item in stats):
        console.print("[yellow]stalled[/yellow]: held by workers that stopped heart-beating; "
                      "they go back to their queue by themselves after the heartbeat timeout")
    if any(item.dead for item in stats):
        console.print("dead letters: `ragflow-backup queue dead QUEUE`, then `queue retry` or `queue purge`")


@queue_app.command()
def dead(
    queue: QueueArg,
    limit: Annotated[int, typer.Option(help="Show at most this many, most recent first.")] = 50,
    traceback: Annotated[bool, typer.Option("--traceback", "-t", help="Print each full traceback.")] = False,
) -> None:
    """List a queue's dead letters: id, actor, arguments, when it failed, retries, the error."""
    with broker() as target:
        letters = queues.dead_letters(target.client, target.namespace, queue, limit)
    if not letters:
        console.print(f"no dead letters in {queue}")
        return
    table = Table(title=f"dead letters in {queue}")
    for column in ("id", "actor", "args", "failed", "retries", "error"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(letter.id, letter.actor, letter.args, f"{human_age(letter.failed_at)} ago", str(letter.retries),
                      letter.error_line or "[dim](not kept by dramatiq)[/dim]")
    console.print(table)
    if traceback:
        for letter in letters:
            if letter.error:
                console.rule(f"{letter.id} {letter.actor}")
                console.print(letter.error, markup=False, highlight=False)


def _chosen(ids: list[str] | None, every: bool, verb: str) -> list[str] | str:
    if every and ids:
        fail("give dead-letter ids or --all, not both", code=2)
    if not every and not ids:
        fail(f"name the dead letters to {verb} (ids from `ragflow-backup queue dead QUEUE`) or pass --all", code=2)
    return "all" if every else list(ids or [])


@queue_app.command()
def retry(queue: QueueArg, ids: IdsArg = None, every: AllOpt = False) -> None:
    """Put dead letters back on their queue, with a full set of retries, for the workers to run again."""
    chosen = _chosen(ids, every, "retry")
    with broker() as target:
        moved = queues.retry_dead(target.client, target.namespace, queue, chosen)
    console.print(f"requeued {moved} dead letter(s) on {queue}")
    if chosen != "all" and moved < len(chosen):
        fail(f"{len(chosen) - moved} of the ids given are not dead letters of {queue} "
             f"(see `ragflow-backup queue dead {queue}`)")


@queue_app.command()
def purge(
    queue: QueueArg,
    ids: IdsArg = None,
    every: AllOpt = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the messages are deleted for good.")] = False,
) -> None:
    """Delete dead letters for good (needs --yes); recorded in the audit log."""
    chosen = _chosen(ids, every, "purge")
    if not yes:
        fail(f"purging deletes dead letters of {queue} for good; add --yes to confirm", code=2)
    with broker() as target:
        removed = queues.purge_dead(target.client, target.namespace, queue, chosen)
    console.print(f"purged {removed} dead letter(s) from {queue}")
    if removed:
        _audit(target, queue, removed, chosen)
    if chosen != "all" and removed < len(chosen):
        fail(f"{len(chosen) - removed} of the ids given are not dead letters of {queue}")


def _audit(target: Broker, queue: str, removed: int, chosen: list[str] | str) -> None:
    """Deletions go to the one audit log (logs/audit.log under the storage root)."""

    audit.record(target.settings.storage_root, "purge-dead-letters", queue, "done", count=removed, ids=chosen)
