"""ConfigWatcher on a real folder laid out like RAGFlow's docker/ (inotify through watchdog)."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from agent.sources.config_watch import ConfigWatcher, matches
from core.config import ConfigFilesSettings, WatchSettings
from core.ragflow_folder import kept_files

DEBOUNCE = 0.5
PATTERNS = ConfigFilesSettings().patterns
IGNORE = WatchSettings().ignore


class Changes:
    """on_change: reads the files it is given (as a commit would) and records the call."""

    def __init__(self, folder: Path, failures: int = 0):
        self.folder = folder
        self.failures = failures
        self.lock = threading.Lock()
        self.calls: list[list[str]] = []
        self.attempts = 0

    def __call__(self, paths: list[str]) -> None:
        with self.lock:
            self.attempts += 1
            if self.failures:
                self.failures -= 1
                raise ConnectionError("Redis is down (test)")
        for path in paths:  # reading must not count as a change, or every commit would cause another
            if (self.folder / path).exists():
                (self.folder / path).read_bytes()
        with self.lock:
            self.calls.append(paths)

    def settle(self, count: int, timeout: float = 20.0) -> list[list[str]]:
        """Wait for `count` calls, then a quiet spell in which more would have arrived; return all calls."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {count} on_change calls; got {self.calls}")
            time.sleep(0.05)
        time.sleep(DEBOUNCE * 4 + 0.5)
        with self.lock:
            return list(self.calls)


@pytest.fixture
def docker_dir(tmp_path) -> Path:
    folder = tmp_path / "ragflow" / "docker"
    (folder / "nginx").mkdir(parents=True)
    (folder / ".env").write_text("MYSQL_PASSWORD=x\n")
    (folder / "docker-compose.yml").write_text("services: {}\n")
    (folder / "nginx" / "ragflow.conf").write_text("server { listen 80; }\n")
    (folder / "service_conf.yaml.template").write_text("mysql: {}\n")
    return folder


@pytest.fixture
def watch(docker_dir):
    """Start a watcher on docker_dir with on_change = a Changes recorder; stopped afterwards."""
    watchers: list[ConfigWatcher] = []

    def start(failures: int = 0) -> Changes:
        changes = Changes(docker_dir, failures)
        watcher = ConfigWatcher(docker_dir, PATTERNS, IGNORE, DEBOUNCE, changes)
        watcher.start()
        watchers.append(watcher)
        return changes

    yield start
    for watcher in watchers:
        watcher.stop()
        assert not watcher.running


def test_three_quick_edits_of_env_make_one_change(watch, docker_dir):
    changes = watch()
    for n in range(3):
        (docker_dir / ".env").write_text(f"MYSQL_PASSWORD=edit{n}\n")
        time.sleep(0.05)
    assert changes.settle(1) == [[".env"]]


def test_an_editor_style_save_is_one_change_of_the_target(watch, docker_dir):
    changes = watch()
    env = docker_dir / ".env"
    (docker_dir / ".env.swp").write_bytes(b"b0VIM 9.0")  # vim's swap file
    (docker_dir / "4913").write_text("")  # vim's can-I-write-here probe
    (docker_dir / "4913").unlink()
    shutil.copy2(env, docker_dir / ".env~")  # the backup copy
    (docker_dir / ".env.tmp").write_text("MYSQL_PASSWORD=saved\n")
    os.replace(docker_dir / ".env.tmp", env)  # the atomic save
    (docker_dir / ".env.swp").unlink()
    assert changes.settle(1) == [[".env"]]
    assert env.read_text() == "MYSQL_PASSWORD=saved\n"


def test_edits_of_two_files_in_one_burst_come_in_one_call(watch, docker_dir):
    changes = watch()
    (docker_dir / "nginx" / "ragflow.conf").write_text("server { listen 8080; }\n")
    (docker_dir / "docker-compose.yml").write_text("services: {ragflow: {}}\n")
    assert changes.settle(1) == [["docker-compose.yml", "nginx/ragflow.conf"]]


