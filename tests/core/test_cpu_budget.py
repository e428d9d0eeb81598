"""The mirror's CPU budget on a simulated clock: a share of the machine over any minute, paid back by sleeping."""
from __future__ import annotations

from core.cpu_budget import CATCH_UP, SLOT_SECONDS, STEADY, WINDOW_SECONDS, CpuBudget


class Machine:
    """A wall clock and a thread's CPU clock that only move when told to (sleeping moves the wall clock)."""

    def __init__(self):
        self.wall, self.cpu, self.slept, self.longest_sleep = 0.0, 0.0, 0.0, 0.0
        self.spent: list[tuple[float, float]] = []  # (wall clock when a unit of work ended, its CPU seconds)

    def work(self, cpu_seconds: float, wall_seconds: float | None = None) -> None:
        self.cpu += cpu_seconds
        self.wall += cpu_seconds if wall_seconds is None else wall_seconds
        self.spent.append((self.wall, cpu_seconds))

    def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.slept += seconds
        self.longest_sleep = max(self.longest_sleep, seconds)

    def busiest_minute(self) -> float:
        """The most CPU spent by units ending within any WINDOW_SECONDS of wall time."""
        return max(sum(cpu for end, cpu in self.spent if last - WINDOW_SECONDS < end <= last)
                   for last, _ in self.spent)


def budget(machine: Machine, percent: float = 10, catch_up: float = 50) -> CpuBudget:
    return CpuBudget(percent, catch_up, cores=2, clock=lambda: machine.wall, cpu=lambda: machine.cpu,
                     sleep=machine.sleep)


SHARE = 0.2 * WINDOW_SECONDS  # 10 % of 2 cores over a minute: 12 CPU seconds


def test_no_minute_of_sustained_work_spends_more_than_the_share():
    machine = Machine()
    pacer = budget(machine)
    while machine.wall < 600:  # ten minutes of objects costing 0.05 CPU s each, as fast as they come
        with pacer.metered():
            machine.work(0.05)
    # At most the share plus the unit that found the window full, and no idling below it either.
    assert machine.busiest_minute() <= SHARE + 0.05 + 1e-9  # (float sums)
    assert 0.2 * machine.wall * 0.95 < machine.cpu <= 0.2 * machine.wall + SHARE
    assert machine.slept > 0.75 * machine.wall  # one thread: 20 % of its time working, the rest asleep


def test_work_inside_the_share_never_waits():
    machine = Machine()
    pacer = budget(machine)
    for _ in range(1000):
        with pacer.metered():
            machine.work(0.01, wall_seconds=0.1)  # 10 % of one core: 5 % of the machine
    assert machine.slept == 0


def test_a_burst_within_three_quarters_of_a_minutes_share_is_not_slowed():
    machine = Machine()
    pacer = budget(machine)
    for _ in range(890):  # 8.9 CPU s at full speed, in 8.9 s: three quarters of the minute's 12, minus a little
        with pacer.metered():
            machine.work(0.01)
    assert machine.slept == 0


def test_a_burst_beyond_it_goes_on_at_a_trickle_without_waiting_for_the_minute_and_a_quiet_minute_clears_the_window():
    machine = Machine()
    pacer = budget(machine)
    while machine.wall < 3 * WINDOW_SECONDS:
        with pacer.metered():
            machine.work(0.01)
    assert machine.slept > 0
    assert machine.longest_sleep < 1  # a trickle: never the wait for the oldest spending to leave the window
    assert machine.busiest_minute() <= SHARE + 0.01 + 1e-9
    machine.sleep(WINDOW_SECONDS)  # a quiet minute
    slept = machine.slept
    for _ in range(890):
        with pacer.metered():
            machine.work(0.01)
    assert machine.slept == slept  # the next burst goes at full speed again


def test_catch_up_uses_its_own_share_until_the_last_catch_up_ends_and_zero_means_unpaced():
    machine = Machine()
    pacer = budget(machine, catch_up=0)
    assert pacer.catching_up(True) == CATCH_UP
    assert pacer.catching_up(True) == CATCH_UP  # two reconciles overlap
    with pacer.metered():
        machine.work(30)
    assert machine.slept == 0  # unpaced
    assert pacer.catching_up(False) == CATCH_UP
    assert pacer.catching_up(False) == STEADY
    with pacer.metered():  # steady again, with an empty window: catch-up's use is no debt
        machine.work(8.5)
    assert machine.slept == 0
    with pacer.metered():
        machine.work(1)
    assert machine.slept > 0


def test_catch_up_is_paced_by_a_bucket_of_a_few_seconds_of_its_share():
    machine = Machine()
    pacer = budget(machine, catch_up=50)  # 1 CPU s per second, a bucket of 5
    pacer.catching_up(True)
    with pacer.metered():
        machine.work(7, wall_seconds=0)
    assert abs(machine.slept - (7 - 5) / 1.0) < 1e-9


def test_a_block_inside_another_is_charged_once():
    machine = Machine()
    pacer = budget(machine)
    with pacer.metered():
        with pacer.metered():
            machine.work(7)  # charged twice, 14 CPU s would exceed the minute's 12
    assert machine.slept == 0


def test_cpu_charged_by_a_thread_that_must_not_wait_is_slept_off_by_the_next_metered_work():
    machine = Machine()
    pacer = budget(machine)
    pacer.settle(wait=False)  # a listener's count starts
    machine.work(SHARE, wall_seconds=0)  # taking events in: the whole minute's share (no time passes)
    assert pacer.settle(wait=False) == 0 and machine.slept == 0  # the listener never waits
    with pacer.metered():
        machine.work(0.1, wall_seconds=0)  # a copy: waits until the window has room for what it could not hold
    assert WINDOW_SECONDS < machine.slept <= WINDOW_SECONDS + SLOT_SECONDS  # sooner than the trickle would pay it


def test_steady_events_inside_the_share_never_queue_even_after_the_window_has_filled_once():
    machine = Machine()
    pacer = budget(machine)
    pacer.settle(wait=False)  # the listener's count starts
    lag = 0.0
    for event in range(1800):  # three minutes of ten events a second, at 90 % of the share
        machine.sleep(max(0.0, event * 0.1 - machine.wall))  # idle until the event arrives
        machine.work(0.002, wall_seconds=0)  # the listener takes it in: charged, never waits
        pacer.settle(wait=False)
        with pacer.metered():
            machine.work(0.016, wall_seconds=0.01)  # its copy
        lag = max(lag, machine.wall - event * 0.1)
    assert lag < 0.1  # each event is copied before the next arrives: no queue behind a full window
    assert machine.busiest_minute() <= SHARE


def test_settle_charges_only_what_metered_blocks_of_its_thread_did_not():
    machine = Machine()
    pacer = budget(machine)
    pacer.forget()
    machine.work(0.5, wall_seconds=0)  # Dramatiq decoding a message
    with pacer.metered():
        machine.work(8.0, wall_seconds=0)  # the copy, charged by its block
    pacer.settle()  # charges the 0.5 s outside the block only: 8.5 of the window's 8.9
    assert machine.slept == 0
    with pacer.metered():
        machine.work(0.6, wall_seconds=0)  # 9.1: the 0.5 was charged
    assert machine.slept > 0
