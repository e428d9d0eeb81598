"""`worker`: run Dramatiq workers for our queues in this process, with our broker."""
from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from dramatiq import Worker

from actors import tasks  # noqa: F401 - declares the actors the worker runs
from actors.broker import configure
from agent.commands.common import console, state
from core import audit


def worker(
    threads: Annotated[int, typer.Option(help="Worker threads.")] = 2,
    stop_timeout: Annotated[int, typer.Option(help="Seconds to let running tasks finish on SIGTERM.")] = 600,
) -> None:
    """Process queued backups, verifies and prunes until SIGTERM/SIGINT."""
    broker = configure(state.settings())  # the config, validated, gives the broker; the actors move to it
    audit.set_role("worker")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = Worker(broker, worker_threads=threads, worker_timeout=1000)
    runner.start()
    console.print(f"worker started: {threads} threads on queues {', '.join(sorted(broker.get_declared_queues()))}")
    stop.wait()
    console.print("stopping: letting running tasks finish")
    # Unfinished messages go back to the queue (they are not acked), so nothing is lost.
    runner.stop(timeout=stop_timeout * 1000)
