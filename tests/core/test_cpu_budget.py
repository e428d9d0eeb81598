"""The mirror's CPU budget on a simulated clock: a share of the machine, paid back by sleeping."""
from __future__ import annotations

from core.cpu_budget import CATCH_UP, STEADY, CpuBudget


class Machine:
    """A wall clock and a thread's CPU clock that only move when told to (sleeping moves the wall clock)."""

    def __init__(self):
        self.wall, self.cpu, self.slept = 0.0, 0.0, 0.0

    def work(self, cpu_seconds: float, wall_seconds: float | None = None) -> None:
        self.cpu += cpu_seconds
        self.wall += cpu_seconds if wall_seconds is None else wall_seconds

    def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.slept += seconds


def budget(machine: Machine, percent: float = 10, catch_up: float = 50) -> CpuBudget:
    return CpuBudget(percent, catch_up, cores=2, clock=lambda: machine.wall, cpu=lambda: machine.cpu,
                     sleep=machine.sleep)


def test_work_beyond_the_share_is_paid_back_by_sleeping_so_a_minute_averages_inside_it():
    machine = Machine()
    pacer = budget(machine)  # 10 % of 2 cores: 0.2 CPU seconds per second
    while machine.wall < 600:  # ten minutes of objects costing 0.05 CPU s each, as fast as they come
        with pacer.metered():
            machine.work(0.05)
    # At most the share of the wall time plus one bucket (5 s of the share), and not much less.
    assert 0.2 * machine.wall * 0.95 < machine.cpu <= 0.2 * machine.wall + 1.0 + 0.05
    assert machine.slept > 0.75 * machine.wall  # one thread: 20 % of its time working, the rest asleep


def test_work_inside_the_share_never_waits():
    machine = Machine()
    pacer = budget(machine)
    for _ in range(1000):
        with pacer.metered():
            machine.work(0.01, wall_seconds=0.1)  # 10 % of one core: 5 % of the machine
    assert machine.slept == 0


def test_a_burst_of_a_few_seconds_is_not_slowed():
    machine = Machine()
    pacer = budget(machine)
    with pacer.metered():
        machine.work(0.9)  # within the bucket (5 s of the share: 1 CPU second)
    assert machine.slept == 0


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
    with pacer.metered():  # steady again, with a full bucket: catch-up's use is no debt
        machine.work(0.5)
    assert machine.slept == 0
    with pacer.metered():
        machine.work(3)
    assert machine.slept > 0


def test_a_block_inside_another_is_charged_once():
    machine = Machine()
    pacer = budget(machine)
    with pacer.metered():
        with pacer.metered():
            machine.work(1.5)
    assert abs(machine.slept - (1.5 - 1.0) / 0.2) < 1e-9  # 0.5 CPU s of debt at 0.2 CPU s per second


def test_cpu_charged_by_a_thread_that_must_not_wait_is_slept_off_by_the_next_metered_work():
    machine = Machine()
    pacer = budget(machine)
    pacer.settle(wait=False)  # a listener's count starts
    machine.work(3.0, wall_seconds=0)  # taking events in (no time passes: exact figures)
    assert pacer.settle(wait=False) == 0 and machine.slept == 0  # the listener never waits
    with pacer.metered():
        machine.work(0.1, wall_seconds=0)  # a copy: pays for both
    assert abs(machine.slept - (3.1 - 1.0) / 0.2) < 1e-9


def test_settle_charges_only_what_metered_blocks_of_its_thread_did_not():
    machine = Machine()
    pacer = budget(machine)
    pacer.forget()
    machine.work(0.5, wall_seconds=0)  # Dramatiq decoding a message
    with pacer.metered():
        machine.work(1.0, wall_seconds=0)  # the copy, charged by its block (empties the bucket exactly: no sleep)
    assert machine.slept == 0
    pacer.settle()  # charges the 0.5 s outside the block only
    assert abs(machine.slept - 0.5 / 0.2) < 1e-9
