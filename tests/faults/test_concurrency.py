"""Two of a kind at once: two agents on one storage root, two restores, two processes on the mirror index."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.polling import wait_for
from tests.faults.harness import cli, fingerprint, kill, start_cli, text_of, write_config


def ragflow_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text("MYSQL_PASSWORD=secret\n")
    (folder / "docker-compose.yml").write_text("services: {}\n")
    for n in range(200):
        (folder / f"service-{n}.yml").write_text(f"# file {n}\n" + "x: 1\n" * 200)
    return folder


@pytest.mark.fault("two agents started on the same storage root",
                   "the second refuses to start ('an agent on ROOT is already running (pid N)'), exits 1 and "
                   "changes nothing; once the first stops, an agent starts")
def test_a_second_agent_on_the_same_storage_root_refuses_to_start(tmp_path, redis_url, inbox):
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": redis_url, "namespace": "two-agents"},
        "minio": {"enabled": False}, "mysql": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False}, "metrics": {"port": 0},
        "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": "", "drill": ""}})
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_cli(config, first_log, "agent")
    try:
        wait_for(lambda: "agent started" in text_of(first_log), "the first agent")
        before = fingerprint(tmp_path / "backups", ("daily", "state", "locks"))
        second = cli(config, "agent", timeout=60)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"an agent on {tmp_path / 'backups'} is already running (pid {first.pid})" in second.stderr
        # The running (first) agent samples its console history into state/ meanwhile: that database and its
        # journal (present only mid-write) are its own.
        ours = lambda k: not k.startswith("locks") and "console-history.sqlite" not in k  # noqa: E731
        after = fingerprint(tmp_path / "backups", ("daily", "state"))
        assert {k: v for k, v in after.items() if ours(k)} == {k: v for k, v in before.items() if ours(k)}
    finally:
        kill(first, signal.SIGTERM)
    assert first.returncode == 0
    again = start_cli(config, second_log, "agent")
    try:
        wait_for(lambda: "agent started" in text_of(second_log), "an agent after the first stopped")
    finally:
        kill(again, signal.SIGTERM)


@pytest.mark.fault("two restores at once",
                   "the second is refused ('a restore is already running (pid N)... nothing was changed'), "
                   "exit 1; the first completes; a restore afterwards works")
def test_a_second_restore_while_one_runs_is_refused_and_changes_nothing(tmp_path, config_point):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    (docker / ".env").write_text("MYSQL_PASSWORD=changed\n")

    lock = tmp_path / "backups" / "locks" / "restore.lock"
    log = tmp_path / "first.log"
    first = start_cli(config, log, "restore", "--point", point.ref, "-C", "config", "--yes")
    try:
        # Caught holding the lock (its pid is written in it), then hung there by SIGSTOP.
        wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), "the first restore's lock",
                 timeout=60, interval=0.001)
        os.killpg(first.pid, signal.SIGSTOP)
        second = cli(config, "restore", "--point", point.ref, "-C", "config", "--yes", timeout=60)
        assert second.returncode == 1
        assert f"a restore is already running (pid {first.pid})" in second.stderr
        assert "nothing was changed" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert first.wait(120) == 0, text_of(log)
    assert (docker / ".env").read_text() == "MYSQL_PASSWORD=secret\n"
    assert cli(config, "restore", "--point", point.ref, "-C", "config", "--yes").returncode == 0


WRITER = """
import sys, time
from datetime import datetime, timezone
from pathlib import Path
from core.mirror_store import MirrorStore, Entry
root, count = Path(sys.argv[1]), int(sys.argv[2])
store = MirrorStore(root)
for n in range(count):
    temp = store.temp_file("kb")
    temp.write_bytes(b"object %d" % n)
    now = datetime.now(timezone.utc)
    store.commit("kb", f"key-{n}", temp, Entry(size=len(b"object %d" % n), etag=f"e{n}", content_type="text/plain",
                 metadata={}, last_modified=now, md5="", seen_at=now), now)
    stats = MirrorStore(root)  # another reader in this process, as the agent's health check is
    stats.stats()
    stats.close()
"""

READER = """
import sys, time
from pathlib import Path
from core.mirror_store import MirrorStore
root, until = Path(sys.argv[1]), Path(sys.argv[2])
while not until.exists():
    store = MirrorStore(root)
    store.entry("kb", "key-1")
    store.close()
"""


@pytest.mark.fault("two processes on the mirror index (agent, workers, status) opening and closing it",
                   "every commit survives: the index is never opened outside SQLite (that dropped SQLite's "
                   "POSIX locks and let another process delete the WAL: 'disk I/O error', commits lost)")
def test_the_mirror_index_loses_nothing_while_other_processes_open_and_close_it(tmp_path):
    root = tmp_path / "mirror"
    done = tmp_path / "done"
    from core.mirror_store import MirrorStore

    MirrorStore(root).close()
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(root), str(done)]) for _ in range(2)]
    try:
        writer = subprocess.run([sys.executable, "-c", WRITER, str(root), "150"], capture_output=True, text=True,
                                timeout=300)
    finally:
        done.touch()
        for reader in readers:
            reader.wait(60)
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert all(reader.returncode == 0 for reader in readers)
    store = MirrorStore(root)
    assert len(list(store.keys("kb"))) == 150
    store.close()
