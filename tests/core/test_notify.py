"""Notifications: real Apprise deliveries to a local HTTP server (json:// and form://), no internet."""
from __future__ import annotations

import logging
import socket
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import SecretStr

from core.config import NotifySettings
from core.notify import Notifier, redact
from testbed.webhook import Inbox, receiving


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with receiving() as box:
        yield box


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def notifier_for(tmp_path, urls: list[str], clock: Clock | None = None, **options) -> Notifier:
    settings = NotifySettings(urls=[SecretStr(url) for url in urls], **options)
    return Notifier(settings, tmp_path / "state" / "notify.json", clock=clock or Clock())


def test_a_failure_is_delivered_to_every_apprise_url(tmp_path, inbox):
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook", f"form://127.0.0.1:{inbox.port}/form"])

    assert notifier.failure("mysql", "mysql backup failed", "OperationalError: access denied") is True

    assert sorted(post["path"] for post in inbox.posts) == ["/form", "/hook"]
    for body in inbox.bodies():
        assert body["title"] == "mysql backup failed"
        assert body["message"] == "OperationalError: access denied"
        assert body["type"] == "failure"
    assert stat.S_IMODE((tmp_path / "state" / "notify.json").stat().st_mode) == 0o600


def test_the_same_failure_is_sent_at_most_once_per_interval(tmp_path, inbox):
    clock = Clock()
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook"], clock, min_interval_seconds=3600)

    assert notifier.failure("mysql", "mysql failed", "1") is True
    clock.advance(minutes=59)
    assert notifier.failure("mysql", "mysql failed", "2") is False
    assert notifier.failure("search", "search failed", "3") is True  # another key is not limited
    assert notifier.notify("mysql", "warning", "mysql slow", "4") is True  # nor another level
    clock.advance(minutes=2)
    assert notifier.failure("mysql", "mysql failed", "5") is True

    assert [body["message"] for body in inbox.bodies()] == ["1", "3", "4", "5"]


@pytest.mark.fault('clock moved back: notifications',
                   'an alert is neither repeated nor silenced for years')
def test_a_clock_moved_back_neither_repeats_an_alert_nor_silences_it_for_years(tmp_path, inbox):
    clock = Clock()
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook"], clock, min_interval_seconds=3600)
    assert notifier.failure("mysql", "mysql failed", "sent") is True

    clock.advance(minutes=-30)
    assert notifier.failure("mysql", "mysql failed", "too soon") is False
    clock.advance(days=-365)  # the first send happened under a clock a year ahead
    assert notifier.failure("mysql", "mysql failed", "sent again") is True

    assert [body["message"] for body in inbox.bodies()] == ["sent", "sent again"]


def test_the_rate_limit_survives_a_restart(tmp_path, inbox):
    clock = Clock()
    url = f"json://127.0.0.1:{inbox.port}/hook"
    assert notifier_for(tmp_path, [url], clock).failure("mysql", "mysql failed", "first") is True

    restarted = notifier_for(tmp_path, [url], clock)
    assert restarted.failure("mysql", "mysql failed", "again") is False
    assert restarted.open_failures() == ["mysql"]
    assert len(inbox.posts) == 1


def test_a_recovery_is_sent_only_after_a_failure_and_only_once(tmp_path, inbox):
    clock = Clock()
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook"], clock)

    assert notifier.recovered("mysql", "mysql is back") is False  # nothing was wrong as far as anyone knows
    assert notifier.failure("mysql", "mysql failed", "boom") is True
    clock.advance(minutes=5)
    assert notifier.recovered("mysql", "mysql is back", "the backup succeeded") is True
    assert notifier.recovered("mysql", "mysql is back", "the backup succeeded") is False

    assert [(b["type"], b["message"]) for b in inbox.bodies()] == [("failure", "boom"), ("success", "the backup succeeded")]
    assert notifier.open_failures() == []


