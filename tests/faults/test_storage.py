"""The storage root full (a small tmpfs) and read-only (remounted ro): old points intact, the new one
failed (never complete), an alert, and the next run completes once there is room again."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.points import Storage
from tests.faults.harness import alert_round, cli, fingerprint, write_config


@pytest.fixture
def small_root(tmp_path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted as the storage root; always unmounted."""
    root = tmp_path / "backups"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def redis_config(tmp_path: Path, root: Path, server, inbox) -> Path:
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(root), "minio": {"enabled": False}, "mysql": {"enabled": False},
        "search": {"enabled": False}, "config_files": {"enabled": False},
        "redis": {"enabled": True, "host": "127.0.0.1", "port": server.port, "password": server.password, "db": 1},
        "notify": {"urls": [inbox.url], "min_interval_seconds": 0, "rpo_hours": {}}})


@pytest.mark.fault("storage root full (an 8 MiB tmpfs)",
                   "the write fails with 'No space left on device', naming the storage root and what to do; the point is failed, not complete; no temp "
                   "file is left; old points are byte-identical; the failure is notified (and raised by the "
                   "agent's health loop); after space is freed the next run completes")
def test_a_full_storage_root_fails_the_new_point_keeps_the_old_and_recovers(tmp_path, small_root, private_redis, inbox):
    client = private_redis.client(db=1)
    client.set("ragflow:system:secret_key", "s3cret")
    config = redis_config(tmp_path, small_root, private_redis, inbox)
    assert cli(config, "backup", "--local").returncode == 0
    before = fingerprint(small_root)
    for n in range(12):  # 12 MiB of incompressible values: more than the file system holds
        client.set(f"big:{n}", os.urandom(1 << 20))

    done = cli(config, "backup", "--local")
    assert done.returncode == 1
    points = Storage(small_root).points("daily")
    newest = points[-1].manifest()
    assert newest.status == "failed" and "No space left on device" in newest.components["redis"].error
    assert f"the file system of the storage root {small_root} is full" in newest.components["redis"].error
    assert not list(points[-1].folder.glob(".*.tmp-*")) and not (points[-1].folder / "redis_dump.rdb.gz").exists()
    assert {k: fingerprint(small_root)[k] for k in before} == before
    assert any("is failed" in title for title in inbox.titles()) and "No space left on device" in inbox.text()
    settings = Settings(**json.loads(json.dumps(__import__("yaml").safe_load(config.read_text()))))
    # The agent's health loop raises it too (the temp file is gone, so the disk is no longer full).
    assert any("the newest backup" in title and "is failed" in title for title in alert_round(settings))

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_root)], check=True)
    again = cli(config, "backup", "--local")
    assert again.returncode == 0, again.stdout
    assert Storage(small_root).points("daily")[-1].manifest().status == "complete"
    assert {k: fingerprint(small_root)[k] for k in before} == before


@pytest.mark.fault("storage root read-only (remounted ro)",
                   "the backup says 'cannot create a point under ROOT: Read-only file system', exits 1 and "
                   "notifies; old points are byte-identical; after remounting read-write the next run completes")
def test_a_read_only_storage_root_is_reported_and_notified_and_recovers(tmp_path, small_root, private_redis, inbox):
    private_redis.client(db=1).set("ragflow:system:secret_key", "s3cret")
    config = redis_config(tmp_path, small_root, private_redis, inbox)
    assert cli(config, "backup", "--local").returncode == 0
    before = fingerprint(small_root)

    subprocess.run(["mount", "-o", "remount,ro", str(small_root)], check=True)
    try:
        done = cli(config, "backup", "--local")
        assert done.returncode == 1
        assert f"cannot create a point under {small_root}: Read-only file system" in " ".join(done.stderr.split())
        assert any("cannot create a backup point" in title for title in inbox.titles())
        assert fingerprint(small_root) == before
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_root)], check=True)
    again = cli(config, "backup", "--local")
    assert again.returncode == 0, again.stdout
    assert {k: fingerprint(small_root)[k] for k in before} == before
