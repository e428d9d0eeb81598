"""The size shown for a point counts each file once: a MySQL change point's base is a hard link to its full
point's dump, so `list` shows what the change point adds on disk, names the point it depends on, and the sizes
over all points add up to what the files take (each inode once, like du)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from core.points import Storage
from tests.actors.mysql.test_change_points import full_then_change_point, settings_for
from tests.faults.harness import cli, write_config


def disk_bytes(*folders: Path, leave_out: frozenset[str] = frozenset()) -> int:
    """What the files under `folders` take on disk, each inode once (du's count of the files)."""
    seen, total = set(), 0
    for top in folders:
        for folder, _, files in os.walk(top):
            for name in files:
                stat = os.lstat(os.path.join(folder, name))
                if name not in leave_out and (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_blocks * 512
    return total


def test_a_change_point_is_listed_with_what_it_adds_and_its_base_and_the_sizes_add_up_to_the_disk(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    full, point, record = full_then_change_point(settings)
    # The daily full point pruned: its promotions (hard links) hold the base, in tiers listed after the daily one.
    shutil.rmtree(full.folder)
    storage = Storage(settings.storage_root)
    [weekly] = storage.points("weekly")
    cfg = settings.mysql
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(settings.storage_root), "minio": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False},
        "mysql": {"host": cfg.host, "port": cfg.port, "user": cfg.user, "password": cfg.password.get_secret_value(),
                  "database": cfg.database, "full_every_days": 7}})

    listed = cli(config, "list", "--json")

    assert listed.returncode == 0, listed.stdout + listed.stderr
    by_ref = {row["ref"]: row for row in json.loads(listed.stdout)["points"]}
    changes = by_ref[point.ref]
    assert changes["bases"] == {"mysql": full.ref}
    assert changes["bytes"] == disk_bytes(point.folder, leave_out=frozenset({"mysql_base.sql.gz"}))
    assert by_ref[weekly.ref]["bytes"] == disk_bytes(weekly.folder)
    tiers = [storage.layout.folder(tier) for tier in ("daily", "weekly", "monthly")]
    assert sum(row["bytes"] for row in by_ref.values()) == disk_bytes(*tiers)
    assert record.base_of == full.ref
    assert record.added_bytes == next(a.bytes for a in record.artifacts if a.name == "mysql_changes.sql.gz")
