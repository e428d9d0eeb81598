"""`agent` (event sources and timers), `run` (agent and workers in one process)."""
from __future__ import annotations

import signal
import threading
from typing import Annotated

import redis
import typer
from dramatiq import Worker

from actors.actions.runs import describe
from agent.agent import Agent
from agent.commands.common import console, fail, setup_logging, state
from core import audit
from core.locks import Busy
from core.safe_paths import UnsafePath


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _start(runner) -> None:

    try:
        runner.start()
    except Busy as exc:
        fail(f"{exc} (one agent per storage root; stop it first)")
    except redis.exceptions.ConnectionError as exc:  # the first task (a reconcile) is queued at start
        fail(f"the broker's Redis cannot be reached ({describe(exc)}): start it, or check broker.url in the config")


def _agent():
    """The Agent, or a message when the storage root's layout is unsafe (a tier folder that is a symlink)."""

    try:
        return Agent(state.settings())
    except UnsafePath as exc:
        fail(f"cannot start on the storage root: {exc}")


def agent() -> None:
    """Watch MinIO, RAGFlow's config folder and the clock; queue the work for the workers."""

    setup_logging()
    audit.set_role("agent")
    runner = _agent()
    _start(runner)
    console.print("agent running; SIGTERM or Ctrl-C stops it")
    _wait_for_signal()
    runner.stop()


def run(
    threads: Annotated[int, typer.Option(help="Worker threads.")] = 4,
    stop_timeout: Annotated[int, typer.Option(help="Seconds to let running tasks finish on SIGTERM.")] = 600,
) -> None:
    """The agent and its workers in one process (a single-container install)."""


    setup_logging()
    audit.set_role("agent")
    runner = _agent()
    runner.mirror_events_here(threads)  # no Redis round trips for events (agent/local_mirror.py)
    worker = Worker(runner.broker, worker_threads=threads, worker_timeout=1000)
    worker.start()
    try:
        _start(runner)
        console.print(f"agent and {threads} worker threads running; SIGTERM or Ctrl-C stops them")
        _wait_for_signal()
        runner.stop()
    finally:
        # Messages not finished in time are not acked: the broker gives them to the next worker.
        worker.stop(timeout=stop_timeout * 1000)
