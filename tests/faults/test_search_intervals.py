"""Interval search snapshots against a point's backup (both take the search lock, core/locks.py) and when they
keep failing: the lock taken by another real process orders every step; the test bed's Elasticsearch."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from actors.search import interval
from agent.health import collect
from agent.metrics import report_metrics
from core.config import NotifySettings, SearchSettings, Settings
from core.notify import Notifier
from core.points import Storage
from testbed.polling import wait_for
from tests.actors.search.test_backup import search_cfg, seeded  # noqa: F401 - fixtures used by name
from tests.faults.harness import cli, kill, start_cli, text_of, write_config
from tests.faults.test_kills import base_config, slow_es_repository  # noqa: F401 - fixture used by name

log = logging.getLogger("test.faults.search_intervals")
ELASTICSEARCH = pytest.mark.parametrize("search_settings", ["elasticsearch"], indirect=True)


def search_config(tmp_path: Path, redis_url: str, inbox, cfg: SearchSettings, **search) -> Path:
    section = {**cfg.model_dump(mode="json"), "password": cfg.password.get_secret_value(), **search}
    return write_config(tmp_path / "config.yml", base_config(tmp_path, redis_url, inbox, search=section))


@pytest.fixture
def interval_holder(tmp_path) -> Iterator[subprocess.Popen]:
    """Another process holding the search lock as an interval snapshot does (actors/search/interval.py's
    holding_lock), until its stdin is closed."""
    code = ("import sys\nfrom pathlib import Path\nfrom actors.search.interval import holding_lock\n"
            "from core.points import Storage\n"
            f"with holding_lock(Storage(Path({str(tmp_path / 'backups')!r})).prepare()):\n"
            "    print('held', flush=True)\n    sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held", "the holder took the search lock"
        yield child
    finally:
        child.stdin.close()
        child.wait(30)


def point_log(root: Path) -> str:
    points = Storage(root).points("daily")
    return text_of(points[0].folder / "backup.log") if points else ""


@ELASTICSEARCH
@pytest.mark.fault("a point's backup starts while an interval search snapshot holds the search lock",
                   "the backup says in the point's log that it waits for the holder (pid, 'an interval search "
                   "snapshot'), up to search.lock_wait_seconds; once the lock is let go it takes the point's "
                   "snapshot and the point is complete")
def test_a_backup_waits_for_an_interval_snapshot_holding_the_lock_then_completes(
        search_cfg, seeded, tmp_path, redis_url, inbox, interval_holder):
    root = tmp_path / "backups"
    config = search_config(tmp_path, redis_url, inbox, search_cfg)
    backup = start_cli(config, tmp_path / "backup.log", "backup", "--local", "-C", "search")
    try:
        said = wait_for(lambda: "waiting up to 600s" in point_log(root) and point_log(root), "the backup to wait", 120)
        assert f"(pid {interval_holder.pid}) - an interval search snapshot begun" in said
        [point] = Storage(root).points("daily")
        assert "search" not in point.manifest().components  # nothing taken while the lock is held
        interval_holder.stdin.close()  # the interval snapshot ends
        assert backup.wait(300) == 0, text_of(tmp_path / "backup.log")
    finally:
        kill(backup)
    manifest = point.manifest()
    assert manifest.status == "complete" and manifest.components["search"].counts == seeded


@ELASTICSEARCH
@pytest.mark.fault("an interval search snapshot holds the search lock longer than search.lock_wait_seconds",
                   "the point's backup records search as failed naming the holder's pid, that it is an interval "
                   "snapshot, and search.lock_wait_seconds to raise; `backup --local` exits non-zero")
def test_a_backup_that_waited_its_time_for_the_search_lock_fails_naming_the_holder(
        search_cfg, seeded, tmp_path, redis_url, inbox, interval_holder):
    config = search_config(tmp_path, redis_url, inbox, search_cfg, lock_wait_seconds=1)

    done = cli(config, "backup", "--local", "-C", "search")

    assert done.returncode != 0
    [point] = Storage(tmp_path / "backups").points("daily")
    error = point.manifest().components["search"].error
    assert point.manifest().components["search"].status == "failed"
    assert f"already running (pid {interval_holder.pid}) - an interval search snapshot begun" in error
    assert "after waiting 1s" in error and "raise search.lock_wait_seconds" in error


@pytest.mark.fault("an interval search snapshot's tick comes while a point's backup holds the search lock",
                   "it is skipped (nothing asked of the server) and `status` says when, who held the lock, and "
                   "that the point's own snapshot covers that moment; the point completes")
def test_an_interval_snapshot_skips_while_a_backup_holds_the_lock_and_status_says_so(
        slow_es_repository, tmp_path, redis_url, inbox):  # noqa: F811 - the fixture imported above
    root = tmp_path / "backups"
    config = search_config(tmp_path, redis_url, inbox, slow_es_repository)
    settings = Settings(storage_root=root, search=slow_es_repository)
    lock = Storage(root).component_lock("search")
    backup = start_cli(config, tmp_path / "backup.log", "backup", "--local", "-C", "search")
    try:
        # Caught holding the search lock (it notes its point there), then hung there by SIGSTOP.
        wait_for(lambda: lock.is_file() and "the backup into" in lock.read_text(), "the backup's search lock",
                 timeout=120, interval=0.001)
        os.killpg(backup.pid, signal.SIGSTOP)
        try:
            assert interval.take(settings, log) is None
            status = cli(config, "status")
            as_json = cli(config, "status", "--json")
        finally:
            os.killpg(backup.pid, signal.SIGCONT)
        assert backup.wait(300) == 0, text_of(tmp_path / "backup.log")
    finally:
        kill(backup)
    text = " ".join(status.stdout.split())
    assert status.returncode == 0, status.stderr
    assert f"last skipped {datetime.now(timezone.utc):%Y-%m-%d}" in text
    assert f"a search backup is already running (pid {backup.pid}) - the backup into daily/" in text
    assert "the point's own search snapshot covers that moment" in text
    skipped = json.loads(as_json.stdout)["search_intervals"]["last_skipped"]
    assert f"(pid {backup.pid}) - the backup into daily/" in skipped["reason"]
    assert interval.interval_snapshots(settings) == []
    assert Storage(root).points("daily")[0].manifest().status == "complete"


def closed_port() -> int:
    """A local port nobody listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alerts_sent(settings: Settings) -> list[str]:
    """What the agent's alert loop sends in one round (agent/agent.py: _alert_loop)."""
    notifier = Notifier(settings.notify, settings.layout.notify_state)
    report = collect(settings, Storage(settings.storage_root).prepare())
    return [alert.title for alert in report.alerts(settings)
            if notifier.notify(alert.key, alert.level, alert.title, alert.body)]


