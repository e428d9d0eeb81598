"""The running agent samples its history and serves the status page on the metrics port."""
from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest

from agent.console.history import HistoryStore
from testbed.polling import wait_for
from tests.agent.test_agent import RunningAgent, ragflow_folder

PORT = re.compile(r"metrics and health on http://127\.0\.0\.1:(\d+)/metrics")


@pytest.fixture
def running_agent(tmp_path, redis_url, private_minio) -> Iterator[RunningAgent]:
    agent = RunningAgent(tmp_path, redis_url, private_minio, ragflow_folder(tmp_path))
    yield agent
    agent.stop()
    assert agent.process is None or agent.process.returncode == 0, agent.log.read_text()[-3000:]


def served_port(agent) -> int:
    return int(wait_for(lambda: PORT.findall(agent.log.read_text(errors="replace")) if agent.log.exists() else None,
                        "the agent to log its metrics port", timeout=120)[-1])


def test_the_agent_records_history_across_restarts_and_serves_the_page(running_agent):
    store = HistoryStore(running_agent.settings.storage_root)
    running_agent.start()
    first = wait_for(lambda: store.samples(0), "the agent's first history sample", timeout=120)
    port = served_port(running_agent)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
        page = answer.read().decode()
        assert answer.status == 200 and answer.headers["X-Frame-Options"] == "DENY"
    assert 'data-component="config"' in page and 'id="charts"' in page

    running_agent.stop()
    running_agent.log.write_text("")
    running_agent.start()
    served_port(running_agent)
    again = wait_for(lambda: [s for s in store.samples(0) if s.at > first[-1].at], "a sample after the restart",
                     timeout=120)
    assert store.samples(0)[0].at == first[0].at and again
