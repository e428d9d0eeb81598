"""Pins reconciled offsite for points gone from the storage root (actors/actions/offsite_pins.py), against a real
restic repository in a folder standing in for a USB disk."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from actors.actions.offsite import Restic, copy_point, forget
from actors.actions.runs import run_component
from core.config import load_settings
from core.points import Storage
from tests.actors.actions.test_offsite import cli, config_only, folder_config, password_file  # noqa: F401 - fixture


def pinned_offsite(settings) -> dict[str, list[str]]:
    return {s.point: s.tags["pin"] for s in Restic(settings).snapshots("point") if "pinned" in s.tags}


@pytest.mark.fault("`unpin` while the offsite repository is away, then local retention takes the point before the "
                   "next offsite job",
                   "the next offsite job finds in the audit log that the gone point was unpinned, removes its "
                   "snapshot's pin tags, and offsite retention's policy lets it go; a point gone without an unpin "
                   "(removed by hand while pinned) stays pinned offsite")
def test_a_point_unpinned_while_the_repository_was_away_and_then_pruned_is_let_go_offsite(tmp_path, config_only):
    repository = tmp_path / "usb" / "ragflow"
    config = folder_config(tmp_path, config_only, repository, password_file(tmp_path))
    raw = yaml.safe_load(config.read_text())
    raw["offsite"]["retention"] = {"daily": 1, "weekly": 0, "monthly": 0}
    raw["retention"] = {"daily": 1, "weekly": 0, "monthly": 0}
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    storage = Storage(settings.storage_root)
    start = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    for day in range(4):
        point = storage.new_point(["config"], at=start + timedelta(days=day))
        run_component(settings, point, "config")
        copy_point(settings, point)
    assert cli(config, "pin", "daily/2026-11-01", "for-a-while").exit_code == 0
    assert cli(config, "pin", "daily/2026-11-02", "kept-for-ever").exit_code == 0
    assert pinned_offsite(settings) == {"daily/2026-11-01": ["for-a-while"], "daily/2026-11-02": ["kept-for-ever"]}
    away = repository.with_name("unplugged")
    repository.rename(away)  # the USB disk unplugged

    unpinned = cli(config, "unpin", "daily/2026-11-01")
    assert unpinned.exit_code == 0 and "not re-tagged yet" in unpinned.output, unpinned.output
    assert cli(config, "prune").exit_code == 0  # local retention takes the unpinned point
    shutil.rmtree(storage.point("daily/2026-11-02").folder)  # and someone removes a pinned one by hand
    assert {p.ref for p in storage.points("daily")} == {"daily/2026-11-04"}
    away.rename(repository)

    forget(settings)

    assert pinned_offsite(settings) == {"daily/2026-11-02": ["kept-for-ever"]}
    assert sorted(s.point for s in Restic(settings).snapshots("point")) == ["daily/2026-11-02", "daily/2026-11-04"]


def test_a_fresh_storage_root_lets_no_pinned_snapshot_go(tmp_path, config_only):
    """After a disaster the agent may start on an empty storage root with the same repository: with no audit log
    saying otherwise, every pinned snapshot keeps its pin, and the offsite job changes nothing else."""
    repository = tmp_path / "usb" / "ragflow"
    config = folder_config(tmp_path, config_only, repository, password_file(tmp_path))
    raw = yaml.safe_load(config.read_text())
    raw["offsite"]["retention"] = {"daily": 1, "weekly": 0, "monthly": 0}
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    storage = Storage(settings.storage_root)
    start = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    for day in range(3):
        point = storage.new_point(["config"], at=start + timedelta(days=day))
        run_component(settings, point, "config")
        if day == 0:
            point.pin("audit-2026")
        copy_point(settings, point)
    shutil.rmtree(settings.storage_root)  # the server lost; the repository survives

    forget(settings)

    assert pinned_offsite(settings) == {"daily/2026-11-01": ["audit-2026"]}
    assert sorted(s.point for s in Restic(settings).snapshots("point")) == ["daily/2026-11-01", "daily/2026-11-03"]