def test_a_flapping_service_costs_one_failure_and_one_recovery_per_interval(tmp_path, inbox):
    clock = Clock()
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook"], clock, min_interval_seconds=3600)

    for _ in range(10):  # down and up every 2 minutes
        notifier.failure("redis", "redis down", "refused")
        clock.advance(minutes=1)
        notifier.recovered("redis", "redis back")
        clock.advance(minutes=1)

    assert [b["type"] for b in inbox.bodies()] == ["failure", "success"]


def test_url_passwords_never_reach_a_notification(tmp_path, inbox):
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook"])

    notifier.failure("broker", "cannot reach redis://:s3cr3t@127.0.0.1:6379/2",
                     "ConnectionError to mysql://root:hunter2@db:3306/ragdb and http://u:p%40ss@x/y")

    sent = inbox.posts[0]["data"].decode()
    assert "s3cr3t" not in sent and "hunter2" not in sent and "p%40ss" not in sent
    body = inbox.bodies()[0]
    assert body["title"] == "cannot reach redis://:***@127.0.0.1:6379/2"
    # (a database name shorter than any secret remembered by value: earlier tests may have loaded "rag_flow")
    assert "mysql://root:***@db:3306/ragdb" in body["message"]
    assert redact("see https://example.org/a:b@c and https://host:8080/x") == "see https://example.org/a:b@c and https://host:8080/x"


def test_an_unreachable_target_returns_false_logs_and_is_tried_again_next_time(tmp_path, inbox, caplog):
    dead = f"json://hook:topsecret@127.0.0.1:{closed_port()}/hook"
    notifier = notifier_for(tmp_path, [dead])

    with caplog.at_level(logging.INFO):
        assert notifier.failure("mysql", "mysql failed", "boom") is False
    assert "target #1 (json://...)" in caplog.text
    assert "topsecret" not in caplog.text
    assert notifier.open_failures() == []

    # Once a working target is configured the same failure goes out: the dead send was not counted.
    working = notifier_for(tmp_path, [dead, f"json://127.0.0.1:{inbox.port}/hook"])
    assert working.failure("mysql", "mysql failed", "boom") is True
    assert len(inbox.posts) == 1


def test_tokens_in_target_urls_stay_out_of_the_logs_even_at_debug_level(tmp_path, inbox, caplog):
    notifier = notifier_for(tmp_path, [f"json://127.0.0.1:{inbox.port}/hook/verysecrettoken"])

    with caplog.at_level(logging.DEBUG):
        assert notifier.failure("mysql", "mysql failed", "boom") is True
    assert inbox.posts[0]["path"] == "/hook/verysecrettoken"
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("apprise", "ragflow_backup")]
    assert ours and not any("verysecrettoken" in line for line in ours)


def test_an_invalid_apprise_url_is_reported_without_its_secret(tmp_path, caplog):
    # Apprise's own parse errors quote such URLs whole (a bot token in the path); they are muted.
    notifier = notifier_for(tmp_path, ["nonsense://token:verysecret@host", "tgram://verysecretbottoken/"])

    with caplog.at_level(logging.DEBUG):
        assert notifier.failure("mysql", "mysql failed", "boom") is False
    assert "target #1 (nonsense://...) is not a valid Apprise URL" in caplog.text
    assert "target #2 (tgram://...) is not a valid Apprise URL" in caplog.text
    assert "verysecret" not in caplog.text


def test_desktop_notifications_without_a_desktop_do_not_raise(tmp_path, inbox, caplog):
    alone = notifier_for(tmp_path / "a", [], desktop=True)
    with caplog.at_level(logging.WARNING, "ragflow_backup.notify"):
        assert alone.failure("mysql", "mysql failed", "boom") is False
    assert "desktop" in caplog.text

    with_url = notifier_for(tmp_path / "b", [f"json://127.0.0.1:{inbox.port}/hook"], desktop=True)
    assert with_url.failure("mysql", "mysql failed", "boom") is True
    assert len(inbox.posts) == 1


def test_an_unknown_level_is_refused(tmp_path):
    with pytest.raises(ValueError, match="level"):
        notifier_for(tmp_path, []).notify("mysql", "panic", "t", "b")  # type: ignore[arg-type]