def metric(settings: Settings, name: str) -> float:
    report = collect(settings, Storage(settings.storage_root).prepare())
    return next(sample.value for family in report_metrics(report) for sample in family.samples if sample.name == name)


@ELASTICSEARCH
@pytest.mark.fault("interval search snapshots fail search.interval_alert_failures times in a row (server unreachable)",
                   "an alert names the count and the last error; the metrics count the failures; the alert clears "
                   "once one succeeds")
def test_interval_snapshots_failing_in_a_row_raise_an_alert_that_clears_when_one_succeeds(
        search_cfg, seeded, tmp_path, inbox):
    # storage_threshold 1.0: how full the host disk is must not add an alert to the ones counted here
    notify = NotifySettings(urls=[inbox.url], min_interval_seconds=0, rpo_hours={}, storage_threshold=1.0)
    good = Settings(storage_root=tmp_path / "backups", notify=notify,
                    search=search_cfg.model_copy(update={"interval_alert_failures": 2}))
    down = good.model_copy(update={"search": good.search.model_copy(update={"url": f"http://127.0.0.1:{closed_port()}"})})

    for _ in range(2):
        with pytest.raises(Exception, match="127.0.0.1"):
            interval.take(down, log)

    assert alerts_sent(good) == ["ragflow-backup: 2 interval search snapshots failed in a row"]
    assert "127.0.0.1" in inbox.text()
    assert metric(good, "ragflow_backup_search_interval_failures_total") == 2
    assert metric(good, "ragflow_backup_search_interval_failures_in_a_row") == 2
    assert interval.take(good, log) is not None
    assert alerts_sent(good) == []  # recovered: the agent's loop sends "back to normal" for health: keys
    assert metric(good, "ragflow_backup_search_interval_failures_in_a_row") == 0
    assert metric(good, "ragflow_backup_search_interval_failures_total") == 2


@ELASTICSEARCH
@pytest.mark.fault("the newest interval search snapshot (and point) is older than twice search.snapshot_interval_minutes",
                   "a warning alert says since when no search snapshot was taken and what to look at")
def test_an_interval_snapshot_older_than_twice_the_interval_raises_an_alert(search_cfg, seeded, tmp_path, inbox):
    settings = Settings(storage_root=tmp_path / "backups", search=search_cfg,
                        notify=NotifySettings(urls=[inbox.url], min_interval_seconds=0, rpo_hours={}, storage_threshold=1.0))
    taken = interval.take(settings, log, now=datetime.now(timezone.utc) - timedelta(hours=3))

    assert taken is not None
    assert alerts_sent(settings) == ["ragflow-backup: the newest search snapshot is 3.0 h old"]
    assert metric(settings, "ragflow_backup_search_interval_age_seconds") >= 3 * 3600
