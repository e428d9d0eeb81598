"""Scheduler: cron maths with a fake clock (pure logic), state in tmp_path, and the real thread."""
from __future__ import annotations

import json
import logging
import stat
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from agent.scheduler import Scheduler, local_zone, now_local

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


class Recorder:
    """on_tick that remembers (job, tick) pairs."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[tuple[str, datetime]] = []
        self.fail = fail

    def __call__(self, name: str, tick: datetime) -> None:
        self.calls.append((name, tick))
        if name in self.fail:
            raise RuntimeError(f"{name} could not be queued")

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def walk(scheduler: Scheduler, start: datetime, end: datetime, step: timedelta = timedelta(minutes=5)) -> None:
    """Run the scheduler like its thread would, every `step` of real (UTC) time."""
    moment = start.astimezone(UTC)
    while moment <= end.astimezone(UTC):
        scheduler.run_pending(moment.astimezone(start.tzinfo))
        moment += step


@pytest.fixture
def state_file(tmp_path):
    return tmp_path / "state" / "scheduler.json"


def test_a_first_start_records_a_baseline_and_fires_nothing(state_file):
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *", "reconcile": "*/15 * * * *"}, state_file, ticks)

    assert scheduler.run_pending(berlin(2026, 6, 10, 9, 7)) == []

    assert ticks.calls == []
    assert set(scheduler.last_fired()) == {"backup", "reconcile"}
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


def test_a_job_fires_once_at_its_tick_and_gets_the_scheduled_time(state_file):
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *"}, state_file, ticks)
    scheduler.run_pending(berlin(2026, 6, 10, 1, 0))

    assert scheduler.run_pending(berlin(2026, 6, 10, 1, 59, 59)) == []
    assert scheduler.run_pending(berlin(2026, 6, 10, 2, 0, 1)) == ["backup"]
    assert scheduler.run_pending(berlin(2026, 6, 10, 2, 0, 31)) == []
    assert scheduler.run_pending(berlin(2026, 6, 10, 23, 0)) == []
    assert scheduler.run_pending(berlin(2026, 6, 11, 2, 0, 1)) == ["backup"]

    assert ticks.calls == [("backup", berlin(2026, 6, 10, 2, 0)), ("backup", berlin(2026, 6, 11, 2, 0))]


def test_ticks_missed_while_the_agent_was_down_fire_once_at_start_up(state_file):
    before = Recorder()
    Scheduler({"backup": "0 2 * * *", "reconcile": "*/15 * * * *"}, state_file, before).run_pending(berlin(2026, 6, 10, 1, 0))

    # Three days later a new process (a restarted agent) reads the same state file.
    after = Recorder()
    restarted = Scheduler({"backup": "0 2 * * *", "reconcile": "*/15 * * * *"}, state_file, after)
    assert sorted(restarted.run_pending(berlin(2026, 6, 13, 9, 7))) == ["backup", "reconcile"]
    assert restarted.run_pending(berlin(2026, 6, 13, 9, 8)) == []

    assert sorted(after.calls) == [("backup", berlin(2026, 6, 13, 2, 0)), ("reconcile", berlin(2026, 6, 13, 9, 0))]


@pytest.mark.fault('clock jump forward by days',
                   'each job fires once, not once per missed tick')
def test_a_clock_moved_forward_by_days_fires_each_job_once(state_file):
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *", "reconcile": "*/15 * * * *"}, state_file, ticks)
    scheduler.run_pending(berlin(2026, 6, 10, 1, 0))

    scheduler.run_pending(berlin(2026, 6, 20, 12, 1))

    assert sorted(ticks.names()) == ["backup", "reconcile"]


@pytest.mark.fault('clock moved back',
                   'ticks already fired never fire again')
def test_a_clock_moved_back_does_not_fire_again_for_times_already_fired(state_file):
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *", "reconcile": "*/15 * * * *"}, state_file, ticks)
    scheduler.run_pending(berlin(2026, 6, 10, 1, 50))
    walk(scheduler, berlin(2026, 6, 10, 1, 51), berlin(2026, 6, 10, 2, 31), timedelta(minutes=1))
    fired = len(ticks.calls)
    assert ticks.names().count("backup") == 1

    # The clock is set back by an hour: 01:31 .. 02:31 again.
    walk(scheduler, berlin(2026, 6, 10, 1, 31), berlin(2026, 6, 10, 2, 31), timedelta(minutes=1))
    assert len(ticks.calls) == fired

    # New times fire again as usual.
    walk(scheduler, berlin(2026, 6, 10, 2, 32), berlin(2026, 6, 11, 2, 1), timedelta(minutes=1))
    assert ticks.names().count("backup") == 2
    assert ticks.calls[fired] == ("reconcile", berlin(2026, 6, 10, 2, 45))


@pytest.mark.fault('clock jump: a last fire dated in the future',
                   'the stamp is forgotten (logged), the job waits for its next tick instead of years')
def test_a_last_fire_far_in_the_future_is_forgotten_instead_of_blocking_the_job(state_file, caplog):
    # The clock was wrong (year 2030) when the job last fired, and has been corrected since.
    ticks = Recorder()
    Scheduler({"backup": "0 2 * * *"}, state_file, ticks).run_pending(berlin(2030, 1, 1, 1, 0))
    Scheduler({"backup": "0 2 * * *"}, state_file, ticks).run_pending(berlin(2030, 1, 1, 2, 1))
    assert ticks.names() == ["backup"]

    scheduler = Scheduler({"backup": "0 2 * * *"}, state_file, ticks)
    with caplog.at_level(logging.WARNING, "ragflow_backup.scheduler"):
        assert scheduler.run_pending(berlin(2026, 6, 10, 9, 0)) == []
    assert "clock moved back" in caplog.text
    assert scheduler.run_pending(berlin(2026, 6, 11, 2, 0, 1)) == ["backup"]


@pytest.mark.fault('daylight-saving change: spring forward',
                   'a 02:00 job runs at 03:00, once')
def test_on_the_spring_forward_day_a_2am_job_fires_once(state_file):
    # Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:00 does not exist that day.
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *"}, state_file, ticks)
    walk(scheduler, berlin(2026, 3, 27, 12, 0), berlin(2026, 3, 30, 12, 0))

    days = [tick.date().isoformat() for _, tick in ticks.calls]
    assert days == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert ticks.calls[1][1].astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST


@pytest.mark.fault('daylight-saving change: fall back',
                   'a 02:00 job fires once although 02:00 happens twice')
def test_on_the_fall_back_day_a_2am_job_fires_once(state_file):
    # Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *", "half": "30 2 * * *"}, state_file, ticks)
    walk(scheduler, berlin(2026, 10, 24, 12, 0), berlin(2026, 10, 26, 12, 0))

    for job in ("backup", "half"):
        days = [tick.date().isoformat() for name, tick in ticks.calls if name == job]
        assert days == ["2026-10-25", "2026-10-26"], job


def test_an_every_15_minutes_job_never_fires_twice_for_the_same_wall_time_on_fall_back(state_file):
    ticks = Recorder()
    scheduler = Scheduler({"reconcile": "*/15 * * * *"}, state_file, ticks)
    walk(scheduler, berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 25, 5, 0), timedelta(minutes=1))

    walls = [tick.replace(tzinfo=None) for _, tick in ticks.calls]
    assert len(walls) == len(set(walls))
    assert walls == sorted(walls)
    # Before and after the repeated hour it keeps its rhythm.
    assert datetime(2026, 10, 25, 1, 45) in walls and datetime(2026, 10, 25, 3, 0) in walls


def test_a_failing_on_tick_is_logged_and_still_counts_as_fired(state_file, caplog):
    ticks = Recorder(fail={"backup"})
    scheduler = Scheduler({"backup": "0 2 * * *", "verify": "0 2 * * *"}, state_file, ticks)
    scheduler.run_pending(berlin(2026, 6, 10, 1, 0))

    with caplog.at_level(logging.ERROR, "ragflow_backup.scheduler"):
        assert sorted(scheduler.run_pending(berlin(2026, 6, 10, 2, 1))) == ["backup", "verify"]
    assert "backup" in caplog.text and "could not be queued" in caplog.text

    assert scheduler.run_pending(berlin(2026, 6, 10, 2, 2)) == []
    assert sorted(ticks.names()) == ["backup", "verify"]


def test_a_job_turned_off_never_fires_and_a_rescheduled_one_waits_for_its_new_tick(state_file):
    ticks = Recorder()
    Scheduler({"backup": "0 2 * * *", "drill": ""}, state_file, ticks).run_pending(berlin(2026, 6, 10, 1, 0))

    # Rescheduled to 01:00 while the agent was down: no surprise run at start-up.
    moved = Scheduler({"backup": "0 1 * * *", "drill": ""}, state_file, ticks)
    assert moved.run_pending(berlin(2026, 6, 12, 9, 0)) == []
    assert moved.run_pending(berlin(2026, 6, 13, 1, 0, 1)) == ["backup"]
    assert "drill" not in moved.next_ticks(berlin(2026, 6, 13, 2, 0))
    assert ticks.names() == ["backup"]


def test_an_unreadable_state_file_fires_nothing_and_is_replaced(state_file, caplog):
    state_file.parent.mkdir(parents=True)
    state_file.write_text("{not json")
    ticks = Recorder()
    scheduler = Scheduler({"backup": "0 2 * * *"}, state_file, ticks)

    with caplog.at_level(logging.WARNING, "ragflow_backup.scheduler"):
        assert scheduler.run_pending(berlin(2026, 6, 10, 9, 0)) == []
    assert "unreadable" in caplog.text
    assert json.loads(state_file.read_text())["jobs"]["backup"]["expression"] == "0 2 * * *"


def test_next_ticks_follow_the_local_zone_across_dst(state_file):
    scheduler = Scheduler({"backup": "0 2 * * *", "drill": "0 4 1 * *"}, state_file, Recorder())

    ticks = scheduler.next_ticks(berlin(2026, 3, 28, 12, 0))

    assert ticks["backup"].astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert ticks["drill"] == berlin(2026, 4, 1, 4, 0)
    assert ticks["drill"].utcoffset() == timedelta(hours=2)


def test_a_bad_cron_expression_is_refused_with_the_job_name(state_file):
    with pytest.raises(ValueError, match="verify"):
        Scheduler({"verify": "every day"}, state_file, Recorder())


def test_naive_times_are_refused(state_file):
    with pytest.raises(ValueError, match="timezone-aware"):
        Scheduler({"backup": "0 2 * * *"}, state_file, Recorder()).run_pending(datetime(2026, 6, 10, 2, 0))


def test_the_local_clock_is_timezone_aware():
    moment = now_local()
    assert moment.tzinfo is not None
    assert moment.utcoffset() == datetime.now(local_zone()).utcoffset()


def test_the_thread_fires_a_missed_tick_at_start_up_and_stops(state_file):
    Scheduler({"backup": "0 2 * * *"}, state_file, Recorder()).run_pending(berlin(2026, 6, 10, 1, 0))
    fired = threading.Event()
    calls: list[tuple[str, datetime]] = []

    def on_tick(name: str, tick: datetime) -> None:
        calls.append((name, tick))
        fired.set()

    scheduler = Scheduler({"backup": "0 2 * * *"}, state_file, on_tick, clock=lambda: berlin(2026, 6, 12, 8, 0))
    scheduler.start()
    try:
        assert fired.wait(10), "the scheduler thread did not fire the missed tick"
    finally:
        scheduler.stop()
    assert scheduler._thread is None
    assert calls == [("backup", berlin(2026, 6, 12, 2, 0))]
    assert scheduler.last_fired()["backup"] == berlin(2026, 6, 12, 2, 0)
