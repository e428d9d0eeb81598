"""Cron-style scheduling of the agent's periodic jobs (backup, verify, reconcile, ...).

Rules (all about not firing too often nor never):
- The last fired tick of every job is kept in a JSON state file, so a restarted agent knows what ran.
- A job fires when its most recent scheduled tick (croniter get_prev from now) is later than its last
  fire. So ticks missed while the agent was down, or skipped by a clock jumping forward by days, fire
  ONCE, not once per missed tick. on_tick gets the scheduled tick, not the time it fired.
- A job seen for the first time (or whose expression changed) records "now" as its last fire and waits
  for its next tick: nothing fires merely because the agent started or was reconfigured.
- Clock moved back: a tick is due only if it is later than the last fire both in absolute time and in
  local wall-clock time, so ticks already fired never fire again. This also makes a fixed-time job run
  once on a DST fall-back day (02:00 happens twice; the second one has the same wall time).
  If the last fire lies more than `max_backward` in the future, the stamp came from a wrong clock: it is
  forgotten (logged) and the job waits for its next tick, rather than for the clock to catch up.
- Times are timezone-aware local times (zoneinfo), so croniter handles DST: a 02:00 job on a
  spring-forward day runs at 03:00, once.
- on_tick runs in the scheduler thread and should only enqueue work. Its exceptions are logged; the
  tick still counts as fired (the actors retry on their own).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from core.atomic import private_dir, write_bytes_atomic

log = logging.getLogger("ragflow_backup.scheduler")

STATE_FORMAT = 1
POLL_SECONDS = 30.0  # the thread wakes at least this often, so a clock jump is noticed soon


def local_zone() -> tzinfo:
    """The machine's zone as a zoneinfo zone (DST rules included), not just today's UTC offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except Exception:  # noqa: BLE001 - a bad TZ falls back to the system zone
            log.warning("TZ=%r is not a known time zone; using the system zone", name)
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except OSError:
        return datetime.now().astimezone().tzinfo  # type: ignore[return-value]


def now_local() -> datetime:
    return datetime.now(local_zone())


def _wall(moment: datetime, zone: tzinfo | None) -> datetime:
    """The naive wall-clock time of `moment` in `zone`."""
    return moment.astimezone(zone).replace(tzinfo=None)


class Scheduler:
    def __init__(self, jobs: dict[str, str], state_file: Path, on_tick: Callable[[str, datetime], None],
                 clock: Callable[[], datetime] = now_local, max_backward: timedelta = timedelta(days=1)):
        for name, expression in jobs.items():
            if expression and not croniter.is_valid(expression):
                raise ValueError(f"schedule {name!r}: {expression!r} is not a cron expression (e.g. '0 2 * * *')")
        self.jobs = {name: expression for name, expression in jobs.items() if expression}  # '' = off
        self.state_file = Path(state_file)
        self.on_tick = on_tick
        self.clock = clock
        self.max_backward = max_backward
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- state --------------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self.state_file.read_text())
            return {name: dict(entry) for name, entry in raw.get("jobs", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            # Starting afresh only delays jobs to their next tick; it never fires anything.
            log.warning("scheduler state %s is unreadable (%s); every job waits for its next tick",
                        self.state_file, type(exc).__name__)
            return {}

    def _save(self, state: dict[str, dict[str, Any]]) -> None:
        private_dir(self.state_file.parent)
        data = {"format": STATE_FORMAT, "jobs": state}
        write_bytes_atomic(self.state_file, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")

    def last_fired(self) -> dict[str, datetime]:
        """Each job's last fire (or start-up baseline) as recorded in the state file."""
        return {name: datetime.fromisoformat(entry["last"]) for name, entry in self._load().items() if "last" in entry}

    # --- scheduling ---------------------------------------------------------------------------

    def _due(self, name: str, expression: str, entry: dict[str, Any] | None, now: datetime) -> tuple[bool, datetime]:
        """Whether the job fires now, and the stamp to record as its last fire."""
        if entry is None or entry.get("expression") != expression or "last" not in entry:
            return False, now  # new or rescheduled: baseline, wait for the next tick
        try:
            last = datetime.fromisoformat(entry["last"])
            if last.tzinfo is None:
                raise ValueError("naive time")
        except (TypeError, ValueError):
            log.warning("scheduler: job %s has an unreadable last fire; it waits for its next tick", name)
            return False, now
        if last - now > self.max_backward:
            log.warning("scheduler: job %s last fired at %s, after now (%s): the clock moved back; "
                        "forgetting that stamp, the job waits for its next tick", name, last.isoformat(), now.isoformat())
            return False, now
        tick: datetime = croniter(expression, now).get_prev(datetime)
        if tick > last and _wall(tick, now.tzinfo) > _wall(last, now.tzinfo):
            return True, tick
        return False, last

    def run_pending(self, now: datetime | None = None) -> list[str]:
        """Fire every job that is due at `now` (once each) and return their names."""
        now = now or self.clock()
        if now.tzinfo is None:
            raise ValueError("the scheduler needs timezone-aware times (DST and clock jumps)")
        fired: list[str] = []
        with self._lock:
            state = self._load()
            before = json.dumps(state, sort_keys=True)
            for name, expression in self.jobs.items():
                due, stamp = self._due(name, expression, state.get(name), now)
                if due:
                    fired.append(name)
                    try:
                        self.on_tick(name, stamp)
                    except Exception:  # noqa: BLE001 - one failing job must not stop the others
                        log.exception("scheduler: job %s (tick %s) failed to start", name, stamp.isoformat())
                    else:
                        log.info("scheduler: job %s fired for its tick at %s", name, stamp.isoformat())
                state[name] = {"expression": expression, "last": stamp.isoformat()}
            if json.dumps(state, sort_keys=True) != before:
                self._save(state)
        return fired

    def next_ticks(self, now: datetime | None = None) -> dict[str, datetime]:
        """The next scheduled tick of every active job."""
        now = now or self.clock()
        return {name: croniter(expression, now).get_next(datetime) for name, expression in self.jobs.items()}

    # --- thread -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                now = self.clock()
                self.run_pending(now)
                ticks = self.next_ticks(now)
                wait = min([(tick - now).total_seconds() for tick in ticks.values()] + [POLL_SECONDS])
            except Exception:  # noqa: BLE001 - e.g. an unwritable state file: keep trying
                log.exception("scheduler: a pass failed; retrying in %.0f s", POLL_SECONDS)
                wait = POLL_SECONDS
            self._stop.wait(max(wait, 0.0) + 0.05)  # just past the tick, so get_prev sees it

    def start(self) -> None:
        """Run in a daemon thread; the first pass fires ticks missed while the agent was down."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ragflow-backup-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
