"""Fault cases of the status page and its port: the storage root gone or unreadable while the page is
served, and the port bound beyond loopback without a token."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.console.page import StatusPage
from agent.health import collect
from agent.metrics import MetricsServer
from core.config import Settings
from core.points import Storage
from tests.agent.chromium import Chromium
from tests.faults.harness import cli, write_config

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def browser() -> Iterator[Chromium]:
    chromium = Chromium(1280, 2000)
    yield chromium
    chromium.close()


def break_root(root: Path, how: str) -> None:
    if how == "a file in its place":
        root.write_text("the NAS share is not mounted and a file took its place\n")  # root cannot list a file
    # "gone": the share is not mounted, its folder does not exist


@pytest.mark.fault("storage root gone (share not mounted) or unreadable while the status page is served",
                   "the page still renders, with no console error: a red problem naming the storage root ('is not "
                   "there (is its share mounted?)' or 'cannot be read: ...') and every component red")
@pytest.mark.parametrize("how", ["gone", "a file in its place"])
def test_a_gone_or_unreadable_storage_root_is_said_in_red_on_the_page(tmp_path, browser, how):
    root = tmp_path / "backups"
    break_root(root, how)
    settings = Settings.model_validate({"storage_root": str(root), "redis": {"enabled": True}})
    server = MetricsServer("127.0.0.1", 0, lambda: collect(settings, Storage(root)),
                           page=StatusPage(settings, Storage(root)))
    server.start()
    try:
        browser.open(f"http://127.0.0.1:{server.port}/")

        assert browser.console_errors() == []
        problems = browser.evaluate("document.querySelector('#problems').textContent")
        assert f"the storage root {root}" in problems
        assert browser.evaluate("getComputedStyle(document.querySelector('#problems')).borderColor") == "rgb(198, 40, 40)"
        states = browser.evaluate("[...document.querySelectorAll('#components tr[data-component]')].map(r => r.dataset.state)")
        assert states and set(states) == {"red"}
        browser.screenshot(ARTIFACTS / f"console-root-{how.replace(' ', '-')}.png")
    finally:
        server.stop()


@pytest.mark.fault("metrics port bound beyond loopback without metrics.auth_token_file",
                   "the agent refuses to start (exit 2) with a message naming metrics.host and "
                   "metrics.auth_token_file; nothing is started")
def test_the_agent_refuses_to_start_beyond_loopback_without_a_token(tmp_path, redis_url):
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": redis_url, "namespace": f"console-{tmp_path.name[-12:]}"},
        "minio": {"enabled": False}, "mysql": {"enabled": False}, "search": {"enabled": False},
        "metrics": {"host": "0.0.0.0", "port": 0}})

    result = cli(config, "agent", timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "metrics.host is 0.0.0.0" in said and "metrics.auth_token_file" in said
    assert "Traceback" not in said
    assert not (tmp_path / "backups" / "state" / "scheduler.json").exists()  # nothing was started