def test_a_deleted_watched_file_is_reported_and_unwatched_files_are_not(watch, docker_dir):
    changes = watch()
    (docker_dir / "notes.txt").write_text("not config\n")
    (docker_dir / "ragflow-logs").mkdir()
    (docker_dir / "ragflow-logs" / "ragflow.yml").write_text("'*.yml' is top level only\n")
    assert changes.settle(0) == []
    (docker_dir / "service_conf.yaml.template").unlink()
    assert changes.settle(1) == [["service_conf.yaml.template"]]


def test_renaming_the_nginx_folder_reports_the_files_it_held(watch, docker_dir):
    changes = watch()
    (docker_dir / "nginx").rename(docker_dir / "nginx.old")
    assert changes.settle(1) == [["nginx/ragflow.conf"]]
    (docker_dir / "nginx.old").rename(docker_dir / "nginx")
    assert changes.settle(2) == [["nginx/ragflow.conf"], ["nginx/ragflow.conf"]]


def test_a_failing_on_change_is_retried_and_the_watcher_keeps_working(watch, docker_dir):
    changes = watch(failures=1)
    (docker_dir / ".env").write_text("MYSQL_PASSWORD=changed\n")
    assert changes.settle(1) == [[".env"]]
    assert changes.attempts == 2
    (docker_dir / "docker-compose.yml").write_text("services: {x: {}}\n")
    assert changes.settle(2) == [[".env"], ["docker-compose.yml"]]


def test_a_burst_still_waiting_is_delivered_by_stop(docker_dir):
    changes = Changes(docker_dir)
    watcher = ConfigWatcher(docker_dir, PATTERNS, IGNORE, 30.0, changes)
    watcher.start()
    (docker_dir / ".env").write_text("MYSQL_PASSWORD=late\n")
    time.sleep(0.5)  # let inotify report it; the 30 s quiet period is far off
    watcher.stop()
    assert changes.calls == [[".env"]]
    assert not watcher.running


def test_patterns_select_what_path_glob_selects(tmp_path):
    files = [".env", "docker-compose.yml", "a/b.yml", "nginx/ragflow.conf", "nginx/sub/deep.conf", "x/nginx/y.conf",
             "service_conf.yaml.template", "deep/er/z.toml", "entrypoint.sh", "sub/entrypoint.sh"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    for pattern in [*PATTERNS, "**/*.conf", "deep/**/*.toml", "*/*.yml"]:
        globbed = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(pattern) if p.is_file()}
        assert {f for f in files if matches(f, pattern)} == globbed, pattern


V027 = Path(__file__).resolve().parents[3] / "testbed" / "ragflow_docker" / "v0.27"


def test_the_watcher_watches_what_the_daily_tar_keeps_of_ragflow_v027(tmp_path):
    folder = tmp_path / "docker"
    shutil.copytree(V027, folder)
    changes = Changes(folder)
    watcher = ConfigWatcher(folder, PATTERNS, IGNORE, DEBOUNCE, changes)
    watcher.start()
    try:
        assert watcher.watched() == kept_files(folder, PATTERNS)
        (folder / "nginx" / "ragflow.conf.python").write_text("server { listen 8080; }\n")
        (folder / "oceanbase" / "init.d" / "vec_memory.sql").write_text("SELECT 1;\n")
        (folder / "launch_backend_service.sh").write_text("#!/bin/bash\n")
        (folder / "ragflow-logs").mkdir()
        (folder / "ragflow-logs" / "ragflow_server.log").write_text("a log line\n")
        assert changes.settle(1) == [["launch_backend_service.sh", "nginx/ragflow.conf.python",
                                      "oceanbase/init.d/vec_memory.sql"]]
    finally:
        watcher.stop()


def test_a_file_a_compose_file_starts_mounting_is_watched_from_then_on(watch, docker_dir):
    changes = watch()
    (docker_dir / "my.cnf").write_text("[mysqld]\n")
    assert changes.settle(0) == []
    (docker_dir / "docker-compose.yml").write_text("services:\n  mysql:\n    volumes:\n      - ./my.cnf:/etc/my.cnf\n")
    assert changes.settle(1) == [["docker-compose.yml"]]
    (docker_dir / "my.cnf").write_text("[mysqld]\nmax_connections=2000\n")
    assert changes.settle(2) == [["docker-compose.yml"], ["my.cnf"]]
