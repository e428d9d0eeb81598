"""Dramatiq's own work around each mirror message, charged to the mirror's CPU budget (core/cpu_budget.py).

The copy itself is metered inside the actor (mirror.py); what Dramatiq does around it is not: the consumer
thread fetching messages from Redis and acknowledging them, the worker thread decoding a message and
running the middleware. Measured over a burst of events that was about a third of the mirror path's CPU,
so the share (minio.cpu_budget_percent) would not have been that of the whole mirror path without it.

A worker thread settles (charges and paces) after each mirror message and forgets the CPU of any other
kind of message (a backup has no share of the mirror's). The mirror queue's consumer thread is only
charged: it must keep fetching and acknowledging.
"""
from __future__ import annotations

from typing import Any

from dramatiq.middleware import Middleware

from core.cpu_budget import CpuBudget

MIRROR_QUEUE = "mirror"


class IntakeMeter(Middleware):
    def __init__(self, budget: CpuBudget, queue: str = MIRROR_QUEUE):
        self.budget, self.queue = budget, queue

    def after_worker_thread_boot(self, broker: Any, thread: Any) -> None:
        self.budget.forget()  # its count starts here: the first message is charged too

    def after_consumer_thread_boot(self, broker: Any, thread: Any) -> None:
        self.budget.forget()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if message.queue_name == self.queue:
            self.budget.settle()
        else:
            self.budget.forget()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.after_process_message(broker, message)

    def after_ack(self, broker: Any, message: Any) -> None:
        if message.queue_name == self.queue:
            self.budget.settle(wait=False)

    def after_nack(self, broker: Any, message: Any) -> None:
        self.after_ack(broker, message)


__all__ = ["MIRROR_QUEUE", "IntakeMeter"]
