"""Pins reconciled offsite for points gone from the storage root (actors/actions/offsite_pins.py), against a real
restic repository in a folder standing in for a USB disk."""
from __future__ import annotations

import shutil

import pytest

from actors.actions.offsite import Restic, forget
from core.config import load_settings
from tests.actors.actions.test_offsite import (  # noqa: F401 - config_only is a fixture
    cli,
    config_only,
    copied_daily_points,
    folder_config,
    keep,
    password_file,
)


def pinned_offsite(settings) -> dict[str, list[str]]:
    return {s.point: s.tags["pin"] for s in Restic(settings).snapshots("point") if "pinned" in s.tags}


@pytest.mark.fault("`unpin` while the offsite repository is away, then local retention takes the point before the "
                   "next offsite job",
                   "the next offsite job finds in the audit log that the gone point was unpinned, removes its "
                   "snapshot's pin tags, and offsite retention's policy lets it go; a point gone without an unpin "
                   "(removed by hand while pinned) stays pinned offsite")
def test_a_point_unpinned_while_the_repository_was_away_and_then_pruned_is_let_go_offsite(tmp_path, config_only):
    repository = tmp_path / "usb" / "ragflow"
    config = folder_config(tmp_path, config_only, repository, password_file(tmp_path), offsite_retention=keep(1), retention=keep(1))
    settings = load_settings(config)
    storage = copied_daily_points(settings, 4)
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
    config = folder_config(tmp_path, config_only, repository, password_file(tmp_path), offsite_retention=keep(1))
    settings = load_settings(config)
    copied_daily_points(settings, 3, pins={0: "audit-2026"})
    shutil.rmtree(settings.storage_root)  # the server lost; the repository survives

    forget(settings)

    assert pinned_offsite(settings) == {"daily/2026-11-01": ["audit-2026"]}
    assert sorted(s.point for s in Restic(settings).snapshots("point")) == ["daily/2026-11-01", "daily/2026-11-03"]
