"""The status page, served by the real metrics server and looked at in a real headless Chromium.

Screenshots are kept under tests/artifacts/ (not committed); with RAGFLOW_BACKUP_SCREENSHOT=docs/console.png
the first test also writes the README's copy there.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.console.history import HistoryStore, Sample
from agent.console.page import StatusPage
from agent.health import collect
from agent.metrics import MetricsServer
from core.atomic import append_line
from core.audit import audit_path
from core.config import Settings
from core.mirror_store import Entry, MirrorStore
from core.points import Storage
from tests.agent.chromium import Chromium
from tests.agent.test_metrics import make_point

UTC = timezone.utc
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SECRET = "hunter2-very-secret-value"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    chromium = Chromium(1280, 2000)
    yield chromium
    chromium.close()


@pytest.fixture
def serve_page() -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def start(settings: Settings, storage: Storage, **probes) -> MetricsServer:
        server = MetricsServer("127.0.0.1", 0, lambda: collect(settings, storage, **probes),
                               page=StatusPage(settings, storage))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def settings_for(root: Path, **sections) -> Settings:
    return Settings.model_validate({"storage_root": str(root), "minio": {"enabled": True}, "redis": {"enabled": True}, **sections})


def seeded_storage(root: Path) -> Storage:
    """A week of points, a drill and audit lines, and a day of one-minute samples in the history."""
    storage = Storage(root).prepare()
    now = datetime.now(UTC)
    for days in range(6, 0, -1):
        point = make_point(storage, now - timedelta(days=days - 1, hours=2), mysql="ok", search="ok", redis="ok")
        for index, record in enumerate(point.manifest().components.values()):  # sizes and durations that vary
            grown = [artifact.model_copy(update={"bytes": (3 - index) * 40_000_000 + (7 - days) * 2_500_000})
                     for artifact in record.artifacts]
            point.save_record(record.model_copy(update={
                "artifacts": grown, "started_at": record.finished_at - timedelta(seconds=(3 - index) * 50 + days * 4)}))
    for when, action, result, extra in ((now - timedelta(days=3), "drill", "ok", {"seconds": 612.4, "point": "daily/x"}),
                                        (now - timedelta(hours=5), "backup", "complete", {}),
                                        (now - timedelta(hours=4), "prune", "done", {})):
        append_line(audit_path(storage.root), json.dumps(
            {"time": when.isoformat(), "actor": "agent:ragflow-backup", "action": action, "target": "daily",
             "result": result, **extra}))
    store = HistoryStore(storage.root)
    start = time.time() - 7 * 86400
    for minute in range(0, 7 * 1440, 30):
        at = start + minute * 60
        store.add_sample(Sample(at, mirror_lag=(minute % 240) / 4, queue_depth=minute % 7,
                                storage_bytes=6 * 2**30 + minute * 120_000, fs_used_ratio=0.4,
                                fs_free_bytes=40 * 2**30 - minute * 120_000))
    store.add_runs(storage)
    seed_mirror(settings_for(storage.root))
    return storage


def seed_mirror(settings: Settings) -> None:
    """A mirrored object overwritten once: its kept version opens a point-in-time window three days back."""
    mirror = MirrorStore(settings.storage_root / settings.minio.mirror_dir)
    try:
        at = datetime.now(UTC) - timedelta(days=3)
        for n in range(2):
            temp = mirror.temp_file("ragflow")
            temp.write_bytes(b"version %d" % n)
            mirror.commit("ragflow", "kb/doc.txt", temp, Entry(size=9, etag=f"etag{n}"), at + timedelta(hours=n))
    finally:
        mirror.close()


def probes() -> dict:
    mirror = {"objects": 1234, "bytes": 5 * 2**30, "versions": 56, "version_bytes": 2**28, "lag_seconds": 3.0,
              "last_reconcile": {"time": "2026-11-29T02:00:00+00:00", "complete": True},
              "pitr_since": "2026-11-27T08:30:00+00:00", "pitr_pruned": True}
    return {"queue_depth": lambda: {"mirror": 2, "backup": 0}, "mirror_stats": lambda: mirror}


def open_page(browser: Chromium, server: MetricsServer) -> None:
    browser.open(f"http://127.0.0.1:{server.port}/")


def component_states(browser: Chromium) -> dict[str, str]:
    return browser.evaluate("Object.fromEntries([...document.querySelectorAll('#components tr[data-component]')]"
                            ".map(row => [row.dataset.component, row.dataset.state]))")


def test_the_page_shows_every_component_and_plot_with_no_console_error(tmp_path, browser, serve_page):
    storage = seeded_storage(tmp_path / "backups")
    server = serve_page(settings_for(storage.root), storage, **probes())

    open_page(browser, server)

    assert browser.console_errors() == []
    assert component_states(browser) == {"mysql": "ok", "search": "ok", "redis": "ok"}
    assert browser.evaluate("document.querySelector('#overall').textContent") == "all good"
    charts = browser.evaluate("[...document.querySelectorAll('#charts img')].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert [alt for alt, _ in charts] == ["Backup size per component", "Backup duration per component",
                                          "Mirror lag, last 24 h", "Queue depth, last 24 h", "Storage used, with forecast"]
    assert all(drawn for _, drawn in charts), charts
    for part in ("#timeline", "#storage", "#mirror", "#queues", "#drills", "#points", "#audit"):
        assert browser.evaluate(f"document.querySelector('{part}') !== null"), part
    assert browser.evaluate("document.querySelectorAll('#points tr').length") == 7  # a head and six points
    assert "within 30 min" in browser.evaluate("document.querySelector('#drills').textContent")
    assert "about" in browser.evaluate("document.querySelector('#storage').textContent")  # days until full
    # The window the mirror's own figures give (the version budget's horizon), the same as status shows.
    assert "any moment since 2026-11-27 08:30 UTC (older versions dropped" in browser.evaluate(
        "document.querySelector('#mirror').textContent")
    shot = browser.screenshot(ARTIFACTS / "console.png")
    if os.environ.get("RAGFLOW_BACKUP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["RAGFLOW_BACKUP_SCREENSHOT"])


def test_a_failing_component_turns_red_with_its_message_masked_and_escaped(tmp_path, browser, serve_page):
    storage = seeded_storage(tmp_path / "backups")
    point = make_point(storage, datetime.now(UTC), mysql="ok", search="ok", redis="failed")
    manifest = point.manifest()
    record = manifest.components["redis"].model_copy(
        update={"error": f'<img src=x id=injected> redis://:{SECRET}@cache:6379 password={SECRET}'})
    point.save_record(record)
    server = serve_page(settings_for(storage.root), storage, **probes())

    open_page(browser, server)

    assert browser.console_errors() == []
    assert component_states(browser)["redis"] == "red"
    assert component_states(browser)["mysql"] == "ok"
    assert browser.evaluate("document.querySelector('#overall').textContent") == "action needed"
    message = browser.evaluate("document.querySelector('tr[data-component=redis] .message').textContent")
    assert "<img src=x id=injected>" in message  # shown as text
    assert browser.evaluate("document.querySelector('#injected')") is None  # never as markup
    assert SECRET not in browser.evaluate("document.documentElement.outerHTML")
    browser.screenshot(ARTIFACTS / "console-failing.png")


def test_the_page_works_with_no_points_no_history_and_components_off(tmp_path, browser, serve_page):
    storage = Storage(tmp_path / "backups").prepare()
    settings = settings_for(storage.root, redis={"enabled": False}, minio={"enabled": False})
    server = serve_page(settings, storage)

    open_page(browser, server)

    assert browser.console_errors() == []
    assert component_states(browser) == {"mysql": "red", "search": "red"}  # no good backup yet
    assert "No backup point yet" in browser.evaluate("document.querySelector('#points').textContent")
    assert "Off" in browser.evaluate("document.querySelector('#mirror').textContent")
    assert browser.evaluate("[...document.querySelectorAll('#charts .nodata')].map(d => d.title)") == [
        "Backup size per component", "Backup duration per component", "Mirror lag, last 24 h",
        "Queue depth, last 24 h", "Storage used, with forecast"]


def test_pins_are_in_the_points_table_and_a_prepared_upgrade_with_its_way_back_in_the_header(tmp_path, browser,
                                                                                            serve_page):
    storage = seeded_storage(tmp_path / "backups")
    oldest, *_, newest = sorted(storage.points(), key=lambda point: point.manifest().created_at)
    oldest.pin("before-migration")
    newest.pin("pre-upgrade-v0.27.0-20261129-020000")
    server = serve_page(settings_for(storage.root), storage, **probes())

    open_page(browser, server)

    assert browser.console_errors() == []
    pins = browser.evaluate("[...document.querySelectorAll('#points td.pin')].map(cell => cell.textContent)")
    assert sorted(pin for pin in pins if pin) == ["before-migration", "pre-upgrade-v0.27.0-20261129-020000"]
    header = browser.evaluate("document.querySelector('#upgrade').textContent")
    assert header.startswith("upgrade prepared ") and "(pre-upgrade-v0.27.0-20261129-020000)" in header
    assert header.endswith(f"way back = ragflow-backup upgrade rollback --point {newest.ref}")


def test_without_a_prepared_upgrade_the_header_says_nothing_of_one(tmp_path, browser, serve_page):
    storage = seeded_storage(tmp_path / "backups")
    server = serve_page(settings_for(storage.root), storage, **probes())

    open_page(browser, server)

    assert browser.evaluate("document.querySelector('#upgrade')") is None
