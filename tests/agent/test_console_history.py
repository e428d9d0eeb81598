"""The console's history: bounded, kept across restarts, and distrusted when read back from the storage root."""
from __future__ import annotations

import os
import shutil
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.console import history
from agent.console.history import HistoryStore, Sample
from agent.console.view import forecast
from core.points import Storage
from tests.agent.test_metrics import make_point

UTC = timezone.utc


def sample(at: float, used: int = 1000) -> Sample:
    return Sample(at, mirror_lag=1.0, queue_depth=2, storage_bytes=used, fs_used_ratio=0.5, fs_free_bytes=10**9)


def test_samples_survive_a_new_store_on_the_same_root(tmp_path):
    now = time.time()
    HistoryStore(tmp_path).add_sample(sample(now - 60))
    HistoryStore(tmp_path).add_sample(sample(now))

    assert [s.at for s in HistoryStore(tmp_path).samples(now - 3600)] == [now - 60, now]


def test_samples_are_pruned_by_age_and_by_count(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path)
    now = time.time()
    store.add_sample(sample(now - (history.KEEP_SAMPLE_DAYS + 1) * 86400))
    monkeypatch.setattr(history, "MAX_SAMPLES", 5)
    for minute in range(8):
        store.add_sample(sample(now - 3600 + minute * 60))

    kept = store.samples(0)

    assert [s.at for s in kept] == [now - 3600 + minute * 60 for minute in range(3, 8)]


def test_runs_are_copied_from_manifests_and_outlive_the_points(tmp_path):
    storage = Storage(tmp_path / "backups").prepare()
    at = datetime.now(UTC) - timedelta(hours=3)
    point = make_point(storage, at, mysql="ok", search="failed")
    store = HistoryStore(storage.root)

    assert store.add_runs(storage) == 2
    assert store.add_runs(storage) == 0  # already kept
    shutil.rmtree(point.folder)

    runs = {run.component: run for run in store.runs(0)}
    assert runs["mysql"].status == "ok" and runs["mysql"].bytes == 2048 and runs["mysql"].point == point.ref
    assert runs["search"].status == "failed"


def test_hostile_rows_written_into_the_file_are_skipped_on_read(tmp_path):
    store = HistoryStore(tmp_path)
    now = time.time()
    store.add_sample(sample(now))
    with sqlite3.connect(store.path) as conn:
        conn.execute("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", (now - 10, "x", -5, float("inf"), 7.0, "big"))
        conn.execute("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", ("yesterday", 1, 1, 1, 0.1, 1))
        conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)", [
            ("daily/ok", "mysql", now, 3.0, 100, "ok"),
            ("daily/<script>", "mysql", now, 3.0, 100, "ok"),
            ("daily/neg", "mysql", now, -3.0, 100, "ok"),
            ("daily/nan", "mysql", now, "NaN", 100, "ok"),
            ("daily/str", "mysql", now, 3.0, "lots", "ok")])

    samples = store.samples(0)
    runs = store.runs(0)

    assert [(s.mirror_lag, s.queue_depth, s.storage_bytes, s.fs_used_ratio, s.fs_free_bytes) for s in samples] == [
        (None, None, None, None, None), (1.0, 2, 1000, 0.5, 10**9)]
    assert [run.point for run in runs] == ["daily/ok"]


def test_a_history_file_replaced_by_a_symlink_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere.sqlite"
    (tmp_path / "other").mkdir()
    HistoryStore(tmp_path / "other").add_sample(sample(time.time()))
    shutil.copyfile(tmp_path / "other" / "state" / history.HISTORY_FILE, elsewhere)
    (tmp_path / "root" / "state").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / "root" / "state" / history.HISTORY_FILE)

    with pytest.raises(OSError, match="symbolic link"):
        HistoryStore(tmp_path / "root").samples(0)
    with pytest.raises(OSError, match="symbolic link"):
        HistoryStore(tmp_path / "root").add_sample(sample(time.time()))


def test_the_forecast_says_when_growing_storage_fills_the_free_space():
    now = time.time()
    growing = [Sample(now - day * 86400, None, None, 10 * 2**30 - day * 2**30, 0.5, 20 * 2**30) for day in range(5, -1, -1)]

    days, line = forecast(growing, now)

    assert days == pytest.approx(20)  # 20 GiB free at 1 GiB a day
    assert line[0] == (growing[-1].at, pytest.approx(10 * 2**30))
    shrinking = [Sample(now - day * 86400, None, None, 2**30 + day, 0.5, 2**30) for day in range(5, -1, -1)]
    assert forecast(shrinking, now) == (None, [])


def test_a_long_history_is_read_back_thinned_to_the_asked_number_of_rows(tmp_path):
    store = HistoryStore(tmp_path)
    now = time.time()
    for minute in range(100):
        store.add_sample(sample(now - 6000 + minute * 60))

    thinned = store.samples(0, limit=10)

    assert len(thinned) == 10 and thinned[0].at == now - 6000
    assert [s.at for s in thinned] == sorted(s.at for s in thinned)
